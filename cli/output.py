"""Everything ``lq`` draws: tables, key/value blocks, a live status line and a progress bar.

On a terminal the status line and the progress bar redraw in place; when output is piped or
captured they print one plain line per change (progress at most every few seconds), so logs and
tests see the same facts without control characters.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

import msgspec

from limiquantix.cli.sizes import format_bytes, format_duration

if TYPE_CHECKING:
    from limiquantix.cli.context import Context

PROGRESS_LINE_EVERY_S = 1.0
BAR_WIDTH = 24

_json = msgspec.json.Encoder()


def print_json_if_asked(ctx: Context, value: object) -> bool:
    """With ``--json``: print ``value`` (API records, lists of them) as JSON and return True,
    the command then prints nothing else; without it, False."""
    if not ctx.args.json:
        return False
    ctx.print(_json.encode(value).decode())
    return True


def print_names_if_quiet(ctx: Context, names: Iterable[str]) -> bool:
    """With ``-q``: print the names (ids), one a line, and return True; without it, False."""
    if not ctx.args.quiet:
        return False
    text = "\n".join(names)
    if text:
        ctx.print(text)
    return True


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    """``key:   value`` lines, values aligned; empty values are left out."""
    shown = [(k, v) for k, v in pairs if v]
    width = max((len(k) for k, _ in shown), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in shown)


def is_tty(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def redraws(stream: TextIO) -> bool:
    """Redraw lines in place only when both ``stream`` and stdout are terminals: with stdout
    piped (``lq ... | cat``), carriage returns would mix live lines into the pipe's output."""
    return is_tty(stream) and is_tty(sys.stdout)


class StatusLine:
    """One line that says where something is now: redrawn on a TTY, appended otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = redraws(self.stream)
        self.started = time.monotonic()
        self._last = ""

    def update(self, text: str, *, force: bool = False) -> None:
        if text == self._last and not force:
            return
        self._last = text
        if self.tty:
            elapsed = format_duration(time.monotonic() - self.started)
            self.stream.write(f"\r\x1b[K{text}  [{elapsed}]")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def tick(self) -> None:
        """Redraw the live line so its elapsed time moves while nothing else does."""
        if self.tty and self._last:
            self.update(self._last, force=True)

    def done(self, text: str = "") -> None:
        """End the live line (keeping its last text), then print ``text`` if any."""
        if self.tty and self._last:
            self.stream.write("\n")
        if text:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last = ""


def progress_text(done: int, total: int | None, rate: float) -> str:
    """``[#####-----]  42%  12.0 MiB / 28.5 MiB  3.1 MiB/s  ETA 5s``."""
    parts = []
    if total:
        fraction = min(done / total, 1.0)
        filled = int(fraction * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
        parts.append(f"{format_bytes(done)} / {format_bytes(total)}")
    else:
        parts.append(format_bytes(done))
    if rate > 0:
        parts.append(f"{format_bytes(rate)}/s")
        if total and done < total:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
    return "  ".join(parts)


class Progress:
    """A byte progress bar; the rate is the sender's when given, else measured here."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = redraws(self.stream)
        self.started = time.monotonic()
        self._printed_at = 0.0
        self._last_done = -1
        self.done = 0
        self.total: int | None = None
        self._line_open = False

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, total: int | None, rate: float = 0.0) -> None:
        self.done, self.total = done, total or self.total
        now = time.monotonic()
        finished = bool(self.total) and done >= (self.total or 0)
        if not self.tty and not finished and now - self._printed_at < PROGRESS_LINE_EVERY_S:
            return
        if done == self._last_done:
            return
        self._printed_at, self._last_done = now, done
        text = f"{self.label} {progress_text(done, self.total, rate or self.rate())}"
        self.stream.write(f"\r\x1b[K{text}" if self.tty else text + "\n")
        self._line_open = self.tty
        self.stream.flush()

    def finish(self, text: str = "") -> None:
        """End the bar's line (once), then print ``text`` if any."""
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        if text:
            self.stream.write(text + "\n")
        self.stream.flush()
