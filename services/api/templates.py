"""Templates (docs/day2.md): a stopped VM frozen as the base of linked clones.

The checks every route that would change a VM asks before it acts: a template is never
started, resized or snapshotted (its disk is the backing file of its linked clones), and it is
deleted only when no linked clone depends on it. ``POST /v1/vms/{vm}/template`` itself lives
with the clone routes (``routes_snapshots``).
"""

from __future__ import annotations

from limiquantix.api.kv_view import VmView
from limiquantix.api.snapshot_errors import TemplateInUse, TemplateRefused
from limiquantix.common.vms import VmRecord


def linked_clones(view: VmView, template_id: str) -> list[VmRecord]:
    """The VMs whose disk has the template's disk as backing file (by name)."""
    return sorted((vm for vm in view.values() if vm.clone_of is not None
                   and vm.clone_of.linked and vm.clone_of.vm_id == template_id),
                  key=lambda vm: vm.name)


def refuse_change(vm: VmRecord, action: str) -> None:
    """TemplateRefused when ``vm`` is a template (``action``: what was asked, for the message)."""
    if vm.template:
        raise TemplateRefused(
            f"VM {vm.name!r} is a template: it cannot be {action}",
            hint=f"Clone it instead: lq vm clone {vm.name} NEW-NAME (linked by default).",
            vm_id=vm.id, action=action)


def refuse_delete(view: VmView, vm: VmRecord) -> None:
    """TemplateInUse when linked clones still depend on template ``vm``."""
    if not vm.template:
        return
    clones = linked_clones(view, vm.id)
    if clones:
        names = ", ".join(c.name for c in clones[:10]) + (" ..." if len(clones) > 10 else "")
        raise TemplateInUse(
            f"template {vm.name!r} is the base of {len(clones)} linked clone(s): {names}",
            hint=f"Delete its linked clones first ({names}), then the template.",
            vm_id=vm.id, clones=[c.name for c in clones])
