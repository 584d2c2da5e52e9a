"""Errors that speak to the user: each message names the value, what was expected and the fix.

The command line prints these as one line and exits with the error's ``exit_code``: 2 for a bad
command line (flags, option values, configuration files), 1 for a failure while running (files,
I/O, data, checkpoints). Anything else is a bug and keeps its traceback.
"""

USAGE, FAILURE = 2, 1  # exit statuses of the command line


class BiounetError(ValueError):
    """Base class for errors caused by user input (files, options, data)."""

    exit_code = FAILURE


class ConfigError(BiounetError):
    """An option or a configuration file holds a value biounet cannot use."""

    exit_code = USAGE


class DataError(BiounetError):
    """Input data is missing, unreadable or inconsistent."""


class CheckpointError(BiounetError):
    """A checkpoint is missing, corrupt or does not fit the requested run."""


class TrainingDiverged(BiounetError):
    """The loss became NaN or infinite."""


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error (permission, full disk, a file where a folder
    should be), naming the path and the way out."""
    import errno

    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    hints = {
        errno.EACCES: "choose a location you may write to, or change its permissions",
        errno.EPERM: "choose a location you may write to, or change its permissions",
        errno.EROFS: "the file system is read-only; choose another location",
        errno.ENOSPC: "the disk is full; free space or write elsewhere (nothing written before was changed)",
        errno.EDQUOT: "the disk quota is exhausted; free space or write elsewhere",
        errno.EEXIST: "a file of that name is in the way; remove it or choose another name",
        errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
        errno.EISDIR: "that path is a folder; give a file name",
        errno.ENOENT: "check the path",
        errno.ENAMETOOLONG: "choose a shorter path",
    }
    hint = hints.get(exc.errno or -1, "check the path and the disk")
    return f"{path}: {reason}; {hint}"
