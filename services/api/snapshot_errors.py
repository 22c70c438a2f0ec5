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
