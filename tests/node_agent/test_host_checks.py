"""The node's start-up findings about its host (issue 9): a /dev/kvm libvirt's QEMU user cannot
open. A stand-in device file is enough: the check reads owner, group and mode as the kernel's
DAC check would, for the real user and group database of this machine."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from limiquantix.node_agent.host_checks import kvm_access_warning

USER = "nobody"  # exists on every Debian machine, never root, never in group root


def _device(tmp_path: Path, mode: int, group: int = 0) -> Path:
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    os.chown(device, 0, group)
    device.chmod(mode)
    return device


def test_a_device_only_root_can_open_gets_a_warning_with_the_fix(tmp_path: Path) -> None:
    warning = kvm_access_warning(_device(tmp_path, 0o600), user=USER)
    assert warning is not None and warning.code == "kvm_not_accessible"
    assert "root:root 0600" in warning.message and USER in warning.message
    assert "scripts/libvirtd.sh" in warning.hint and "chmod 660" in warning.hint


def test_the_group_udev_would_set_makes_it_fine(tmp_path: Path) -> None:
    group = pwd.getpwnam(USER).pw_gid
    assert kvm_access_warning(_device(tmp_path, 0o660, group), user=USER) is None
    assert kvm_access_warning(_device(tmp_path, 0o640, group), user=USER) is not None  # read-only


def test_no_device_or_no_qemu_user_means_nothing_to_warn_about(tmp_path: Path) -> None:
    assert kvm_access_warning(tmp_path / "absent", user=USER) is None
    assert kvm_access_warning(_device(tmp_path, 0o600), user="no-such-user-lq") is None


def test_world_read_write_is_enough(tmp_path: Path) -> None:
    assert grp.getgrgid(0).gr_name == "root"
    assert kvm_access_warning(_device(tmp_path, 0o666), user=USER) is None
