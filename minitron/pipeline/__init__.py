"""minitron run: the stages, the manifest and the report."""
