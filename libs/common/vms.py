"""Virtual machines: the request body, the stored record and the lifecycle state machine."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from limiquantix.common.model import Model, RequestBody

DnsLabel = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length=63,
                      description="DNS label: lower-case letters, digits and '-'")
]


class VmState(enum.StrEnum):
    """Where a VM is in its life. See docs/architecture.md for the transition table."""

    PENDING = "pending"  # accepted by the API, command queued for the node
    CREATING = "creating"  # node is fetching the image, making disk and seed, defining
    STARTING = "starting"
    RUNNING = "running"  # domain runs; guest not yet known to be ready
    READY = "ready"  # cloud-init finished in the guest
    STOPPING = "stopping"
    STOPPED = "stopped"
    PAUSED = "paused"
    REBOOTING = "rebooting"
    DELETING = "deleting"
    ERROR = "error"
    # Shown by the API, never stored: the VM's node is offline, so its real state is unknown.
    UNKNOWN = "unknown"


class VmAction(enum.StrEnum):
    """Lifecycle actions a user can ask for on an existing VM."""

    START = "start"
    STOP = "stop"
    FORCE_STOP = "force-stop"
    REBOOT = "reboot"
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"


_UP = frozenset({VmState.RUNNING, VmState.READY})

# action -> (states it is legal from, the transitional state the API records at once)
TRANSITIONS: dict[VmAction, tuple[frozenset[VmState], VmState]] = {
    VmAction.START: (frozenset({VmState.STOPPED, VmState.ERROR}), VmState.STARTING),
    VmAction.STOP: (_UP, VmState.STOPPING),
    VmAction.FORCE_STOP: (
        _UP | {VmState.PAUSED, VmState.STOPPING, VmState.STARTING, VmState.REBOOTING,
               VmState.ERROR},
        VmState.STOPPING,
    ),
    VmAction.REBOOT: (_UP, VmState.REBOOTING),
    VmAction.PAUSE: (_UP, VmState.PAUSED),
    VmAction.RESUME: (frozenset({VmState.PAUSED}), VmState.RUNNING),
    VmAction.DELETE: (frozenset(VmState) - {VmState.DELETING, VmState.UNKNOWN},
                      VmState.DELETING),
}


def next_state(action: VmAction, current: VmState) -> VmState | None:
    """The state the API records when ``action`` is asked in ``current``; None if illegal."""
    legal, transitional = TRANSITIONS[action]
    return transitional if current in legal else None


def is_up(state: VmState) -> bool:
    """True when the domain is running (whether or not the guest is ready)."""
    return state in _UP


class PortForward(Model, frozen=True, kw_only=True):
    """A host TCP port (bound to the node's console/forward address) forwarded into the guest."""

    guest_port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    host_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # 0: the node picks a free one
    name: str = ""


NetworkMode = Literal["none", "user", "isolated", "bridge", "network"]


class NetworkSpec(Model, frozen=True, kw_only=True):
    """How the VM's single NIC is attached.

    ``user``: QEMU user networking with forwards on 127.0.0.1 (the laptop default); restricted
    like ``isolated`` unless the node sets ``LQ_USER_NETWORK_OUTBOUND`` (outbound NAT, which
    also reaches the node's loopback services).
    ``isolated``: ``restrict=on`` always: no traffic leaves the guest but the forwards.
    ``bridge`` / ``network``: an existing host bridge or libvirt network, named by ``source``.
    """

    mode: NetworkMode = "none"
    source: str = ""
    forwards: tuple[PortForward, ...] = ()
    ssh: bool = True  # with user/isolated, forward guest port 22


# The seed media a VM's first-boot agent reads: NoCloud (cidata) or OpenStack's config drive.
SeedDatasource = Literal["nocloud", "configdrive"]
# The guest OS family the domain is shaped for (docs/windows.md).
OsType = Literal["linux", "windows"]


class CloudInitSpec(Model, frozen=True, kw_only=True):
    """Cloud-init settings as stored: the password only ever as a SHA-512 crypt hash."""

    user: str = "admin"
    ssh_authorized_keys: tuple[str, ...] = ()
    password_hash: str = ""
    ssh_pwauth: bool = False
    hostname: str = ""
    user_data: str = ""
    network_config: str = ""
    vendor_data: str = ""
    locale: str = "C.UTF-8"
    datasource: SeedDatasource = "nocloud"


class CloudInitRequest(RequestBody, frozen=True, kw_only=True):
    """Cloud-init settings as a client sends them (a plain password is hashed at the gateway)."""

    user: Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "admin"
    ssh_authorized_keys: tuple[str, ...] = ()
    password: str | None = None
    ssh_pwauth: bool = False
    hostname: DnsLabel | None = None
    user_data: str = ""
    network_config: str = ""
    vendor_data: str = ""
    locale: str = "C.UTF-8"
    datasource: Annotated[SeedDatasource, msgspec.Meta(
        description="seed media format: 'nocloud' (label cidata) or 'configdrive' (OpenStack "
                    "config drive, label config-2, also read by cloudbase-init)")] = "nocloud"


class PortForwardRequest(RequestBody, frozen=True, kw_only=True):
    guest_port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    host_port: Annotated[int, msgspec.Meta(
        ge=0, le=65535, description="0: the node picks a free port; else one inside "
                                    "LQ_FORWARD_PORT_RANGE (default 20000-29999)")] = 0
    name: str = ""


class NetworkRequest(RequestBody, frozen=True, kw_only=True):
    mode: NetworkMode = "none"
    source: str = ""
    forwards: tuple[PortForwardRequest, ...] = ()
    ssh: bool = True


class WindowsRequest(RequestBody, frozen=True, kw_only=True):
    """Unattended Windows setup (docs/windows.md); the password is sealed at the gateway."""

    computer_name: Annotated[str, msgspec.Meta(
        max_length=15, description="NetBIOS name, 1-15 characters; default: the VM name")] = ""
    admin_user: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,19}$")] = "admin"
    admin_password: Annotated[str, msgspec.Meta(min_length=1, max_length=127)] | None = None
    timezone: Annotated[str, msgspec.Meta(
        max_length=64, description="Windows time zone id, e.g. 'W. Europe Standard Time'")] = "UTC"
    locale: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}-[A-Za-z]{2,4}$")] = "en-US"
    keyboard: Annotated[str, msgspec.Meta(max_length=64)] = ""
    product_key: Annotated[str, msgspec.Meta(
        pattern=r"^([A-Z0-9]{5}-){4}[A-Z0-9]{5}$")] | None = None
    enable_rdp: bool = True
    enable_winrm: bool = False
    first_logon_commands: Annotated[tuple[Annotated[str, msgspec.Meta(max_length=1024)], ...],
                                    msgspec.Meta(max_length=32)] = ()
    windows_version: Annotated[str, msgspec.Meta(
        pattern=r"^(w10|w11|2k16|2k19|2k22|2k25)$",
        description="virtio-win driver folder to load from")] = "w11"
    secure_boot: Annotated[bool, msgspec.Meta(
        description="UEFI Secure Boot with Microsoft's keys enrolled (OVMF)")] = False


class WindowsSpec(Model, frozen=True, kw_only=True):
    """Windows setup as stored: the password only sealed for the nodes (never in clear)."""

    computer_name: str
    admin_user: str = "admin"
    admin_password_sealed: str = ""
    timezone: str = "UTC"
    locale: str = "en-US"
    keyboard: str = ""
    product_key: str = ""
    enable_rdp: bool = True
    enable_winrm: bool = False
    first_logon_commands: tuple[str, ...] = ()
    windows_version: str = "w11"
    secure_boot: bool = False


class CreateVmRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms``."""

    name: DnsLabel
    description: Annotated[str, msgspec.Meta(
        max_length=1024, description="free text for people (what the VM is for)")] = ""
    image: Annotated[str, msgspec.Meta(
        min_length=1, max_length=4096,
        description="image id or unique name from the library (`lq image list`); a path on "
                    "the node only inside LQ_HOST_IMAGE_DIRS; omitted: a blank disk and no "
                    "cloud-init seed (boot media 'none')")] | None = None
    vcpus: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    memory_mib: Annotated[int, msgspec.Meta(ge=64, le=4 * 1024 * 1024)] = 1024
    disk_gib: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024)] = 10
    cloud_init: CloudInitRequest = CloudInitRequest()
    network: NetworkRequest = NetworkRequest()
    node: str | None = None
    os_type: Annotated[OsType | None, msgspec.Meta(
        description="guest OS family; omitted: from the image's 'os' ('windows...': windows). "
                    "windows: UEFI, TPM 2.0, Hyper-V, >= 2 vCPUs, 4 GiB, 64 GiB "
                    "(docs/windows.md)")] = None
    windows: WindowsRequest | None = None


class VncEndpoint(Model, frozen=True, kw_only=True):
    """Where the node exposes the VM's VNC display (reachable from the gateway)."""

    host: str
    port: int
    # The display asks for VNC authentication (libs/common/vnc_auth.py): the gateway answers it.
    password_protected: bool = False


class GuestInfo(Model, frozen=True, kw_only=True):
    """What the node learned from the guest itself."""

    ready_at: datetime | None = None
    boot_seconds: float | None = None
    ssh_host_keys: tuple[str, ...] = ()  # e.g. "256 SHA256:... root@host (ED25519)"
    addresses: tuple[str, ...] = ()
    cloud_init_error: str = ""


class VmError(Model, frozen=True, kw_only=True):
    """Why a VM is in ``error``: the first cause, and what was found about it later."""

    code: str
    message: str
    hint: str = ""
    # Later findings (e.g. reconcile seeing the files gone): added, never in place of the cause.
    notes: tuple[str, ...] = ()


class VmRecord(Model, frozen=True, kw_only=True):
    """A VM as stored in the ``vms`` KV bucket (key: the VM id) and returned by the API."""

    id: str
    name: str
    description: str = ""
    state: VmState = VmState.PENDING
    node: str = ""
    image: str = ""  # library image id (or an allowed node path); "": a blank disk, no seed
    vcpus: int
    memory_mib: int
    disk_gib: int
    cloud_init: CloudInitSpec = CloudInitSpec()
    network: NetworkSpec = NetworkSpec()
    instance_id: str = ""  # cloud-init's; a new one makes cloud-init run again
    created_at: datetime
    updated_at: datetime
    vnc: VncEndpoint | None = None
    forwards: tuple[PortForward, ...] = ()  # as actually bound on the node
    ssh_command: str = ""
    serial_log: str = ""
    guest: GuestInfo = GuestInfo()
    error: VmError | None = None
    image_progress: float | None = None  # 0..1 while the image downloads (library, then node)
    # False once a failed create left nothing on the node (no domain, no files): the VM then
    # takes no capacity, and ``start`` retries the create.
    holds_resources: bool = True
    os_type: OsType = "linux"
    drivers_image: str = ""  # windows: the library's virtio-win ISO, attached as a CD-ROM
    windows: WindowsSpec | None = None


def public_view(record: VmRecord) -> VmRecord:
    """The record as clients may see it: secrets removed."""
    if record.windows is not None and record.windows.admin_password_sealed:
        record = msgspec.structs.replace(record, windows=msgspec.structs.replace(
            record.windows, admin_password_sealed="<set>"))
    if not record.cloud_init.password_hash:
        return record
    return msgspec.structs.replace(
        record, cloud_init=msgspec.structs.replace(record.cloud_init, password_hash="<set>")
    )
