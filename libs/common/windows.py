"""Windows guests at the gateway: which VMs are Windows, the minimums they need, and the
virtio-win driver ISO they get when the library has one (docs/windows.md).

Pure functions: the gateway calls them at create time, before anything is placed or made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from limiquantix.common.errors import InvalidRequest
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.common.vms import (
    DomainJoinRequest,
    DomainJoinSpec,
    OsType,
    WindowsRequest,
    WindowsSpec,
)

# Windows 11 / Server 2022 setup refuses less (Microsoft's published requirements: 2 cores,
# 4 GB RAM, 64 GB storage).
MIN_VCPUS = 2
MIN_MEMORY_MIB = 4096
MIN_DISK_GIB = 64
VIRTIO_WIN_PREFIX = "virtio-win"


class NotWindows(InvalidRequest):
    """A ``windows`` section was sent for a VM that is not Windows."""

    code = "windows_section_not_windows"
    default_hint = ("Send 'os_type': 'windows' (or use an image whose os is windows), or leave "
                    "the windows section out.")


class WindowsTooSmall(InvalidRequest):
    """A Windows VM asked for less than Windows Setup accepts (details: what, asked, needed)."""

    code = "windows_too_small"


def os_type_for(requested: OsType | None, image_os: str) -> OsType:
    """The request's ``os_type``, else the image's ``os`` ('windows...' -> windows), else linux."""
    if requested is not None:
        return requested
    return "windows" if image_os.strip().lower().startswith("windows") else "linux"


def check_minimums(os_type: OsType, *, vcpus: int, memory_mib: int, disk_gib: int) -> None:
    """Raise WindowsTooSmall naming every shortfall of a Windows VM (nothing for Linux)."""
    if os_type != "windows":
        return
    short = [(what, asked, needed, flag) for what, asked, needed, flag in (
        ("vcpus", vcpus, MIN_VCPUS, "--vcpus 2"),
        ("memory_mib", memory_mib, MIN_MEMORY_MIB, "--memory 4G"),
        ("disk_gib", disk_gib, MIN_DISK_GIB, "--disk 64G"),
    ) if asked < needed]
    if not short:
        return
    said = ", ".join(f"{what} {asked} < {needed}" for what, asked, needed, _ in short)
    raise WindowsTooSmall(
        f"Windows needs at least {MIN_VCPUS} vCPUs, {MIN_MEMORY_MIB} MiB of memory and a "
        f"{MIN_DISK_GIB} GiB disk (Windows Setup refuses less); asked: {said}",
        hint="Ask for " + ", ".join(f"{what} >= {needed} (`{flag}`)"
                                    for what, _, needed, flag in short) + ".",
        fields=[what for what, *_ in short],
    )


def pick_virtio_win(images: Iterable[ImageRecord]) -> ImageRecord | None:
    """The library's virtio-win ISO (active, named ``virtio-win...``; the newest name wins)."""
    found = [i for i in images if i.state == ImageState.ACTIVE and i.format == "iso"
             and i.name.lower().startswith(VIRTIO_WIN_PREFIX)]
    return max(found, key=lambda i: i.name) if found else None


NETBIOS_MAX = 15
_NETBIOS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class InvalidComputerName(InvalidRequest):
    """The Windows computer name breaks NetBIOS rules (details: name, reason)."""

    code = "invalid_computer_name"
    default_hint = ("Set windows.computer_name to 1-15 letters, digits and '-', not only "
                    "digits, not starting or ending with '-'.")


def computer_name(requested: str, vm_name: str) -> str:
    """The Windows computer name: ``requested``, else the VM name; InvalidComputerName when it
    is not a NetBIOS name (Windows Setup would stop at the specialize pass)."""
    name = requested or vm_name
    given = "windows.computer_name" if requested else "the VM name (the default computer name)"
    reason = ""
    if not 0 < len(name) <= NETBIOS_MAX:
        reason = f"is {len(name)} characters; a Windows computer name has 1 to {NETBIOS_MAX}"
    elif not set(name) <= _NETBIOS_CHARS:
        reason = "may hold only letters, digits and '-'"
    elif name.isdigit():
        reason = "cannot be only digits"
    elif name.startswith("-") or name.endswith("-"):
        reason = "cannot start or end with '-'"
    if reason:
        raise InvalidComputerName(f"{given} {name!r} {reason}", name=name, reason=reason)
    return name


# Windows passwords (the administrator's, the domain join account's) must reach the node's seed
# in a reversible form (unattend.xml wants them), so the record holds them sealed (AES-GCM) with a
# key only the gateway and the nodes derive: the node key (``library_tokens.node_key``) and the VM
# id. The KV store, events and API never see them.
_SEAL_CONTEXT = b"lq windows admin password v1 "


def _seal_key(node_key: bytes, vm_id: str) -> bytes:
    return hmac.new(node_key, _SEAL_CONTEXT + vm_id.encode(), hashlib.sha256).digest()


def seal_password(node_key: bytes, vm_id: str, password: str) -> str:
    """``password`` sealed for the nodes (base64 of nonce + AES-GCM ciphertext)."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_seal_key(node_key, vm_id)).encrypt(nonce, password.encode(), vm_id.encode())
    return base64.b64encode(nonce + sealed).decode()


def open_password(node_key: bytes, vm_id: str, sealed: str) -> str:
    """The password :func:`seal_password` sealed (raises InvalidTag when the key differs)."""
    raw = base64.b64decode(sealed)
    plain = AESGCM(_seal_key(node_key, vm_id)).decrypt(raw[:12], raw[12:], vm_id.encode())
    return plain.decode()


def _domain_join(request: DomainJoinRequest | None, *, vm_id: str, node_key: bytes
                 ) -> DomainJoinSpec | None:
    if request is None:
        return None
    return DomainJoinSpec(domain=request.domain.lower(), user=request.user, ou=request.ou,
                          password_sealed=seal_password(node_key, vm_id, request.password))


def prepare(request: WindowsRequest | None, os_type: OsType, *, vm_id: str, vm_name: str,
            node_key: bytes) -> WindowsSpec | None:
    """Validate ``request`` (InvalidComputerName, NotWindows) and return what is stored
    (password sealed); None without a request."""
    if request is None:
        return None
    if os_type != "windows":
        raise NotWindows(f"a windows section was sent for a {os_type} VM")
    name = computer_name(request.computer_name, vm_name)
    sealed = (seal_password(node_key, vm_id, request.admin_password)
              if request.admin_password else "")
    return WindowsSpec(
        computer_name=name, admin_user=request.admin_user, admin_password_sealed=sealed,
        timezone=request.timezone, locale=request.locale, keyboard=request.keyboard,
        product_key=request.product_key or "", enable_rdp=request.enable_rdp,
        enable_winrm=request.enable_winrm, first_logon_commands=request.first_logon_commands,
        windows_version=request.windows_version, secure_boot=request.secure_boot,
        domain_join=_domain_join(request.domain_join, vm_id=vm_id, node_key=node_key),
    )
