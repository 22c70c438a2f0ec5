"""Templates and other bases of linked clones (docs/day2.md).

The checks every route that would change a VM asks before it acts: a template is never
started, resized or snapshotted (its disk is the backing file of its linked clones), and it is
deleted only when no linked clone depends on it. A VM that is not a template is the base of
linked clones through its snapshots (each frozen into a base file on its node): such a
snapshot, and the VM, are deleted only when no linked clone made at it is left.
``POST /v1/vms/{vm}/template`` itself lives with the clone routes (``routes_snapshots``).
"""

from __future__ import annotations

from limiquantix.api.kv_view import VmView
from limiquantix.api.snapshot_errors import SnapshotInUse, TemplateInUse, TemplateRefused
from limiquantix.common.vms import VmRecord


def linked_clones(view: VmView, template_id: str,
                  snapshot_id: str | None = None) -> list[VmRecord]:
    """The linked clones of a VM (by name): all of them, or those made at ``snapshot_id``
    (backed by that snapshot's frozen base; "": by a template's disk itself)."""
    return sorted((vm for vm in view.values() if vm.clone_of is not None
                   and vm.clone_of.linked and vm.clone_of.vm_id == template_id
                   and snapshot_id in (None, vm.clone_of.snapshot_id)),
                  key=lambda vm: vm.name)


def _names(clones: list[VmRecord]) -> str:
    return ", ".join(c.name for c in clones[:10]) + (" ..." if len(clones) > 10 else "")


def refuse_snapshot_delete(view: VmView, vm: VmRecord, snapshot_id: str, name: str) -> None:
    """SnapshotInUse when linked clones were made at the snapshot (its base backs them)."""
    clones = linked_clones(view, vm.id, snapshot_id)
    if clones:
        names = _names(clones)
        raise SnapshotInUse(
            f"snapshot {name!r} of VM {vm.name!r} is the base of {len(clones)} linked "
            f"clone(s): {names}",
            hint=f"Delete its linked clones first ({names}), then the snapshot.",
            vm_id=vm.id, snapshot=name, clones=[c.name for c in clones])


def refuse_change(vm: VmRecord, action: str) -> None:
    """TemplateRefused when ``vm`` is a template (``action``: what was asked, for the message)."""
    if vm.template:
        raise TemplateRefused(
            f"VM {vm.name!r} is a template: it cannot be {action}",
            hint=f"Clone it instead: lq vm clone {vm.name} NEW-NAME (linked by default).",
            vm_id=vm.id, action=action)


def refuse_delete(view: VmView, vm: VmRecord) -> None:
    """TemplateInUse when linked clones still depend on template ``vm``; SnapshotInUse when
    linked clones depend on snapshots of a VM that is not a template (their bases live in its
    directory, removed with it)."""
    clones = linked_clones(view, vm.id)
    if clones and not vm.template:
        names = _names(clones)
        raise SnapshotInUse(
            f"VM {vm.name!r} is the base of {len(clones)} linked clone(s) made at its "
            f"snapshots: {names}",
            hint=f"Delete its linked clones first ({names}), then the VM.",
            vm_id=vm.id, clones=[c.name for c in clones])
    if clones:
        names = _names(clones)
        raise TemplateInUse(
            f"template {vm.name!r} is the base of {len(clones)} linked clone(s): {names}",
            hint=f"Delete its linked clones first ({names}), then the template.",
            vm_id=vm.id, clones=[c.name for c in clones])
