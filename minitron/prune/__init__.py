"""Importance estimation and structured pruning (width and depth)."""
