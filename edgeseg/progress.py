"""Terminal output on stderr: a small progress bar (count, rate, ETA and free-form fields) and
edgeseg's log records as plain lines.

On a terminal a bar redraws one line; otherwise (logs, CI) it prints a line every ``every_s``
seconds and at the end, so logs stay short. A message printed while a bar's line is open on a
terminal (a warning, an error that stops the command) first ends that line (``end_line``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def _fmt_time(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


_open_line = None  # the terminal stream whose last write was a bar's redraw without its newline
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped: a message quoting a user's path or value (a
    file name with a newline in it, an escape sequence) stays one line and cannot redraw the terminal."""
    return str(text).translate(_CONTROL)


def end_line() -> None:
    """End a bar's line left open on a terminal, so that the next message starts a line of its own."""
    global _open_line
    if _open_line is not None:
        _open_line.write("\n")
        _open_line.flush()
        _open_line = None


class Progress:
    def __init__(self, total: int | None, desc: str = "", unit: str = "it", enabled: bool = True, every_s: float = 10.0, stream=None):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = 0.2 if self.tty else every_s
        self.n = 0
        self.units = 0.0
        self.fields: dict[str, str] = {}
        self.start = time.perf_counter()
        self._last = 0.0

    def set(self, **fields) -> None:
        for k, v in fields.items():
            self.fields[k] = f"{v:.4g}" if isinstance(v, float) else str(v)

    def update(self, n: int = 1, units: float | None = None) -> None:
        self.n += n
        self.units += n if units is None else units
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            self._draw(final=False)

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.units / elapsed if elapsed > 0 else 0.0
        parts = [self.desc] if self.desc else []
        parts.append(f"{self.n}/{self.total}" if self.total else f"{self.n}")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and self.n:
            parts.append(f"ETA {_fmt_time(elapsed / self.n * (self.total - self.n))}")
        parts.append(f"elapsed {_fmt_time(elapsed)}")
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        return "  ".join(parts)

    def _draw(self, final: bool) -> None:
        global _open_line
        line = self._line()
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
            _open_line = None if final else self.stream
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(final=True)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.units / elapsed if elapsed > 0 else 0.0


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True) -> Iterator[T]:
    bar = Progress(total if total is not None else (len(items) if hasattr(items, "__len__") else None), desc, unit, enabled)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()


class _EchoHandler(logging.Handler):
    """edgeseg's log records as plain lines on stderr ("warning: " before warnings); the stream is
    looked up at each record, so redirected or captured stderr gets them."""

    def emit(self, record: logging.LogRecord) -> None:
        import click

        msg = one_line(record.getMessage())
        end_line()
        click.echo(f"warning: {msg}" if record.levelno >= logging.WARNING else msg, err=True)


def configure_logging() -> None:
    """Library modules log to ``logging.getLogger("edgeseg.<module>")``; the command line shows them."""
    root = logging.getLogger("edgeseg")
    root.handlers = [h for h in root.handlers if not isinstance(h, _EchoHandler)] + [_EchoHandler()]
    root.setLevel(logging.INFO)
    root.propagate = False
