"""A small progress bar on stderr: count, rate, ETA and free-form fields.

On a terminal it redraws one line; otherwise (logs, CI) it prints a line every
``every_s`` seconds and at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def _fmt_time(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


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
        line = self._line()
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
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
