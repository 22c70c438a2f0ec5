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

# Labels: small key/value tags for finding VMs (GET /v1/vms?label=team=web), like Kubernetes'.
LabelKey = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$", max_length=63,
                      description="lower-case letters, digits, '.', '_', '/', '-'")
]
LabelValue = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{0,63}$", max_length=63)]
Labels = Annotated[dict[LabelKey, LabelValue], msgspec.Meta(
    max_length=64, description="tags to find the VM by (GET /v1/vms?label=key=value)")]


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
    guest_agent: bool = True  # install/enable qemu-guest-agent when missing (guest-agent.md)


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
    guest_agent: Annotated[bool, msgspec.Meta(
        description="install and enable qemu-guest-agent at first boot when the image lacks it "
                    "(best effort: needs the guest's package mirror); false: leave the image "
                    "as it is")] = True


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


class DomainJoinRequest(RequestBody, frozen=True, kw_only=True):
    """Join an Active Directory domain at the specialize pass (docs/windows.md)."""

    domain: Annotated[str, msgspec.Meta(
        pattern=r"^(?=.{1,255}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
        description="the domain's DNS name, e.g. corp.example.com")]
    user: Annotated[str, msgspec.Meta(
        min_length=1, max_length=104,
        description="an account allowed to join computers: 'user', 'DOMAIN\\user' or "
                    "'user@domain'")]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=127)]
    ou: Annotated[str, msgspec.Meta(
        max_length=1024, pattern=r"^$|^(OU|CN)=",
        description="the OU for the computer account, e.g. OU=Servers,DC=corp,DC=example,DC=com;"
                    " default: the domain's Computers container")] = ""


class DomainJoinSpec(Model, frozen=True, kw_only=True):
    """A domain join as stored: the password only sealed for the nodes."""

    domain: str
    user: str
    password_sealed: str
    ou: str = ""


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
    domain_join: DomainJoinRequest | None = None


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
    domain_join: DomainJoinSpec | None = None


class CreateVmRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms``."""

    name: DnsLabel
    description: Annotated[str, msgspec.Meta(
        max_length=1024, description="free text for people (what the VM is for)")] = ""
    labels: Labels = {}
    image: Annotated[str, msgspec.Meta(
        min_length=1, max_length=4096,
        description="image id or unique name from the library (`lq image list`); a path on "
                    "the node only inside LQ_HOST_IMAGE_DIRS; omitted: a blank disk and no "
                    "cloud-init seed (boot media 'none')")] | None = None
    vcpus: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    memory_mib: Annotated[int, msgspec.Meta(ge=64, le=4 * 1024 * 1024)] = 1024
    disk_gib: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024)] = 10
    max_vcpus: Annotated[int, msgspec.Meta(
        ge=1, le=256, description="vCPUs the running VM can be hot-plugged up to "
                                  "(PATCH /v1/vms/{vm}); default: vcpus")] | None = None
    max_memory_mib: Annotated[int, msgspec.Meta(
        ge=64, le=4 * 1024 * 1024,
        description="memory the running VM can be hot-plugged up to; default: memory_mib")
    ] | None = None
    cloud_init: CloudInitRequest = CloudInitRequest()
    network: NetworkRequest = NetworkRequest()
    node: str | None = None
    os_type: Annotated[OsType | None, msgspec.Meta(
        description="guest OS family; omitted: from the image's 'os' ('windows...': windows). "
                    "windows: UEFI, TPM 2.0, Hyper-V, >= 2 vCPUs, 4 GiB, 64 GiB "
                    "(docs/windows.md)")] = None
    windows: WindowsRequest | None = None


# Day-2 devices (docs/day2.md). Extra disks sit on a virtio-scsi controller: a SCSI disk is
# attached and detached live without the guest's cooperation (a virtio-blk PCI unplug waits for
# the guest's ACPI handshake and needs a free PCIe port). The targets are fixed names, each with
# its own SCSI unit; the media CD-ROM is SATA ``sde`` (after the seed, install ISO, drivers and
# SATA system disk: sda..sdd).
EXTRA_DISK_TARGETS = tuple(f"sd{letter}" for letter in "fghijklmnopqrstu")
MEDIA_TARGET = "sde"
DiskState = Literal["attaching", "attached", "detaching"]
MediaState = Literal["inserting", "inserted", "ejecting"]


class VmDisk(Model, frozen=True, kw_only=True):
    """An extra disk of a VM (the system disk is ``disk_gib``): a qcow2 file of its own."""

    id: str
    name: str
    size_gib: int
    target: str  # the libvirt target, e.g. "sdf" (not the guest's device name)
    bus: str = "scsi"
    path: str = ""  # its file on the node, set once made
    state: DiskState = "attaching"


class VmMedia(Model, frozen=True, kw_only=True):
    """The ISO in the VM's media CD-ROM drive (never the seed drive)."""

    image: str  # library image id
    name: str = ""  # the image's name when inserted
    target: str = MEDIA_TARGET
    path: str = ""  # the node's cached copy, set once inserted
    state: MediaState = "inserting"


class ResizeVmRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``PATCH /v1/vms/{vm}``: only the fields given change."""

    vcpus: Annotated[int, msgspec.Meta(
        ge=1, le=256, description="running VM: up to max_vcpus, never fewer (stop it first)")
    ] | None = None
    memory_mib: Annotated[int, msgspec.Meta(
        ge=64, le=4 * 1024 * 1024,
        description="running VM: up to max_memory_mib, never less (stop it first)")] | None = None
    disk_gib: Annotated[int, msgspec.Meta(
        ge=1, le=64 * 1024, description="the system disk; grows only (live too), never shrinks")
    ] | None = None
    max_vcpus: Annotated[int, msgspec.Meta(
        ge=1, le=256, description="hot-plug ceiling; stopped VMs only")] | None = None
    max_memory_mib: Annotated[int, msgspec.Meta(
        ge=64, le=4 * 1024 * 1024, description="hot-plug ceiling; stopped VMs only")
    ] | None = None


class AddDiskRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/disks``: a new empty qcow2 disk."""

    name: DnsLabel
    size_gib: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024)]


class InsertMediaRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/media``."""

    image: Annotated[str, msgspec.Meta(
        min_length=1, max_length=255,
        description="an ISO image's id or unique name in the library")]


class VncEndpoint(Model, frozen=True, kw_only=True):
    """Where the node exposes the VM's VNC display (reachable from the gateway)."""

    host: str
    port: int
    # The display asks for VNC authentication (libs/common/vnc_auth.py): the gateway answers it.
    password_protected: bool = False


# Readiness phases of a boot, in order (docs/guest-agent.md); ``guest.phases`` maps each reached
# one to its time. cloud_init_done and cloud_init_failed exclude each other.
GUEST_PHASES = ("defined", "booting", "network", "cloud_init_done", "cloud_init_failed", "ssh",
                "ready")
GuestPhase = Literal["defined", "booting", "network", "cloud_init_done", "cloud_init_failed",
                     "ssh", "ready"]
AddressSource = Literal["agent", "serial"]


class GuestAgentInfo(Model, frozen=True, kw_only=True):
    """The QEMU guest agent as libvirt sees it (``connected``) and as it describes itself."""

    connected: bool = False
    version: str = ""
    commands: tuple[str, ...] = ()  # the enabled guest-* commands it offers


class GuestOsInfo(Model, frozen=True, kw_only=True):
    """The guest's OS as its agent reports it (guest-get-osinfo, guest-get-host-name)."""

    name: str = ""  # e.g. "Debian GNU/Linux"
    version: str = ""  # e.g. "12 (bookworm)"
    kernel: str = ""  # kernel release, e.g. "6.1.0-27-amd64"
    hostname: str = ""


class GuestFilesystem(Model, frozen=True, kw_only=True):
    """A mounted file system inside the guest (guest-get-fsinfo)."""

    mount: str
    type: str = ""
    used_bytes: int | None = None
    total_bytes: int | None = None


class GuestAddress(Model, frozen=True, kw_only=True):
    """One IP address of the guest and who reported it."""

    address: str
    prefix: int | None = None
    interface: str = ""
    source: AddressSource = "serial"


class GuestInfo(Model, frozen=True, kw_only=True):
    """What the node learned from the guest itself (serial console log and guest agent)."""

    ready_at: datetime | None = None
    boot_seconds: float | None = None
    ssh_host_keys: tuple[str, ...] = ()  # e.g. "256 SHA256:... root@host (ED25519)"
    addresses: tuple[str, ...] = ()  # every source's global addresses (details: ip_addresses)
    cloud_init_error: str = ""
    ip_addresses: tuple[GuestAddress, ...] = ()
    agent: GuestAgentInfo = GuestAgentInfo()
    os: GuestOsInfo | None = None
    users: tuple[str, ...] = ()  # logged-in users (guest-get-users)
    filesystems: tuple[GuestFilesystem, ...] = ()
    info_at: datetime | None = None  # when the agent's information was last read
    phase: GuestPhase | None = None  # the latest phase reached in this boot
    phases: dict[str, datetime] = {}  # phase -> when it was reached (this boot)


class VmError(Model, frozen=True, kw_only=True):
    """Why a VM is in ``error``: the first cause, and what was found about it later."""

    code: str
    message: str
    hint: str = ""
    # Later findings (e.g. reconcile seeing the files gone): added, never in place of the cause.
    notes: tuple[str, ...] = ()


class SnapshotState(enum.StrEnum):
    """Where a snapshot is: the API records ``creating``/``reverting``/``deleting``, the node
    the outcome (docs/day2.md)."""

    CREATING = "creating"
    READY = "ready"
    REVERTING = "reverting"
    DELETING = "deleting"
    ERROR = "error"


class VmSnapshot(Model, frozen=True, kw_only=True):
    """One snapshot of a VM: an internal qcow2 snapshot of its disk (and memory when
    ``memory``), named by ``id`` in libvirt; listed on the VM record so it survives the node
    agent and libvirt forgetting it (docs/day2.md)."""

    id: str
    name: str
    description: str = ""
    state: SnapshotState = SnapshotState.CREATING
    created_at: datetime
    memory: bool = False  # the guest's RAM and devices too: a revert resumes where it was
    quiesced: bool = False  # the guest's file systems were frozen (guest agent) while taken
    vm_state: str = ""  # "running" or "stopped": what the VM was when it was taken
    size_bytes: int | None = None  # saved memory state; disk clusters are shared with the VM
    error: str = ""


class CloneSource(Model, frozen=True, kw_only=True):
    """Where a cloned VM's disk comes from (its create copies it instead of an overlay)."""

    vm_id: str
    snapshot_id: str = ""  # "": the source's current disk (through a temporary snapshot)
    # True: the clone's disk is a qcow2 overlay whose backing file is the source's disk (the
    # source is a template, frozen); False: a full, flattened copy.
    linked: bool = True


class VmRecord(Model, frozen=True, kw_only=True):
    """A VM as stored in the ``vms`` KV bucket (key: the VM id) and returned by the API."""

    id: str
    name: str
    description: str = ""
    labels: dict[str, str] = {}
    state: VmState = VmState.PENDING
    node: str = ""
    image: str = ""  # library image id (or an allowed node path); "": a blank disk, no seed
    vcpus: int
    memory_mib: int
    disk_gib: int
    # Hot-plug ceilings of a running VM (0 on records older than them: vcpus / memory_mib).
    max_vcpus: int = 0
    max_memory_mib: int = 0
    disks: tuple[VmDisk, ...] = ()  # extra disks
    media: VmMedia | None = None  # the ISO in the media CD-ROM drive
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
    # How the last stop ended: "agent" (guest-shutdown), "acpi", "power_off" (the timeout
    # passed, or force), "" (never stopped, or it was already off).
    stopped_by: str = ""
    snapshots: tuple[VmSnapshot, ...] = ()  # oldest first (docs/day2.md)
    clone_of: CloneSource | None = None  # set on a clone: its create copies that disk
    # A template is frozen (docs/day2.md): never started or resized again, its disk the base
    # of linked clones; deleted only when no linked clone depends on it.
    template: bool = False

    @property
    def takes_capacity(self) -> bool:
        """Does this VM take vCPUs and memory on its node (placement, reservations, the node's
        heartbeat)? Not once a failed create left nothing, nor as a template: a template never
        runs again, only its disk stays (as in Proxmox)."""
        return self.holds_resources and not self.template


def public_view(record: VmRecord) -> VmRecord:
    """The record as clients may see it: secrets removed."""
    win = record.windows
    if win is not None and (win.admin_password_sealed or win.domain_join is not None):
        join = win.domain_join
        record = msgspec.structs.replace(record, windows=msgspec.structs.replace(
            win, admin_password_sealed="<set>" if win.admin_password_sealed else "",
            domain_join=join and msgspec.structs.replace(join, password_sealed="<set>")))
    if not record.cloud_init.password_hash:
        return record
    return msgspec.structs.replace(
        record, cloud_init=msgspec.structs.replace(record.cloud_init, password_hash="<set>")
    )
