"""Seed ISOs built in memory with pycdlib: NoCloud (label ``cidata``, files at the root) or
an OpenStack config drive (label ``config-2``, files under ``openstack/latest/``).

Names are given three ways so every reader finds them: ISO 9660 level 3 (``USER_DATA.;1``),
Rock Ridge and Joliet (``user-data``). A name with ``/`` lands in directories made on the way.
pycdlib is blocking, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from pathlib import Path

import pycdlib

from limiquantix.node_agent.vm_files import write_atomic

VOLUME_LABEL = "cidata"


def _iso9660_dir(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def _iso9660_file(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # no extension: 'user-data' -> 'USER_DATA.;1' as before
        return _iso9660_dir(name) + ".;1"
    return f"{_iso9660_dir(stem)}.{_iso9660_dir(ext)};1"


def _iso_path(parts: list[str]) -> str:
    return "/" + "/".join([*map(_iso9660_dir, parts[:-1]), _iso9660_file(parts[-1])])


def _add_dirs(iso: pycdlib.PyCdlib, parts: list[str], made: set[str]) -> None:
    for depth in range(1, len(parts)):
        path = "/".join(parts[:depth])
        if path in made:
            continue
        iso.add_directory("/" + "/".join(map(_iso9660_dir, parts[:depth])),
                          rr_name=parts[depth - 1], joliet_path="/" + path)
        made.add(path)


def build_seed_iso(files: Mapping[str, bytes], label: str = VOLUME_LABEL) -> bytes:
    """The ISO image labelled ``label`` holding ``files`` (relative path -> content)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    made: set[str] = set()
    try:
        for name, content in sorted(files.items()):
            parts = name.strip("/").split("/")
            _add_dirs(iso, parts, made)
            iso.add_fp(io.BytesIO(content), len(content), _iso_path(parts),
                       rr_name=parts[-1], joliet_path="/" + "/".join(parts),
                       file_mode=0o100444)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def _write(files: Mapping[str, bytes], dest: Path, label: str) -> None:
    write_atomic(dest, build_seed_iso(files, label))


async def write_seed_iso(files: Mapping[str, bytes], dest: Path,
                         label: str = VOLUME_LABEL) -> None:
    """Build the seed ISO and put it at ``dest`` atomically (replacing an older one)."""
    await asyncio.to_thread(_write, dict(files), dest, label)
