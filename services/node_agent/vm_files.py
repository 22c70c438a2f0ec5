"""Where a VM's files live on the node: ``<data_dir>/images/<vm-id>/``.

Directories are 0755 so QEMU, running as ``libvirt-qemu``, can reach the files in them.
Every file is written under a temporary name and renamed, so a crash never leaves half a file
under the real name (a redelivered command then simply makes it again).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DIR_MODE = 0o755


@dataclass(frozen=True, slots=True)
class VmFiles:
    """The paths of one VM's files."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path, vm_id: str) -> VmFiles:
        return cls(data_dir / "images" / vm_id)

    @property
    def disk(self) -> Path:
        return self.root / "disk.qcow2"

    @property
    def seed(self) -> Path:
        return self.root / "seed.iso"

    @property
    def serial_log(self) -> Path:
        return self.root / "serial.log"

    @property
    def domain_xml(self) -> Path:
        """The domain definition as last defined, used to redefine a lost domain."""
        return self.root / "domain.xml"

    def make_dirs(self) -> None:
        """Create the VM directory (and its parents) reachable by the QEMU user."""
        self.root.parent.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.root.parent.parent, self.root.parent, self.root):
            path.mkdir(exist_ok=True)
            path.chmod(path.stat().st_mode | DIR_MODE)

    def remove(self) -> None:
        """Remove the VM directory and everything in it (no error when already gone)."""
        shutil.rmtree(self.root, ignore_errors=True)


def temp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under before the rename."""
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = temp_path(path)
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.chmod(mode)
    tmp.replace(path)
