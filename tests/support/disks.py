"""Disk images for tests: real qcow2 files made by qemu-img, and their hashes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def make_qcow2(path: Path, size: str = "64M") -> Path:
    """A real (blank) qcow2 made by qemu-img: enough for the test driver and for SeaBIOS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    path.chmod(0o644)
    return path


def make_qcow2_with_data(path: Path, mib: int = 4) -> Path:
    """A qcow2 (qemu-img convert) holding ``mib`` MiB of random, incompressible data: not a
    blank image."""
    raw = path.with_suffix(".raw")
    raw.write_bytes(os.urandom(mib << 20))
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True, timeout=60)
    raw.unlink()
    path.chmod(0o644)
    return path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
