"""Where a VM's files live on the node: ``<data_dir>/images/<vm-id>/``, and who may read them.

The VM's files hold guest data and secrets (the seed ISO has the password hash and user-data),
so they are not world-readable: files 0640 and directories 0750, group of libvirt's QEMU user
(:func:`qemu_gid`), so QEMU reads them and other users do not. Without that group (a host with
no libvirt QEMU user, libvirt's test driver) they are 0600/0700, owner only.
Every file is written under a temporary name and renamed, so a crash never leaves half a file
under the real name (a redelivered command then simply makes it again).

Every path built from a message goes through :func:`path_inside`: a name that would leave its
root (``..``, an absolute path, a symlink out) is refused before anything is touched.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from limiquantix.node_agent.errors import NodeAgentError

QEMU_USER = "libvirt-qemu"
# The dedicated group first (only QEMU is in it), then the QEMU user's primary group.
QEMU_GROUPS = ("libvirt-qemu", "kvm")
GROUP_FILE_MODE = 0o640
GROUP_DIR_MODE = 0o750
OWNER_FILE_MODE = 0o600
OWNER_DIR_MODE = 0o700


class PathOutsideRoot(NodeAgentError):
    """A name from a message would resolve outside the directory it must stay in."""

    code = "invalid_path"
    status = 422
    default_hint = "Ids are UUIDs or DNS labels; the request was refused as malformed."


def path_inside(root: Path, name: str) -> Path:
    """``root / name``, refused unless it resolves (symlinks followed) strictly inside root."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise PathOutsideRoot(f"{name!r} is not a plain file name", name=name[:80])
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise PathOutsideRoot(f"{name!r} resolves outside {root.name}/", name=name[:80])
    return root / name


@functools.cache
def qemu_gid() -> int | None:
    """The group QEMU runs with (see module docstring), None on a host without it."""
    for group in QEMU_GROUPS:
        with contextlib.suppress(KeyError):
            gid = grp.getgrnam(group).gr_gid
            with contextlib.suppress(KeyError):
                user = pwd.getpwnam(QEMU_USER)
                if gid == user.pw_gid or QEMU_USER in grp.getgrgid(gid).gr_mem:
                    return gid
    return None


def _share_with_qemu(path: Path | int, group_mode: int, owner_mode: int) -> None:
    gid = qemu_gid()
    if gid is not None:
        try:
            os.chown(path, -1, gid)
        except PermissionError:  # not root and not in the group: keep it to ourselves
            gid = None
    os.chmod(path, group_mode if gid is not None else owner_mode)


def restrict_file(path: Path | int) -> None:
    """Make a VM file (path or open descriptor) readable by its owner and QEMU only."""
    _share_with_qemu(path, GROUP_FILE_MODE, OWNER_FILE_MODE)


def restrict_dir(path: Path) -> None:
    """Make a directory of VM files reachable by its owner and QEMU only."""
    _share_with_qemu(path, GROUP_DIR_MODE, OWNER_DIR_MODE)


def ensure_traversable(path: Path) -> None:
    """Let QEMU pass through a parent directory we do not own the policy of (names stay
    unlisted: execute only for group and others)."""
    mode = path.stat().st_mode
    if mode & 0o011 != 0o011:
        path.chmod(mode | 0o011)


@dataclass(frozen=True, slots=True)
class VmFiles:
    """The paths of one VM's files."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path, vm_id: str) -> VmFiles:
        """The files of ``vm_id``; PathOutsideRoot when the id would leave ``images/``."""
        return cls(path_inside(data_dir / "images", vm_id))

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
        """Create the VM directory (and ``images/``) reachable by the QEMU user only."""
        data_dir = self.root.parent.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        ensure_traversable(data_dir)
        for path in (self.root.parent, self.root):
            path.mkdir(mode=0o700, exist_ok=True)
            restrict_dir(path)

    def remove(self) -> None:
        """Remove the VM directory and everything in it (no error when already gone)."""
        shutil.rmtree(self.root, ignore_errors=True)


def temp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under before the rename."""
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (owner and QEMU only).

    The file is restricted before a byte is written: there is no moment it is world-readable.
    """
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_FILE_MODE)
    with open(fd, "wb") as out:
        restrict_file(fd)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
