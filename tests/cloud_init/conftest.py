"""Fixtures for the cloud-init tests: records, real SSH keys, and cloud-init's own Python code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from limiquantix.common.cloud_init import prepare
from limiquantix.common.vms import CloudInitRequest, VmRecord


def make_record(request: CloudInitRequest, *, vm_id: str = "vm-0123",
                instance_id: str = "") -> VmRecord:
    now = datetime.now(UTC)
    return VmRecord(
        id=vm_id, name="web-1", image="debian12", vcpus=1, memory_mib=512, disk_gib=4,
        cloud_init=prepare(request, vm_name="web-1"), instance_id=instance_id,
        created_at=now, updated_at=now,
    )


@pytest.fixture(scope="session")
def ssh_public_keys(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two freshly generated ed25519 public keys."""
    tmp = tmp_path_factory.mktemp("ssh")
    keys = []
    for name in ("alice", "bob"):
        path = tmp / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(path)], check=True)
        keys.append(path.with_suffix(".pub").read_text().strip())
    return keys


@pytest.fixture(scope="session")
def cloudinit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The ``cloudinit`` package of the Debian 12 guest (22.4), from the configured apt mirror.

    Only its pure-Python user-data processing and merging is used. ``jsonpatch`` (needed only
    by ``#cloud-config-jsonp`` parts, which nothing here sends) is replaced by an empty module
    when absent.
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb to fetch cloud-init")
    tmp = tmp_path_factory.mktemp("cloud-init-deb")
    fetched = subprocess.run(["apt-get", "download", "cloud-init"], cwd=tmp,
                             capture_output=True, text=True, timeout=120)
    debs = list(tmp.glob("cloud-init_*.deb"))
    if fetched.returncode != 0 or not debs:
        pytest.skip(f"apt-get download cloud-init failed: {fetched.stderr.strip()[-300:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "x")], check=True)
    site = str(tmp / "x/usr/lib/python3/dist-packages")
    sys.path.insert(0, site)
    sys.modules.setdefault("jsonpatch", types.ModuleType("jsonpatch"))
    import cloudinit

    yield cloudinit
    sys.path.remove(site)


def merged_cloud_config(cloudinit: Any, user_data: bytes, tmp_path: Path) -> dict[str, Any]:
    """What cloud-init 22.4 makes of ``user_data``: its processor, then its cloud-config merge."""
    from cloudinit import handlers, helpers, util
    from cloudinit.handlers.cloud_config import CloudConfigPartHandler
    from cloudinit.settings import PER_INSTANCE
    from cloudinit.user_data import UserDataProcessor

    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"), "run_dir": str(tmp_path)})
    message = UserDataProcessor(paths).process(user_data)
    handler = CloudConfigPartHandler(paths)
    handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
    for part in message.walk():
        if part.get_content_type() != "text/cloud-config":
            continue
        headers = dict(part)
        headers["Content-Type"] = part.get_content_type()
        handler.handle_part(None, "text/cloud-config", part.get_filename() or "part",
                            util.fully_decoded_payload(part), PER_INSTANCE, headers)
    merged: dict[str, Any] = handler.cloud_buf or {}
    return merged


def shell_scripts(cloudinit: Any, user_data: bytes, tmp_path: Path) -> list[str]:
    """The scripts cloud-init would run from ``user_data``, in order."""
    from cloudinit import helpers, util
    from cloudinit.user_data import UserDataProcessor

    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"), "run_dir": str(tmp_path)})
    message = UserDataProcessor(paths).process(user_data)
    return [util.fully_decoded_payload(p) for p in message.walk()
            if p.get_content_type() == "text/x-shellscript"]
