"""Tables, the status line and the progress bar, as a pipe (not a TTY) sees them."""

from __future__ import annotations

import io
import time

import pytest

from limiquantix.cli import output
from limiquantix.cli.output import Progress, StatusLine, key_values, progress_text, table


def test_table_columns_line_up_and_lines_have_no_trailing_spaces() -> None:
    text = table(["NAME", "STATE", "NODE"], [["web-1", "running", "node-a"],
                                            ["database-primary", "stopped", "-"]])
    lines = text.splitlines()
    assert lines == [
        "NAME              STATE    NODE",
        "web-1             running  node-a",
        "database-primary  stopped  -",
    ]


def test_table_with_no_rows_is_just_the_header() -> None:
    assert table(["A", "B"], []) == "A  B"


def test_key_values_align_and_skip_empty_values() -> None:
    text = key_values([("name", "web-1"), ("error", ""), ("state", "running")])
    assert text == "name:  web-1\nstate: running"


def test_progress_text_has_bar_percent_bytes_rate_and_eta() -> None:
    text = progress_text(50 * 1024**2, 100 * 1024**2, 10 * 1024**2)
    assert text.startswith("[" + "#" * 12 + "-" * 12 + "]  50%")
    assert "50.0 MiB / 100.0 MiB" in text
    assert "10.0 MiB/s" in text
    assert "ETA 5.0s" in text


def test_progress_text_without_a_total_shows_bytes_only() -> None:
    assert progress_text(2048, None, 0) == "2.0 KiB"


def test_piped_progress_prints_plain_lines_at_most_every_interval_and_always_the_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    progress = Progress("img:", stream)
    progress.update(10, 100)  # printed (first)
    clock[0] += 0.5
    progress.update(20, 100)  # too soon: skipped
    clock[0] += output.PROGRESS_LINE_EVERY_S
    progress.update(60, 100)  # printed
    clock[0] += 0.1
    progress.update(100, 100)  # finished: always printed
    progress.finish("img: active")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert all("\r" not in line and "\x1b" not in line for line in lines)
    assert "10%" in lines[0] and "60%" in lines[1] and "100%" in lines[2]
    assert lines[3] == "img: active"


def test_piped_status_line_prints_each_change_once() -> None:
    stream = io.StringIO()
    status = StatusLine(stream)
    for state in ("web: pending", "web: creating", "web: creating", "web: running"):
        status.update(state)
    status.done("done")
    assert stream.getvalue().splitlines() == ["web: pending", "web: creating", "web: running",
                                              "done"]
