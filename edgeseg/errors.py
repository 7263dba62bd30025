"""One exception family for everything a user can get wrong.

The CLI turns an ``EdgesegError`` into a one-line message and its ``exit_code``;
anything else is a bug and keeps its traceback.
"""

from pathlib import Path


class EdgesegError(Exception):
    """A problem the user can fix: bad option, bad file, missing package."""

    exit_code = 2


class ConfigError(EdgesegError):
    """An option or setting has a value we cannot use."""


class DataError(EdgesegError):
    """A data set file or folder is missing, unreadable or inconsistent."""


class ModelFileError(EdgesegError):
    """A checkpoint, ONNX model or engine cannot be used."""


def model_file(path) -> Path:
    """``path`` as a Path when it is a file; else the one line every model reader says."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: {'a folder' if path.is_dir() else 'not found'}; expected a model file")
    return path


class NotAFileError(EdgesegError):
    """An output path names something other than a regular file (a link, a device, a pipe, a
    socket), or a name longer than its file system allows."""


class MissingDependencyError(EdgesegError):
    """An optional package is needed and not installed."""


class CheckFailed(EdgesegError):
    """A verification ran and its result is below the threshold (parity, budget)."""

    exit_code = 1


class TrainingStopped(EdgesegError):
    """Training stopped on its own accord (non-finite loss); the last good checkpoint is kept."""

    exit_code = 1


_OS_REASONS = {  # errno -> (what happened, what the user can do); errnos absent on a platform are skipped
    "ENOSPC": ("no space left on the device", "free space there or write elsewhere"),
    "EDQUOT": ("disk quota exceeded", "free space there or write elsewhere"),
    "EACCES": ("permission denied", "check its permissions and those of the folders above it"),
    "EPERM": ("operation not permitted", "check its permissions and those of the folders above it"),
    "EROFS": ("a read-only file system", "write elsewhere"),
    "ENAMETOOLONG": ("a file name too long for the file system", "give shorter names"),
    "ENOTDIR": ("a part of the path is a file, not a folder", "check the path"),
    "EISDIR": ("a folder where a file was expected", "check the path"),
    "ENOENT": ("not found", "check the path"),
}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError that reached the command line: the path it concerns (a copy's or a
    move's destination, where it has one; else 'a file'), what happened, and what to do."""
    import errno

    # a copy's or move's destination is what could not be written; a missing file is its source
    where = exc.filename2 if exc.filename2 is not None and exc.errno != getattr(errno, "ENOENT", None) else exc.filename
    where = where if where is not None else "a file"
    for name, (what, todo) in _OS_REASONS.items():
        if exc.errno is not None and exc.errno == getattr(errno, name, None):
            return f"{where}: {what}; {todo}"
    return f"{where}: {exc.strerror or exc}; check the path and free space"
