"""``/v1/nodes``: each node's capacity, allocations, VMs, last heartbeat and liveness.

A node is ``online`` while its heartbeat entry is live (younger than the ``nodes`` bucket TTL).
A node missing from the bucket (or expired) but named by VM records is listed ``offline``, so
VMs never point at a node the API does not show.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from limiquantix.api import allocation_store, app_keys, paging, placement
from limiquantix.api.errors import NodeNotFound
from limiquantix.api.http_json import json_response
from limiquantix.api.openapi import OpenApiPart, Operation, Param
from limiquantix.api.schemas import NodeInfo, NodeList
from limiquantix.common.nodes import NodeStatus


def _index(app: web.Application) -> tuple[dict[str, NodeStatus], dict[str, list[str]]]:
    """The live nodes by id, and the VM ids each node id is named by."""
    live = {status.id: status for status in app[app_keys.NODE_VIEW].live()}
    vm_ids: dict[str, list[str]] = {}
    for vm in app[app_keys.VM_VIEW].values():
        vm_ids.setdefault(vm.node, []).append(vm.id)
    vm_ids.pop("", None)
    return live, vm_ids


def _info(app: web.Application, node_id: str, live: dict[str, NodeStatus],
          vm_ids: dict[str, list[str]]) -> NodeInfo:
    status = live.get(node_id)
    if status is None:
        return _offline(node_id, app[app_keys.NODE_VIEW].last_seen(node_id), vm_ids[node_id])
    load = placement.loads([status], app[app_keys.VM_VIEW].allocations())[node_id]
    return _online(status, load, vm_ids.get(node_id, []))


def node_infos(app: web.Application, *, after: str | None = None,
               limit: int | None = None) -> tuple[list[NodeInfo], bool]:
    """Every online node, then every offline node still referenced by a VM, sorted by id:
    those after ``after``, at most ``limit``; and whether more follow. Only the page's nodes
    are built (a fleet of 1,000 nodes answers a page of 100 without building 1,000)."""
    live, vm_ids = _index(app)
    ids = sorted(set(live) | set(vm_ids))
    start = 0 if after is None else bisect.bisect_right(ids, after)
    end = len(ids) if limit is None else start + limit
    return [_info(app, node_id, live, vm_ids) for node_id in ids[start:end]], end < len(ids)


def _online(status: NodeStatus, load: placement.NodeLoad, vm_ids: list[str]) -> NodeInfo:
    return NodeInfo(
        id=status.id, status="online", hostname=status.hostname, version=status.version,
        libvirt_uri=status.libvirt_uri, virt_type=status.virt_type, vcpus=status.vcpus,
        memory_mib=status.memory_mib, cpu_allocation_ratio=status.cpu_allocation_ratio,
        memory_allocation_ratio=status.memory_allocation_ratio,
        vcpus_capacity=status.capacity_vcpus, memory_mib_capacity=status.capacity_memory_mib,
        warnings=status.warnings, disk_free_gib=status.disk_free_gib,
        allocated_vcpus=load.vcpus, allocated_memory_mib=load.memory_mib,
        free_vcpus=load.free_vcpus, free_memory_mib=load.free_memory_mib,
        vm_count=len(vm_ids), vm_ids=tuple(sorted(vm_ids)),
        last_heartbeat=status.heartbeat_at, started_at=status.started_at,
    )


def _offline(node_id: str, last: NodeStatus | None, vm_ids: list[str]) -> NodeInfo:
    if last is None:
        return NodeInfo(id=node_id, status="offline", vm_count=len(vm_ids),
                        vm_ids=tuple(sorted(vm_ids)))
    return NodeInfo(
        id=node_id, status="offline", hostname=last.hostname, version=last.version,
        libvirt_uri=last.libvirt_uri, virt_type=last.virt_type, vcpus=last.vcpus,
        memory_mib=last.memory_mib, vm_count=len(vm_ids), vm_ids=tuple(sorted(vm_ids)),
        last_heartbeat=last.heartbeat_at, started_at=last.started_at,
    )


async def list_nodes(request: web.Request) -> web.Response:
    """GET /v1/nodes?limit=&cursor= (one page, by id)."""
    limit = paging.limit_of(request.query)
    after = paging.decode_cursor(request.query.get("cursor"))
    infos, more = node_infos(request.app, after=after[0] if after else None, limit=limit)
    next_cursor = paging.encode_cursor((infos[-1].id,)) if more and infos else None
    return json_response(NodeList(items=tuple(infos), next_cursor=next_cursor))


async def get_node(request: web.Request) -> web.Response:
    """GET /v1/nodes/{node}."""
    node_id = request.match_info["node"]
    live, vm_ids = _index(request.app)
    if node_id not in live and node_id not in vm_ids:
        raise NodeNotFound(f"no node {node_id!r} is online or referenced by a VM", node=node_id)
    return json_response(_info(request.app, node_id, live, vm_ids))


OPENAPI = OpenApiPart(tag="nodes", operations=(
    Operation(method="GET", path="/v1/nodes",
              summary="Nodes: online, and offline ones with VMs (a page, by id)",
              response=NodeList, errors=(422,),
              params=(Param(name="limit", schema={"type": "integer", "minimum": 1,
                                                  "maximum": paging.MAX_LIMIT},
                            description=f"at most this many (default {paging.DEFAULT_LIMIT})"),
                      Param(name="cursor", description="the `next_cursor` of the previous "
                                                       "page (opaque)"))),
    Operation(method="GET", path="/v1/nodes/{node}", summary="One node", response=NodeInfo,
              errors=(404,)),
))


async def allocations_ctx(app: web.Application) -> AsyncIterator[None]:
    """The allocation records (bucket, watched view, store), reconciled with the VM records
    once before the first request and then every few seconds; VM record changes release."""
    js = app[app_keys.JETSTREAM]
    kv = await allocation_store.ensure_bucket(js)
    view = allocation_store.AllocationView(js)
    await view.start()
    store = allocation_store.AllocationStore(kv, view)
    app[allocation_store.ALLOCATIONS] = store
    vms = app[app_keys.VM_VIEW]
    vms.listeners.append(store.on_record_change)
    await store.reconcile(vms, app[app_keys.VM_STORE])
    task = asyncio.create_task(store.run(vms, app[app_keys.VM_STORE]), name="allocations")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.close()
    await view.stop()


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/nodes", list_nodes)
    app.router.add_get("/v1/nodes/{node}", get_node)
    app.cleanup_ctx.append(allocations_ctx)
