"""Architecture search under a parameter budget (issue 16)."""
