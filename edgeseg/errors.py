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
    """An output path names something other than a regular file: a link, a device, a pipe, a socket."""


class MissingDependencyError(EdgesegError):
    """An optional package is needed and not installed."""


class CheckFailed(EdgesegError):
    """A verification ran and its result is below the threshold (parity, budget)."""

    exit_code = 1


class TrainingStopped(EdgesegError):
    """Training stopped on its own accord (non-finite loss); the last good checkpoint is kept."""

    exit_code = 1
