"""Overlay disks and NoCloud seed ISOs, checked with the real tools (qemu-img, isoinfo, pycdlib)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pycdlib
import pytest

from limiquantix.common.process import ToolFailed
from limiquantix.common.qemu_img import UnsafeImage
from limiquantix.node_agent.errors import ImageNotFound
from limiquantix.node_agent.images.local import LocalImage
from limiquantix.node_agent.images.source import inspect_path
from limiquantix.node_agent.overlay import GIB, create_blank, create_overlay
from limiquantix.node_agent.seed.iso import build_seed_iso, write_seed_iso
from tests.support.disks import make_qcow2


def qemu_img_info(path: Path) -> dict[str, object]:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    info: dict[str, object] = json.loads(out)
    return info


async def test_overlay_grows_to_requested_size_and_keeps_the_backing_file(
        tmp_path: Path) -> None:
    base = make_qcow2(tmp_path / "base.qcow2", "64M")
    image = await inspect_path(base)
    disk = tmp_path / "vm" / "disk.qcow2"
    disk.parent.mkdir()
    assert await create_overlay(image, disk, disk_gib=2)
    info = qemu_img_info(disk)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 2 * GIB
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "qcow2"
    assert not list(disk.parent.glob(".*"))  # no temporary file left


async def test_overlay_never_shrinks_an_image_larger_than_requested(tmp_path: Path) -> None:
    base = make_qcow2(tmp_path / "base.qcow2", "3G")
    disk = tmp_path / "disk.qcow2"
    await create_overlay(await inspect_path(base), disk, disk_gib=1)
    assert qemu_img_info(disk)["virtual-size"] == 3 * GIB


async def test_overlay_of_a_raw_image_records_the_raw_format(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(base), "32M"], check=True)
    image = await inspect_path(base)
    assert image.format == "raw"
    disk = tmp_path / "disk.qcow2"
    await create_overlay(image, disk, disk_gib=1)
    assert qemu_img_info(disk)["backing-filename-format"] == "raw"


async def test_existing_overlay_is_left_alone(tmp_path: Path) -> None:
    base = make_qcow2(tmp_path / "base.qcow2")
    image = await inspect_path(base)
    disk = tmp_path / "disk.qcow2"
    assert await create_overlay(image, disk, disk_gib=1)
    inode = disk.stat().st_ino
    assert not await create_overlay(image, disk, disk_gib=5)
    assert disk.stat().st_ino == inode
    assert qemu_img_info(disk)["virtual-size"] == GIB


async def test_blank_disk_for_iso_installs(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    assert await create_blank(disk, 4)
    info = qemu_img_info(disk)
    assert info["virtual-size"] == 4 * GIB and "backing-filename" not in info


async def test_failed_qemu_img_says_why(tmp_path: Path) -> None:
    image = LocalImage(path=tmp_path / "absent.qcow2", format="qcow2", virtual_size=GIB)
    with pytest.raises(ToolFailed) as failure:
        await create_overlay(image, tmp_path / "disk.qcow2", 1)
    assert "absent.qcow2" in failure.value.message
    assert not (tmp_path / "disk.qcow2").exists()


async def test_image_path_checks(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound):
        await inspect_path(tmp_path / "nope.qcow2")
    base = make_qcow2(tmp_path / "base.qcow2")
    layered = tmp_path / "layered.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(layered)], check=True)
    with pytest.raises(UnsafeImage):
        await inspect_path(layered)


async def test_an_iso_file_is_recognised_as_iso(tmp_path: Path) -> None:
    iso = tmp_path / "install.iso"
    iso.write_bytes(build_seed_iso({"README": b"hello"}))
    image = await inspect_path(iso)
    assert image.format == "iso"


SEED = {
    "user-data": b"#cloud-config\nhostname: web-1\n",
    "meta-data": b"instance-id: 6f1c1e36\nlocal-hostname: web-1\n",
    "network-config": b"version: 2\n",
}


def _read_back(iso_bytes: bytes, **path: str) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    iso.close()
    return out.getvalue()


def test_seed_iso_reads_back_through_joliet_rock_ridge_and_iso9660() -> None:
    data = build_seed_iso(SEED)
    for name, content in SEED.items():
        assert _read_back(data, joliet_path=f"/{name}") == content
        assert _read_back(data, rr_path=f"/{name}") == content
    assert _read_back(data, iso_path="/USER_DATA.;1") == SEED["user-data"]


async def test_seed_iso_has_the_cidata_label_for_isoinfo(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    await write_seed_iso(SEED, seed)
    described = subprocess.run(["isoinfo", "-d", "-i", str(seed)], check=True,
                               capture_output=True, text=True).stdout
    assert "Volume id: cidata" in described
    assert "Joliet with UCS level 3" in described
    assert "Rock Ridge signatures version 1" in described
    user_data = subprocess.run(["isoinfo", "-J", "-x", "/user-data", "-i", str(seed)],
                               check=True, capture_output=True).stdout
    assert user_data == SEED["user-data"]
    listing = subprocess.run(["isoinfo", "-R", "-l", "-i", str(seed)], check=True,
                             capture_output=True, text=True).stdout
    assert {"user-data", "meta-data", "network-config"} <= {
        line.split()[-1] for line in listing.splitlines() if line.startswith("-")}


async def test_rewriting_the_seed_replaces_it_atomically(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    await write_seed_iso(SEED, seed)
    await write_seed_iso({**SEED, "meta-data": b"instance-id: new\n"}, seed)
    assert _read_back(seed.read_bytes(), joliet_path="/meta-data") == b"instance-id: new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]


async def test_overlays_copied_from_a_template_match_what_qemu_img_makes(
        tmp_path: Path) -> None:
    from limiquantix.node_agent.overlay import OverlayFactory
    base = make_qcow2(tmp_path / "base.qcow2", "64M")
    image = await inspect_path(base)
    factory = OverlayFactory(tmp_path / "templates")
    factory.reset()
    disks = [tmp_path / f"vm{i}.qcow2" for i in range(3)]
    for disk in disks:
        assert await factory.create(image, disk, disk_gib=2)
    assert len(list((tmp_path / "templates").iterdir())) == 1  # one qemu-img for three VMs
    direct = tmp_path / "direct.qcow2"
    await create_overlay(image, direct, disk_gib=2)
    assert disks[0].read_bytes() == direct.read_bytes()
    for disk in disks:
        info = qemu_img_info(disk)
        assert info["backing-filename"] == str(base) and info["virtual-size"] == 2 * GIB
        subprocess.run(["qemu-img", "check", "-q", str(disk)], check=True)
    # Writing into one overlay leaves the others (and the template) untouched.
    subprocess.run(["qemu-io", "-c", "write -P 0xab 0 64k", str(disks[0])], check=True,
                   capture_output=True)
    assert disks[1].read_bytes() == direct.read_bytes()
    assert not await factory.create(image, disks[1], disk_gib=2)  # exists: left alone
