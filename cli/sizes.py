"""Human sizes and durations on the command line: ``2G``, ``2048M``, ``512MiB``, ``10m``.

Size suffixes are binary (powers of 1024) whether written ``G``, ``GB`` or ``GiB``: VM memory
and disks are always sized in binary units, as qemu-img and Multipass read them. A bare number
means the option's own unit (MiB for memory, GiB for disks), so ``--memory 2048`` still works.
"""

from __future__ import annotations

import math
import re

from limiquantix.cli.errors import UsageError

_UNITS = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpb]?)(?:i?b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MIB = 1024**2
GIB = 1024**3


def parse_size(text: str, default_unit: str = "m") -> int:
    """Bytes for ``text``; a bare number is in ``default_unit`` (one of b, k, m, g, t)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"invalid size {text!r}: use a number with K, M, G or T (e.g. 2G, 512M)")
    number, unit = float(match.group(1)), match.group(2).lower()
    power = _UNITS[unit or default_unit]
    size = number * 1024**power
    if size != int(size):
        raise UsageError(f"invalid size {text!r}: not a whole number of bytes")
    return int(size)


def to_mib(text: str) -> int:
    """Memory: ``2G`` → 2048; must be a whole number of MiB."""
    size = parse_size(text, default_unit="m")
    if size % MIB:
        raise UsageError(f"memory {text!r} is not a whole number of MiB")
    return size // MIB


def to_gib(text: str) -> int:
    """Disk: ``20G`` → 20; must be a whole number of GiB (the API's disk granularity)."""
    size = parse_size(text, default_unit="g")
    if size % GIB or size == 0:
        raise UsageError(f"disk {text!r} is not a whole number of GiB (e.g. 10G)")
    return size // GIB


def format_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``; one decimal from KiB on."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def format_mib(mib: int) -> str:
    """Memory as people say it: ``2048`` → ``2G``, ``1536`` → ``1536M``."""
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def parse_duration(text: str) -> float:
    """Seconds for ``90``, ``10m``, ``1h30m``, ``2d``; a bare number is seconds."""
    compact = text.strip().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise UsageError(f"invalid duration {text!r}: use e.g. 30s, 10m, 2h, 1d")
    return sum(float(n) * _SECONDS[u.lower()] for n, u in parts)


def format_duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``3.2`` → ``3.2s``; ``90000`` → ``1d1h``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = math.floor(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
