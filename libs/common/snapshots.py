"""Request bodies of snapshots, clones and publishing (docs/day2.md); the stored types
(``VmSnapshot``, ``CloneSource``) live on the VM record in :mod:`limiquantix.common.vms`."""

from __future__ import annotations

from typing import Annotated

import msgspec

from limiquantix.common.model import Model, RequestBody
from limiquantix.common.vms import DnsLabel, VmSnapshot

SnapshotName = Annotated[str, msgspec.Meta(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    description="1-63 letters, digits, '_', '.' or '-'; unique among the VM's snapshots")]


class CreateSnapshotRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/snapshots``."""

    name: SnapshotName
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    memory: Annotated[bool, msgspec.Meta(
        description="a running VM's memory and device state too: a revert resumes the guest "
                    "exactly where it was (the guest pauses while its RAM is saved)")] = False


class SnapshotList(Model, frozen=True, kw_only=True):
    """``GET /v1/vms/{vm}/snapshots``: oldest first."""

    items: tuple[VmSnapshot, ...]


class CloneVmRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/clone``."""

    name: DnsLabel
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    snapshot: Annotated[str, msgspec.Meta(
        min_length=1, max_length=128,
        description="name or id of a ready snapshot of the source; omitted: its current "
                    "disk")] | None = None
    linked: Annotated[bool, msgspec.Meta(
        description="true: a qcow2 overlay (instant) over a frozen base: the template's "
                    "disk, or the snapshot's base on the node (a VM that is not a template "
                    "without `snapshot`: a new snapshot clone-NAME is taken first); false: a "
                    "full, flattened copy; omitted: linked for a template, full otherwise"
                    )] | None = None


class PublishVmRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/publish``."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                      description="the new image's name in the library")]
    snapshot: Annotated[str, msgspec.Meta(
        min_length=1, max_length=128,
        description="name or id of a ready snapshot to publish; omitted: the current "
                    "disk")] | None = None
    os: str = ""
    version: str = ""
    generalize: Annotated[bool, msgspec.Meta(
        description="clean the guest's identity through its agent first (cloud-init clean "
                    "--logs --seed --machine-id, SSH host keys removed), then shut the VM "
                    "down; omitted: yes when the VM runs with its guest agent connected")
                          ] | None = None
