"""Errors that speak to the user: each message names the value, what was expected and the fix.

The command line prints these as one line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class BiounetError(ValueError):
    """Base class for errors caused by user input (files, options, data)."""


class ConfigError(BiounetError):
    """An option or a configuration file holds a value biounet cannot use."""


class DataError(BiounetError):
    """Input data is missing, unreadable or inconsistent."""


class CheckpointError(BiounetError):
    """A checkpoint is missing, corrupt or does not fit the requested run."""


class TrainingDiverged(BiounetError):
    """The loss became NaN or infinite."""
