"""The NoCloud seed ISO (volume label ``cidata``) built in memory with pycdlib.

Names are given three ways so every reader finds them: ISO 9660 level 3 (``USER_DATA.;1``),
Rock Ridge and Joliet (``user-data``). pycdlib is blocking, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from pathlib import Path

import pycdlib

from limiquantix.node_agent.vm_files import write_atomic

VOLUME_LABEL = "cidata"


def _iso9660_name(name: str) -> str:
    return "/" + name.upper().replace("-", "_").replace(".", "_") + ".;1"


def build_seed_iso(files: Mapping[str, bytes]) -> bytes:
    """The ISO image holding ``files`` (name -> content) at its root."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL)
    try:
        for name, content in sorted(files.items()):
            iso.add_fp(io.BytesIO(content), len(content), _iso9660_name(name),
                       rr_name=name, joliet_path="/" + name, file_mode=0o100444)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def _write(files: Mapping[str, bytes], dest: Path) -> None:
    write_atomic(dest, build_seed_iso(files))


async def write_seed_iso(files: Mapping[str, bytes], dest: Path) -> None:
    """Build the seed ISO and put it at ``dest`` atomically (replacing an older one)."""
    await asyncio.to_thread(_write, dict(files), dest)
