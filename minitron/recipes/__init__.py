"""One linear script per command: parse nothing, take a validated config, do the work."""
