"""The image builder's disk steps: its MBR as util-linux reads it, and no loop device or mount
left behind when a step fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.guest_image import (
    PARTITION_START,
    SECTOR,
    cached_image_path,
    mounts,
    recipe,
    recipe_hash,
    write_mbr,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("losetup") is None,
                                reason="loop devices need root")


def test_mbr_has_one_bootable_linux_partition_from_1_mib_to_the_end(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    size = 64 << 20
    with disk.open("wb") as f:
        f.truncate(size)
    write_mbr(disk, size // SECTOR)
    out = subprocess.run(["partx", "--show", "--bytes", "--noheadings", "--output",
                          "NR,START,END,SECTORS,TYPE,FLAGS", str(disk)],
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == ["1", str(PARTITION_START), str(size // SECTOR - 1),
                   str(size // SECTOR - PARTITION_START), "0x83", "0x80"]


def test_cache_path_changes_with_the_recipe() -> None:
    spec = recipe()
    assert cached_image_path().parent.name == recipe_hash(spec)
    assert recipe_hash({**spec, "packages": [*spec["packages"], "htop"]}) != recipe_hash(spec)


def _loops_of(path: Path) -> str:
    return subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True,
                          check=True).stdout


@needs_root
def test_failed_step_releases_loop_devices_and_mounts(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(32 << 20)
    target = tmp_path / "mnt"
    seen: dict[str, str] = {}
    with pytest.raises(RuntimeError, match="step failed"), mounts() as m:
        device = m.loop(disk, offset=1 << 20, size=31 << 20)
        subprocess.run(["mkfs.ext4", "-q", device], check=True)
        m.mount(device, target)
        seen["loops"] = _loops_of(disk)
        seen["mounted"] = Path("/proc/mounts").read_text()
        raise RuntimeError("step failed")
    assert device in seen["loops"] and str(target) in seen["mounted"]
    assert _loops_of(disk) == ""
    assert str(target) not in Path("/proc/mounts").read_text()
