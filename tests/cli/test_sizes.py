"""Sizes and durations as users type them."""

from __future__ import annotations

import pytest

from limiquantix.cli.errors import UsageError
from limiquantix.cli.sizes import (
    format_bytes,
    format_duration,
    format_mib,
    parse_duration,
    parse_size,
    to_gib,
    to_mib,
)


@pytest.mark.parametrize(("text", "mib"), [
    ("2G", 2048), ("2g", 2048), ("2GB", 2048), ("2GiB", 2048), ("2048M", 2048),
    ("2048MiB", 2048), ("512MiB", 512), ("512", 512), ("1.5G", 1536), ("1048576K", 1024),
    (" 4 G ", 4096),
])
def test_memory_sizes_in_every_spelling_become_mib(text: str, mib: int) -> None:
    assert to_mib(text) == mib


@pytest.mark.parametrize(("text", "gib"), [("20G", 20), ("20", 20), ("1T", 1024),
                                           ("10240M", 10)])
def test_disk_sizes_become_gib(text: str, gib: int) -> None:
    assert to_gib(text) == gib


@pytest.mark.parametrize("text", ["", "G", "2X", "two", "-1G", "2.5.1G", "1e3"])
def test_nonsense_sizes_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_disk_that_is_not_whole_gib_is_refused_with_an_example() -> None:
    with pytest.raises(UsageError, match="whole number of GiB"):
        to_gib("512M")


def test_memory_that_is_not_whole_mib_is_refused() -> None:
    with pytest.raises(UsageError, match="whole number of MiB"):
        to_mib("1000K")


def test_bytes_suffix_means_bytes() -> None:
    assert parse_size("512b") == 512
    assert parse_size("1KiB") == 1024


def test_formatting_sizes_for_people() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(64 * 1024**2) == "64.0 MiB"
    assert format_bytes(3 * 1024**4) == "3.0 TiB"
    assert format_mib(2048) == "2G"
    assert format_mib(1536) == "1536M"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("10m", 600),
                                               ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
                                               ("1.5m", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "ten minutes", "5m-"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_durations_print_short() -> None:
    assert format_duration(3.25) == "3.2s"
    assert format_duration(75) == "1m15s"
    assert format_duration(3600) == "1h"
    assert format_duration(90000) == "1d1h"
