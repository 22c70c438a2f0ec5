"""Events every service publishes on the JetStream ``events`` stream (see subjects.py).

A tagged union; the stream sequence is the event's id (SSE ``id:``), so clients resume exactly.
Events never carry secrets (no passwords, hashes or user-data).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from limiquantix.common.model import Model, utcnow
from limiquantix.common.vms import GuestInfo, VmDisk, VmError, VmMedia, VmSnapshot, VmState


class _Event(Model, frozen=True, kw_only=True, tag_field="type"):
    time: datetime = msgspec.field(default_factory=utcnow)


class _VmEvent(_Event, frozen=True, kw_only=True):
    """What every event about one VM carries first: its id, and its name and node when known
    (so a reader of the stream needs no lookup); published under ``subjects.vm_event``."""

    vm_id: str
    name: str = ""
    node: str = ""


class VmStateChanged(_VmEvent, frozen=True, kw_only=True, tag="vm.state_changed"):
    """A VM moved from ``previous`` to ``state``."""

    state: VmState
    previous: VmState | None = None
    reason: str = ""
    error: VmError | None = None


class VmGuestReady(_VmEvent, frozen=True, kw_only=True, tag="vm.guest_ready"):
    """cloud-init finished in the guest; ``guest.boot_seconds`` is start → ready."""

    guest: GuestInfo


class VmActionFailed(_VmEvent, frozen=True, kw_only=True, tag="vm.action_failed"):
    """A command could not be carried out; the VM's state says where it was left."""

    action: str
    error: VmError


class VmDeleted(_VmEvent, frozen=True, kw_only=True, tag="vm.deleted"):
    """The VM was deleted: its record is gone."""


class VmSnapshotChanged(_VmEvent, frozen=True, kw_only=True, tag="vm.snapshot"):
    """A snapshot was created, reverted to, deleted or failed (``action``); ``snapshot`` is
    its entry as now recorded (as it was, for ``deleted``)."""

    action: str  # created | reverted | deleted | failed
    snapshot: VmSnapshot


class VmCloned(_VmEvent, frozen=True, kw_only=True, tag="vm.cloned"):
    """The disk of clone ``vm_id`` was made from ``source_vm_id`` (its create goes on)."""

    source_vm_id: str
    snapshot_id: str = ""
    linked: bool = True
    seconds: float = 0.0
    disk_bytes: int = 0
    # A linked clone at a snapshot: whether this clone froze the snapshot into its base
    # (the first one; later clones reuse it) and the base's size then.
    base_made: bool = False
    base_bytes: int = 0


class VmTemplated(_VmEvent, frozen=True, kw_only=True, tag="vm.templated"):
    """VM ``vm_id`` became a template: frozen, the base of linked clones."""


class VmPublishProgress(_VmEvent, frozen=True, kw_only=True, tag="vm.publish_progress"):
    """Publishing VM ``vm_id`` as image ``image_id``: ``phase`` is snapshot, convert, clean,
    upload, done or failed; ``fraction`` 0..1 of the phase when known."""

    image_id: str
    phase: str
    fraction: float | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    message: str = ""


class VmResized(_VmEvent, frozen=True, kw_only=True, tag="vm.resized"):
    """The VM's domain now has these figures; ``live``: the running domain got them at once
    (hot-plug, block resize), else they apply at its next start."""

    vcpus: int
    memory_mib: int
    disk_gib: int
    live: bool = False
    # The guest's root partition and file system grew at once (through its agent), not at
    # its next boot.
    guest_grown: bool = False


class VmDiskAttached(_VmEvent, frozen=True, kw_only=True, tag="vm.disk_attached"):
    """An extra disk was made and attached (``live``: to the running domain too)."""

    disk: VmDisk
    live: bool = False


class VmDiskDetached(_VmEvent, frozen=True, kw_only=True, tag="vm.disk_detached"):
    """An extra disk was detached and its file deleted."""

    disk_id: str
    disk_name: str = ""


class VmMediaInserted(_VmEvent, frozen=True, kw_only=True, tag="vm.media_inserted"):
    """An ISO is in the VM's media drive (``live``: the running domain sees it now)."""

    media: VmMedia
    live: bool = False


class VmMediaEjected(_VmEvent, frozen=True, kw_only=True, tag="vm.media_ejected"):
    """The VM's media drive is empty again."""

    image: str = ""


class NodeStateChanged(_Event, frozen=True, kw_only=True, tag="node.state_changed"):
    """A node agent came online or is going away cleanly."""

    node: str
    online: bool


class ImageStateChanged(_Event, frozen=True, kw_only=True, tag="image.state_changed"):
    image_id: str
    name: str = ""
    state: str
    previous: str = ""
    reason: str = ""


class ImageProgress(_Event, frozen=True, kw_only=True, tag="image.progress"):
    """Bytes of an import, upload or node cache download done so far."""

    image_id: str
    node: str = ""  # set when a node agent fills its cache
    bytes_done: int
    bytes_total: int | None = None
    bytes_per_second: float = 0.0


class ConsoleSessionStarted(_Event, frozen=True, kw_only=True, tag="console.session_started"):
    session_id: str
    vm_id: str
    user: str = ""
    remote: str = ""


class ConsoleSessionEnded(_Event, frozen=True, kw_only=True, tag="console.session_ended"):
    session_id: str
    vm_id: str
    user: str = ""
    remote: str = ""
    started_at: datetime
    bytes_to_vnc: int = 0
    bytes_to_client: int = 0
    close_code: int = 1000
    reason: str = ""


class VmPhaseReached(_VmEvent, frozen=True, kw_only=True, tag="vm.phase"):
    """A boot reached a readiness phase (docs/guest-agent.md); ``elapsed_s`` from ``booting``."""

    phase: str = ""
    at: datetime = msgspec.field(default_factory=utcnow)
    elapsed_s: float | None = None


class VmAddressesChanged(_VmEvent, frozen=True, kw_only=True, tag="vm.addresses_changed"):
    """The guest's IP addresses changed (e.g. a new DHCP lease after a reboot)."""

    addresses: tuple[str, ...] = ()
    previous: tuple[str, ...] = ()


class VmAgentChanged(_VmEvent, frozen=True, kw_only=True, tag="vm.agent_changed"):
    """The VM's QEMU guest agent connected or disconnected."""

    connected: bool = False
    version: str = ""


class VmGuestAccess(_VmEvent, frozen=True, kw_only=True, tag="vm.guest_access"):
    """Audit: someone acted inside a guest through its agent. Never the contents: the program
    (not its arguments), the file's path and size, the user whose password was set."""

    user: str = ""  # the API token's name
    action: str = ""  # exec | file_write | file_read | password
    target: str = ""  # program, path or guest user
    bytes: int = 0  # file size; exec: stdout + stderr
    exit_code: int | None = None
    error: str = ""  # the error code when it failed


Event = (
    VmStateChanged | VmGuestReady | VmActionFailed | VmDeleted | VmSnapshotChanged | VmCloned
    | VmPublishProgress | VmTemplated | NodeStateChanged
    | ImageStateChanged | ImageProgress | ConsoleSessionStarted | ConsoleSessionEnded
    | VmPhaseReached | VmAddressesChanged | VmAgentChanged | VmGuestAccess
    | VmResized | VmDiskAttached | VmDiskDetached | VmMediaInserted | VmMediaEjected
)

event_encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(Event)


def event_subject(event: Event) -> str:
    """The subject an event is published on (its kind is the part of its tag after the dot)."""
    from limiquantix.common import subjects

    kind = type(event).__struct_config__.tag.split(".", 1)[1]  # type: ignore[union-attr]
    match event:
        case _VmEvent():
            return subjects.vm_event(event.vm_id, kind)
        case NodeStateChanged():
            return subjects.node_event(event.node, kind)
        case ImageStateChanged() | ImageProgress():
            return subjects.image_event(event.image_id, kind)
        case ConsoleSessionStarted() | ConsoleSessionEnded():
            return subjects.console_event(event.vm_id, kind)
