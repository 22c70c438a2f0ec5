"""``vm.delete``: power off, undefine (with NVRAM), remove every file, drop the record.

The VM is looked up first: a delete acts only on a VM the cluster knows and placed on this
node, so a forged or misrouted command cannot make the node remove anything else. Its files
are found with ``VmFiles.of``, which refuses an id that would leave ``images/``.
"""

from __future__ import annotations

import asyncio

import structlog

from limiquantix.common.commands import DeleteVm
from limiquantix.common.events import VmDeleted
from limiquantix.node_agent.context import AgentContext

log = structlog.get_logger()


async def delete_vm(ctx: AgentContext, command: DeleteVm) -> None:
    """Remove the VM from this node and from the cluster (safe to repeat)."""
    vm_id = command.vm_id
    record = await ctx.store.find(vm_id)
    if record is None and command.force:  # removed by the gateway while this node was away
        await _remove_leftovers(ctx, vm_id)
        return
    if record is None:  # deleted already (a repeat), or never existed: nothing of ours to touch
        log.info("delete of a VM already gone", vm_id=vm_id)
        return
    if record.node and record.node != ctx.node_id:
        log.warning("delete of a VM placed on another node ignored", vm_id=vm_id,
                    placed_on=record.node)
        return
    files = ctx.files(vm_id)
    ctx.guests.cancel(vm_id)
    dom_uuid = ctx.domain_uuid(vm_id)
    await ctx.host.destroy(dom_uuid)
    await ctx.host.undefine(dom_uuid)
    await asyncio.to_thread(files.remove)
    await ctx.store.delete(record)
    ctx.recorder.forget(vm_id)
    await ctx.recorder.publish(VmDeleted(vm_id=vm_id, name=record.name, node=ctx.node_id))
    log.info("vm deleted", vm_id=vm_id, name=record.name)


async def _remove_leftovers(ctx: AgentContext, vm_id: str) -> None:
    """The domain (its UUID is the VM id) and files of a VM force-deleted while we were away.

    Only the gateway may publish on this node's command subject, and ``vm_id`` is a UUID
    checked at decode, whose files are resolved inside ``images/``: nothing else is touched.
    """
    ctx.guests.cancel(vm_id)
    dom_uuid = ctx.domain_uuid(vm_id)
    await ctx.host.destroy(dom_uuid)
    await ctx.host.undefine(dom_uuid)
    await asyncio.to_thread(ctx.files(vm_id).remove)
    ctx.recorder.forget(vm_id)
    log.info("leftovers of a force-deleted VM removed", vm_id=vm_id)
