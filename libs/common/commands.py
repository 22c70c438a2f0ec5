"""Commands the gateway sends to node agents over the JetStream commands stream.

A tagged union decoded once by the node agent and dispatched with ``match``. Every command names
its VM; ``command_id`` doubles as the JetStream ``Nats-Msg-Id``, so a retried publish is
deduplicated.

Ids are typed (:mod:`limiquantix.common.ids`): the node builds paths and keys from them, so a
command whose ids have the wrong shape fails to decode and is never handled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from limiquantix.common.ids import UUID_PATTERN, CommandId, ImageId, VmId
from limiquantix.common.model import Model, utcnow
from limiquantix.common.vms import CloudInitSpec


class _Command(Model, frozen=True, kw_only=True, tag_field="type"):
    command_id: CommandId
    vm_id: VmId
    issued_at: datetime = msgspec.field(default_factory=utcnow)


class CreateVm(_Command, frozen=True, kw_only=True, tag="vm.create"):
    """Create the disk, seed and domain of VM ``vm_id`` and start it.

    The command carries no copy of the record: the node reads it from the ``lq_vms`` bucket (the
    record is the create's outbox and the one source of truth), so a redelivered or re-sent
    command always acts on the current record.
    """


class StartVm(_Command, frozen=True, kw_only=True, tag="vm.start"):
    pass


class StopVm(_Command, frozen=True, kw_only=True, tag="vm.stop"):
    """ACPI shutdown; after ``timeout_s`` the node powers the VM off (as Nova does)."""

    force: bool = False
    timeout_s: float = 60.0


class RebootVm(_Command, frozen=True, kw_only=True, tag="vm.reboot"):
    pass


class PauseVm(_Command, frozen=True, kw_only=True, tag="vm.pause"):
    pass


class ResumeVm(_Command, frozen=True, kw_only=True, tag="vm.resume"):
    pass


class DeleteVm(_Command, frozen=True, kw_only=True, tag="vm.delete"):
    """Destroy and undefine the domain and remove every file of the VM.

    ``force``: the gateway removed the record already (the node was gone): the node removes
    the domain and files of ``vm_id`` if it ever comes back, with no record to look up.
    """

    force: bool = False


class UpdateCloudInit(_Command, frozen=True, kw_only=True, tag="vm.update_cloud_init"):
    """Rebuild the seed ISO with a new instance-id: cloud-init runs again at next boot."""

    cloud_init: CloudInitSpec
    instance_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]


class CreateSnapshot(_Command, frozen=True, kw_only=True, tag="vm.snapshot.create"):
    """Take the snapshot ``snapshot_id`` the gateway listed on the record (``creating``).

    Keyed by the snapshot id (its libvirt name): a redelivery finds it made and only records it.
    """

    snapshot_id: VmId


class RevertSnapshot(_Command, frozen=True, kw_only=True, tag="vm.snapshot.revert"):
    """Revert the VM to ``snapshot_id`` (marked ``reverting`` on the record)."""

    snapshot_id: VmId


class DeleteSnapshot(_Command, frozen=True, kw_only=True, tag="vm.snapshot.delete"):
    """Delete ``snapshot_id`` from the disk, libvirt and the record."""

    snapshot_id: VmId


class PublishVm(_Command, frozen=True, kw_only=True, tag="vm.publish"):
    """Make image ``image_id`` (an upload record the gateway created) from the VM's disk:
    flattened, compressed, uploaded with ``upload_token`` (a PUT token for that image only)."""

    image_id: ImageId
    upload_token: Annotated[str, msgspec.Meta(max_length=4096)]
    snapshot_id: VmId | None = None  # None: the current disk (a running VM's through a
    # temporary snapshot)
    # Clean the guest's identity first through its agent (cloud-init clean, machine-id, SSH
    # host keys), then shut it down and convert the stopped disk.
    generalize: bool = False


DiskId = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN, description="disk id: a UUID")]


class ResizeVm(_Command, frozen=True, kw_only=True, tag="vm.resize"):
    """Make the domain match the record's vcpus, memory_mib and disk_gib (the gateway wrote
    them): its definition always, a running domain too (hot-plug, block resize)."""


class AttachDisk(_Command, frozen=True, kw_only=True, tag="vm.disk_attach"):
    """Make the record's extra disk ``disk_id`` (its file once) and attach it."""

    disk_id: DiskId


class DetachDisk(_Command, frozen=True, kw_only=True, tag="vm.disk_detach"):
    """Detach the extra disk ``disk_id``, delete its file, drop it from the record."""

    disk_id: DiskId


class InsertMedia(_Command, frozen=True, kw_only=True, tag="vm.media_insert"):
    """Put the record's ``media`` ISO (fetched into the node's cache) in the media drive."""


class EjectMedia(_Command, frozen=True, kw_only=True, tag="vm.media_eject"):
    """Empty the media drive and clear the record's ``media``."""


# Day-2 device commands (docs/day2.md): each converges the domain to the record.
DeviceCommand = ResizeVm | AttachDisk | DetachDisk | InsertMedia | EjectMedia

Command = (
    CreateVm | StartVm | StopVm | RebootVm | PauseVm | ResumeVm | DeleteVm | UpdateCloudInit
    | DeviceCommand
    | CreateSnapshot | RevertSnapshot | DeleteSnapshot | PublishVm
)

command_encoder = msgspec.json.Encoder()
command_decoder = msgspec.json.Decoder(Command)
