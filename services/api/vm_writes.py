"""The two steps every day-2 route takes on a VM record (snapshots, clones, templates, resize,
disks, media): check the VM's state allows the change, and write it with compare-and-set."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from limiquantix.api import app_keys
from limiquantix.api.errors import IllegalTransition, VmNotFound
from limiquantix.common.errors import NotFound
from limiquantix.common.vms import VmRecord, VmState

# Where a VM may be snapshotted, reverted, cloned, resized, or get disks and media.
DAY2_STATES = frozenset({VmState.STOPPED, VmState.RUNNING, VmState.READY})


def require_day2_state(vm: VmRecord, action: str) -> None:
    """IllegalTransition unless the VM is running, ready or stopped (``action`` as in
    "cannot ``action`` VM web-1")."""
    if vm.state not in DAY2_STATES:
        raise IllegalTransition(
            f"cannot {action} VM {vm.name!r}: it is {vm.state}",
            hint="Wait until the VM is running or stopped, then try again.",
            vm_id=vm.id, state=vm.state, action=action)


async def write_record(app: web.Application, vm: VmRecord,
                       change: Callable[[VmRecord], VmRecord | None]) -> VmRecord:
    """Apply ``change`` to the current record (compare-and-set: computed again on a newer
    one) and show it in the gateway's view at once. The record gone is VmNotFound; a
    not-found raised by ``change`` itself (a snapshot, a disk) passes through."""
    try:
        updated = await app[app_keys.VM_STORE].update(vm.id, change)
    except NotFound as exc:
        if type(exc) is not NotFound:
            raise
        raise VmNotFound(f"VM {vm.id!r} no longer exists", vm=vm.id) from None
    result = updated or vm
    app[app_keys.VM_VIEW].put_unrevisioned(result)
    return result
