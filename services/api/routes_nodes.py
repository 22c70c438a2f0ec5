"""``/v1/nodes``: each node's capacity, allocations, VMs, last heartbeat and liveness.

A node is ``online`` while its heartbeat entry is live (younger than the ``nodes`` bucket TTL).
A node missing from the bucket (or expired) but named by VM records is listed ``offline``, so
VMs never point at a node the API does not show.
"""

from __future__ import annotations

from aiohttp import web

from limiquantix.api import app_keys, placement
from limiquantix.api.errors import NodeNotFound
from limiquantix.api.http_json import json_response
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.api.schemas import NodeInfo, NodeList
from limiquantix.common.nodes import NodeStatus


def node_infos(app: web.Application) -> list[NodeInfo]:
    """Every online node, then every offline node still referenced by a VM, sorted by id."""
    vms = app[app_keys.VM_VIEW].values()
    node_view = app[app_keys.NODE_VIEW]
    live = node_view.live()
    loads = placement.loads(live, app[app_keys.VM_VIEW].allocations())
    vm_ids: dict[str, list[str]] = {}
    for vm in vms:
        vm_ids.setdefault(vm.node, []).append(vm.id)
    infos = [_online(status, loads[status.id], vm_ids.get(status.id, [])) for status in live]
    online = {status.id for status in live}
    for node_id in sorted(set(vm_ids) - online - {""}):
        infos.append(_offline(node_id, node_view.last_seen(node_id), vm_ids[node_id]))
    return sorted(infos, key=lambda info: info.id)


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
    """GET /v1/nodes."""
    return json_response(NodeList(items=tuple(node_infos(request.app))))


async def get_node(request: web.Request) -> web.Response:
    """GET /v1/nodes/{node}."""
    node_id = request.match_info["node"]
    for info in node_infos(request.app):
        if info.id == node_id:
            return json_response(info)
    raise NodeNotFound(f"no node {node_id!r} is online or referenced by a VM", node=node_id)


OPENAPI = OpenApiPart(tag="nodes", operations=(
    Operation(method="GET", path="/v1/nodes", summary="Nodes: online, and offline ones with VMs",
              response=NodeList),
    Operation(method="GET", path="/v1/nodes/{node}", summary="One node", response=NodeInfo,
              errors=(404,)),
))


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/nodes", list_nodes)
    app.router.add_get("/v1/nodes/{node}", get_node)
