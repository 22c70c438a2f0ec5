"""``lq node list`` and ``lq node show``."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from limiquantix.cli.client import seg
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK
from limiquantix.cli.output import key_values, table
from limiquantix.cli.sizes import format_duration, format_mib

_json = msgspec.json.Encoder()


class NodeView(msgspec.Struct, kw_only=True):
    """A node as ``GET /v1/nodes`` shows it (only the fields lq prints; others are ignored)."""

    id: str
    status: str = "online"
    hostname: str = ""
    version: str = ""
    libvirt_uri: str = ""
    virt_type: str = ""
    vcpus: int = 0
    memory_mib: int = 0
    disk_free_gib: float = 0.0
    allocated_vcpus: int = 0
    allocated_memory_mib: int = 0
    vm_count: int = 0
    last_heartbeat: datetime | None = None
    heartbeat_at: datetime | None = None  # the KV record's name for it


def _heartbeat(node: NodeView) -> str:
    when = node.last_heartbeat or node.heartbeat_at
    if when is None:
        return "-"
    return format_duration(max((datetime.now(UTC) - when).total_seconds(), 0)) + " ago"


def list_nodes(ctx: Context) -> int:
    nodes = ctx.client.get_list("/v1/nodes", NodeView)
    if ctx.args.json:
        ctx.print(_json.encode(nodes).decode())
        return EXIT_OK
    if ctx.args.quiet:
        if nodes:
            ctx.print("\n".join(n.id for n in nodes))
        return EXIT_OK
    rows = [[n.id, n.status, n.virt_type or "-", f"{n.allocated_vcpus}/{n.vcpus}",
             f"{n.allocated_memory_mib / 1024:.1f}/{n.memory_mib / 1024:.1f}G",
             f"{n.disk_free_gib:.0f}G", str(n.vm_count), _heartbeat(n)] for n in nodes]
    ctx.print(table(["ID", "STATUS", "VIRT", "CPUS", "MEMORY", "DISK FREE", "VMS", "HEARTBEAT"],
                    rows))
    return EXIT_OK


def show(ctx: Context) -> int:
    node = ctx.client.get(f"/v1/nodes/{seg(ctx.args.node)}", NodeView)
    if ctx.args.json:
        ctx.print(_json.encode(node).decode())
        return EXIT_OK
    ctx.print(key_values([
        ("id", node.id), ("status", node.status), ("hostname", node.hostname),
        ("version", node.version), ("libvirt", node.libvirt_uri), ("virt", node.virt_type),
        ("cpus", f"{node.allocated_vcpus} of {node.vcpus} allocated"),
        ("memory", f"{format_mib(node.allocated_memory_mib)} of {format_mib(node.memory_mib)} "
                   "allocated"),
        ("disk free", f"{node.disk_free_gib:.1f}G"), ("vms", str(node.vm_count)),
        ("heartbeat", _heartbeat(node)),
    ]))
    return EXIT_OK
