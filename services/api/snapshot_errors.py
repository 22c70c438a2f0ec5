"""Problems of snapshots, clones and publishing (``code`` stable, ``hint`` for the client)."""

from __future__ import annotations

from limiquantix.common.errors import Conflict, InvalidRequest, NotFound


class SnapshotNotFound(NotFound):
    """The VM has no snapshot with this name or id."""

    code = "snapshot_not_found"
    default_hint = "`lq vm snapshot list VM` shows the VM's snapshots."


class SnapshotNameTaken(Conflict):
    """The VM has a snapshot with this name already."""

    code = "snapshot_name_taken"
    default_hint = "Choose another name, or delete the existing snapshot first."


class SnapshotNotReady(Conflict):
    """The snapshot is being created, reverted or deleted, or failed."""

    code = "snapshot_not_ready"
    default_hint = "Wait until the snapshot is ready (`lq vm snapshot list VM`)."


class SnapshotRefused(Conflict):
    """The VM's state (or firmware) does not allow this snapshot operation now."""

    code = "snapshot_refused"
    default_hint = "Stop the VM (or start it, for a memory snapshot), then try again."


class CloneRefused(InvalidRequest):
    """This VM cannot be cloned or published (e.g. a Windows guest needs sysprep)."""

    code = "clone_refused"
    default_hint = "Generalize the guest (sysprep) and upload its disk as an image instead."


class TemplateRefused(Conflict):
    """A template is frozen: it is not started, resized, snapshotted or changed."""

    code = "template_refused"
    default_hint = "Clone the template (`lq vm clone TEMPLATE NEW`) and use the clone."


class TemplateInUse(Conflict):
    """Linked clones use the template's disk as their backing file."""

    code = "template_in_use"
    default_hint = "Delete its linked clones first (the problem lists them)."


class SnapshotInUse(Conflict):
    """Linked clones made at the snapshot use its frozen base as their backing file."""

    code = "snapshot_in_use"
    default_hint = "Delete the linked clones made at it first (the problem lists them)."


class GeneralizeUnavailable(Conflict):
    """Generalizing runs commands in the guest: the VM must run with its agent connected."""

    code = "generalize_unavailable"
    default_hint = ("Start the VM and wait for its guest agent (`lq vm show`), or publish "
                    "without generalizing (--no-generalize).")
