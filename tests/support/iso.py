"""Tiny ISO 9660 images for tests (pycdlib), e.g. to insert as VM media."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib


def make_iso(path: Path, files: dict[str, bytes] | None = None, label: str = "LQTEST") -> Path:
    """An ISO 9660 image (Joliet and Rock Ridge names) holding ``files`` at its root."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    for name, data in (files or {"hello.txt": b"hello from limiquantix\n"}).items():
        short = name.upper().replace("-", "_")[:30]
        iso.add_fp(io.BytesIO(data), len(data), f"/{short};1", rr_name=name,
                   joliet_path=f"/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    iso.write(str(path))
    iso.close()
    path.chmod(0o644)
    return path
