"""Errors that carry what went wrong and how to fix it; the CLI prints them without a traceback."""


class MinitronError(Exception):
    """Base class: an error the user can fix; its message names the fix."""


class ConfigError(MinitronError, ValueError):
    """A configuration value is invalid. ``field`` names the key (dotted path)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self):  # picklable across ranks
        return (ConfigError, (self.field, self.message))


class CheckpointError(MinitronError):
    """A checkpoint is missing, truncated, corrupted or does not match the model."""


class DataError(MinitronError):
    """An input file cannot be used; the message names the file and line."""
