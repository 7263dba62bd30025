"""Atomic writes and hashing: a crash never leaves a half-written artefact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import socket
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeseg.errors import ConfigError, NotAFileError

CACHE_ENV = "EDGESEG_CACHE"


def cache_dir() -> Path:
    """Where derived artefacts (DUpsampling W, class centroids, teacher labels) are cached:
    $EDGESEG_CACHE (an absolute folder) or ~/.cache/edgeseg."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        try:
            return Path.home() / ".cache" / "edgeseg"
        except RuntimeError:  # no $HOME and no home in the user database (a container run as an arbitrary user)
            raise ConfigError(f"edgeseg's cache: $HOME is not set and this user has no home folder; set ${CACHE_ENV} "
                              "to a writable absolute folder") from None
    path = Path(value).expanduser()
    if not value.strip() or not path.is_absolute():  # empty or relative: it would be the working folder, or move with it
        raise ConfigError(f"${CACHE_ENV}={value!r}: expected an absolute folder path for edgeseg's cache (or leave it unset)")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"${CACHE_ENV}={value}: is a file; expected a folder for edgeseg's cache")
    return path


@contextlib.contextmanager
def name_os_errors(path: str | os.PathLike) -> Iterator[None]:
    """An OSError raised inside without a file name (a short write on a full disk) names ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def write_probe(folder: Path) -> None:
    """Make and remove a new file in ``folder``: the OSError a writer there would meet, raised now."""
    probe = folder / f".edgeseg-probe-{secrets.token_hex(6)}.tmp"
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    probe.unlink(missing_ok=True)


def cache_folder(sub: str) -> Path:
    """``cache_dir() / sub``, made and writable; else a ConfigError that says where the cache's
    location comes from ($EDGESEG_CACHE or $HOME) and how to give another."""
    folder = cache_dir() / sub
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_probe(folder)
    except OSError as exc:
        origin = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "its default under $HOME, ~/.cache/edgeseg"
        raise ConfigError(f"{folder}: edgeseg's cache ({origin}) cannot be written ({exc.strerror or exc}); "
                          f"set ${CACHE_ENV} to a writable absolute folder") from None
    return folder


def not_regular_problem(path: str | os.PathLike) -> str | None:
    """Why edgeseg must not write a file at ``path`` (a whole new file renamed over it), or None:
    something there that is not a regular file would be replaced by one (a symbolic link and its
    target would part; a device such as /dev/null or a named pipe would become a plain file)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable: the write itself says why
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return (f"'{path}' is a symbolic link (to '{os.readlink(path)}'); edgeseg writes files whole and would replace "
                "the link: give the path of the file itself")
    what = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"'{path}' is {what}, not a regular file; give a file path"


TEMP_TAG = "edgeseg"  # atomic_path's temporaries: .NAME.edgeseg-PID-HEX.tmp, so that only ours are ever cleaned up
_TEMP_NAME = re.compile(r"\..+\." + TEMP_TAG + r"-(\d{1,9})-[0-9a-f]{12}\.tmp")


def orphaned_temporaries(folder: Path) -> list[Path]:
    """atomic_path's temporaries in ``folder`` whose writing process (on this machine) is gone: what
    a killed write left. Other processes' temporaries, and files of the same look not ours, are kept."""
    found = []
    for p in Path(folder).glob(".*.tmp"):
        m = _TEMP_NAME.fullmatch(p.name)
        if m and not FolderLock._alive(socket.gethostname(), int(m.group(1))):
            found.append(p)
    return found


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name, in bytes, the file system of ``folder`` takes (255 where it does not say)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255
    return limit if limit >= 1 else 255  # -1: no fixed limit; 0 from some FUSE file systems


def name_length_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be made because a name in it is longer than its file system allows
    (255 bytes on most; asked of the nearest folder that exists), or None."""
    path = Path(path)
    base = path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    limit = name_max(base)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            return f"the name '{part[:40]}...' in '{path}' is {len(os.fsencode(part))} bytes, over the file system's {limit}"
    return None


def check_replaceable(paths) -> None:
    """Refuse, before any of them is touched, to replace something at ``paths`` that is not a regular
    file or folder (not_regular_problem), or to make a name longer than the file system allows:
    every writer calls it for the files it will make, before its work."""
    for path in paths:
        if problem := not_regular_problem(path) or name_length_problem(path):
            raise NotAFileError(problem)


def move_in(moves) -> None:
    """Move staged files into place (``(staged, final)`` pairs, in order; one file system, each
    rename atomic): each synced first, every destination checked before the first move."""
    moves = list(moves)
    check_replaceable(dst for _, dst in moves)
    for src, dst in moves:
        with open(src, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On error the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    if problem := not_regular_problem(path):
        raise NotAFileError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created like a plain open() would (0666 less the umask, applied by the kernel); mkstemp
    # would make it 0600.
    name = path.name
    room = max(name_max(path.parent) - 40, 16)  # the temporary's own 36 bytes beside the target's name
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    tmp_path = None
    try:
        while True:
            tmp_path = path.parent / f".{name}.{TEMP_TAG}-{os.getpid()}-{secrets.token_hex(6)}.tmp"
            try:
                os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                break
            except FileExistsError:
                continue
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        if problem := not_regular_problem(path):  # put there while the file was being written
            raise NotAFileError(problem)
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is None or os.fsdecode(exc.filename) == str(tmp_path):
            exc.filename = str(path)  # a full disk or the like is said of the file being written, not of its temporary
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def output_path_problem(path: str | os.PathLike, kind: str, probe: bool = True) -> str | None:
    """Why edgeseg could not write ``path`` (``kind`` "file" or "folder"), found before any work,
    or None: a folder where a file is meant or the other way round, a file among its parents, or a
    folder that refuses a new file (tried, where ``probe``, with a file that is removed at once)."""
    path = Path(path)
    if problem := name_length_problem(path):
        return problem
    if path.is_symlink() and not path.exists():
        return f"'{path}' is a link to nothing (broken, or a loop); expected a {kind} path"
    if path.exists() or path.is_symlink():
        if kind == "file" and path.is_dir():
            return f"'{path}' is a folder; expected a file name"
        if kind == "file" and (problem := not_regular_problem(path)):
            return problem
        if kind == "folder" and not path.is_dir():
            return f"'{path}' is a file; expected a folder"
    probe_in = path if kind == "folder" and path.is_dir() else None
    if probe_in is None:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"'{parent}' is a file, so '{path}' cannot be made under it"
        probe_in = parent
    if not probe:
        return None
    try:
        write_probe(probe_in)
    except OSError as exc:
        return f"cannot write in '{probe_in}' ({exc.strerror or exc})"
    return None


REPORT_KINDS = {"json": "a JSON file", "png": "a PNG image"}
REPORT_KEY = "edgeseg_report"  # the first key of every JSON report: what wrote it
REPORT_SOFTWARE = "edgeseg"  # a PNG report's Software text chunk starts with it
_JSON_REPORT_HEAD = re.compile(rb'\s*\{\s*"' + REPORT_KEY.encode() + rb'"\s*:')


def report_json(obj: dict, command: str) -> dict:
    """``obj`` as a JSON report: ``REPORT_KEY`` first, naming the command, so that the report can be
    told apart from every other JSON file (a data set's classes.json, a run's config.json)."""
    return {REPORT_KEY: command, **{k: v for k, v in obj.items() if k != REPORT_KEY}}


def replace_problem(path: str | os.PathLike, kind: str) -> str | None:
    """Why a report of ``kind`` ("json" or "png") must not replace the file at ``path``, or None:
    an existing file is replaced only by a report edgeseg wrote there before (a JSON file whose
    first key is ``REPORT_KEY``, a PNG whose Software chunk says edgeseg), never a checkpoint,
    model, label mask, image or JSON file of someone else's given there by mistake."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:  # an empty file (mktemp's) holds nothing to lose
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        head = b""
    # What the file starts with is enough: the mark comes first (JSON) or in a text chunk before the pixels (PNG).
    if kind == "png":
        ok = head.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtSoftware\x00" + REPORT_SOFTWARE.encode() in head
    else:
        ok = _JSON_REPORT_HEAD.match(head) is not None
    if ok:
        return None
    return (f"'{path}' exists and is not {REPORT_KINDS[kind]} edgeseg wrote as a report; edgeseg replaces only its own "
            "report there (reports are marked since 2026-12-07): give a new path (or remove the file)")


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (links and '..' resolved; for paths that do
    not exist yet, their resolved spelling)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON of ``obj``: a NaN or infinite number (a metric of a class with no pixels) is
    written as null, which every JSON reader takes (Python's default writes NaN, which strict ones refuse)."""
    def finite(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: finite(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [finite(v) for v in o]
        return o

    return json.dumps(finite(obj), indent=indent, sort_keys=False, allow_nan=False)


class JSONError(json.JSONDecodeError):
    """A JSON text edgeseg refuses although Python's parser would take it (or fail on it with
    something other than a decode error); a JSONDecodeError, so every reader's handler names the file."""

    def __init__(self, msg: str, doc: str):
        super().__init__(msg, doc, 0)
        self.args = (msg,)

    def __str__(self) -> str:
        return self.msg


def is_integer(value: Any) -> bool:
    """An integer as a file states one: JSON's true and false are Python ints, and are not."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite number as a file states one (true and false are not numbers)."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_json(text: str) -> Any:
    """JSON from ``text``, as every reader of a file parses it: a key given twice in one object is
    refused (Python's parser keeps the last one silently), and nesting deeper than the parser can
    follow is a decode error like any other, not a RecursionError."""
    def unique(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise JSONError(f"key {key!r} given twice in one object", text)
            obj[key] = value
        return obj

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise JSONError("nested too deeply to read", text) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise JSONError(str(exc).split(":")[0].strip()[:70], text) from None


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json_text(obj) + "\n")


def swap_in(stage: Path, out: Path, names, last=()) -> None:
    """Replace the parts ``names`` (files or folders) of folder ``out`` with those staged in
    ``stage`` (a folder inside ``out``: one file system, each move atomic). The old parts are moved
    aside and the new moved in, then the old removed; ``last`` (in ``names``) are moved aside first
    and in last, so a reader that trusts them (a manifest) never takes a half-swapped folder for a
    whole one. On an error the folder is put back as it was (new parts out, old parts in) and the
    error raised."""
    import shutil

    check_replaceable(out / n for n in names)
    last = [n for n in last if n in names]
    rest = [n for n in names if n not in last]
    old = Path(stage) / ".old"
    old.mkdir()
    aside, arrived = [], []
    try:
        for name in last + rest:
            if (out / name).exists():
                os.replace(out / name, old / name)
                aside.append(name)
        for name in rest + last:
            if (stage / name).exists():
                os.replace(stage / name, out / name)
                arrived.append(name)
    except OSError:  # the folder as it was: the new parts back out, the old back in
        for name, src, dst in [(n, out, stage) for n in reversed(arrived)] + [(n, old, out) for n in aside]:
            with contextlib.suppress(OSError):
                os.replace(src / name, dst / name)
        raise
    shutil.rmtree(old, ignore_errors=True)


def shape_problem(obj: Any, shape: Any, at: str = "") -> str | None:
    """Where JSON data read from a file differs from ``shape``, or None. ``shape`` is a type (str,
    int, float, bool, dict, list), a tuple of shapes (any of them), ``[shape]`` (a list of such),
    or a dict of keys to shapes (those keys at least; the key ``str`` stands for every key)."""
    where = at or "the top level"
    if isinstance(shape, tuple):
        problems = [shape_problem(obj, s, at) for s in shape]
        return None if any(p is None for p in problems) else problems[0]
    if isinstance(shape, dict):
        if not isinstance(obj, dict):
            return f"{where}: expected a mapping, found {type(obj).__name__}"
        for key, sub in shape.items():
            for k in (obj if key is str else [key]):
                if k not in obj:
                    return f"{at + '.' if at else ''}{k}: missing"
                problem = shape_problem(obj[k], sub, f"{at + '.' if at else ''}{k}")
                if problem:
                    return problem
        return None
    if isinstance(shape, list):
        if not isinstance(obj, list):
            return f"{where}: expected a list, found {type(obj).__name__}"
        for i, item in enumerate(obj):
            problem = shape_problem(item, shape[0], f"{at}[{i}]")
            if problem:
                return problem
        return None
    if shape is float:
        ok = isinstance(obj, (int, float)) and not isinstance(obj, bool)
    elif shape is int:
        ok = isinstance(obj, int) and not isinstance(obj, bool)
    else:
        ok = isinstance(obj, shape)
    return None if ok else f"{where}: expected {getattr(shape, '__name__', shape)}, found {type(obj).__name__}"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class FolderLock:
    """One process at a time in a folder: ``<folder>/.edgeseg.lock`` holds the owner's host and pid.

    A lock whose process is gone (same host) is stale and taken over; on taking the folder,
    temporary files that a killed writer left behind (``.<name>.<hex>.tmp``) are removed.
    """

    NAME = ".edgeseg.lock"

    def __init__(self, folder: str | os.PathLike, what: str = "run folder", wait: float = 0.0):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.what = what
        self.wait = wait  # seconds to wait for another live process to let the folder go (a shared cache), else refuse at once
        self.held = False

    def __enter__(self) -> "FolderLock":
        import time

        from edgeseg.errors import ConfigError

        self.folder.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}\n"
        deadline, stale, said = time.monotonic() + self.wait, 0, False
        while stale < 2:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = self._owner()
                if owner == (socket.gethostname(), os.getpid()):
                    raise ConfigError(f"{self.folder}: this process already holds {self.path}") from None
                busy = (owner is None and self._young()) or (owner is not None and self._alive(*owner))
                here = owner is None or owner[0] == socket.gethostname()  # another machine's lock cannot be told stale: not waited for
                if busy and here and time.monotonic() < deadline:
                    if not said:
                        import logging

                        logging.getLogger(__name__).info(f"{self.folder}: waiting for process {owner[1] if owner else '?'} on "
                                                         f"{owner[0] if owner else 'this machine'}, which holds {self.path}")
                        said = True
                    time.sleep(1.0)
                    continue
                if owner is None and self._young():  # another process is between creating and writing the lock
                    raise ConfigError(f"{self.folder}: this {self.what} is being taken by another process ({self.path}); "
                                      "try again in a moment or use another folder") from None
                if owner is not None and self._alive(*owner):
                    raise ConfigError(f"{self.folder}: this {self.what} is in use by process {owner[1]} on {owner[0]} "
                                      f"({self.path} holds it); wait for it to finish or use another folder") from None
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                stale += 1
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            for tmp in orphaned_temporaries(self.folder):
                tmp.unlink(missing_ok=True)
            return self
        raise ConfigError(f"{self.folder}: could not take {self.path}; remove it if no edgeseg process uses the folder")

    def _owner(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def _young(self, seconds: float = 10.0) -> bool:
        import time

        try:
            return time.time() - self.path.stat().st_mtime < seconds
        except OSError:
            return False

    @staticmethod
    def _alive(host: str, pid: int) -> bool:
        if host != socket.gethostname():
            return True  # another machine's process: cannot tell, so respect it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


@contextlib.contextmanager
def replaced_only_if_verified(path: str | os.PathLike, restore: bool = True) -> Iterator[Path]:
    """Around writing and then checking ``path``: if the block raises, the new file is moved aside to
    ``<stem>.rejected<suffix>`` (for inspection) and the previous ``path``, if any, is put back
    (``restore=False``: dropped instead, when it was derived from an input that has since changed)."""
    path = Path(path)
    backup = path.parent / f".{path.name}.previous"
    if backup.is_file():  # a run killed inside the block left the last verified file here: it is the one to keep
        os.replace(backup, path)
    had = path.is_file()
    if had:
        os.replace(path, backup)
    try:
        yield path
    except BaseException:
        if path.is_file():
            os.replace(path, path.with_name(f"{path.stem}.rejected{path.suffix}"))
        if had:
            if restore:
                os.replace(backup, path)
            else:
                backup.unlink()
        raise
    if had and backup.exists():
        backup.unlink()
