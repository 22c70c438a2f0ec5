"""Fixtures for the cloud-init tests: real SSH keys, and cloud-init's own Python code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest


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
