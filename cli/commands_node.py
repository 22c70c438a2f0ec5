"""``lq node list`` and ``lq node show``."""

from __future__ import annotations

from datetime import UTC, datetime

from limiquantix.api.schemas import NodeInfo
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK
from limiquantix.cli.output import (
    key_values,
    print_json_if_asked,
    print_names_if_quiet,
    table,
)
from limiquantix.cli.sizes import format_duration, format_mib


def _heartbeat(node: NodeInfo) -> str:
    when = node.last_heartbeat
    if when is None:
        return "-"
    return format_duration(max((datetime.now(UTC) - when).total_seconds(), 0)) + " ago"


def _warnings(node: NodeInfo) -> str:
    return ", ".join(w.code for w in node.warnings) or "-"


def list_nodes(ctx: Context) -> int:
    nodes = ctx.client.api.nodes.list()
    if print_json_if_asked(ctx, nodes) or print_names_if_quiet(ctx, (n.id for n in nodes)):
        return EXIT_OK
    rows = [[n.id, n.status, n.virt_type or "-", f"{n.allocated_vcpus}/{n.vcpus_capacity}",
             f"{n.allocated_memory_mib / 1024:.1f}/{n.memory_mib_capacity / 1024:.1f}G",
             f"{n.disk_free_gib:.0f}G", str(n.vm_count), _heartbeat(n), _warnings(n)]
            for n in nodes]
    ctx.print(table(["ID", "STATUS", "VIRT", "CPUS", "MEMORY", "DISK FREE", "VMS", "HEARTBEAT",
                     "WARNINGS"], rows))
    for node in nodes:  # a warning is only useful with its fix
        for warning in node.warnings:
            ctx.warn(f"node {node.id}: {warning.message}\n  fix: {warning.hint}")
    return EXIT_OK


def show(ctx: Context) -> int:
    node = ctx.client.api.nodes.get(ctx.args.node)
    if print_json_if_asked(ctx, node):
        return EXIT_OK
    ctx.print(key_values([
        ("id", node.id), ("status", node.status), ("hostname", node.hostname),
        ("version", node.version), ("libvirt", node.libvirt_uri), ("virt", node.virt_type),
        ("cpus", f"{node.allocated_vcpus} of {node.vcpus_capacity} allocated ({node.vcpus} "
                 f"physical x {node.cpu_allocation_ratio:g})"),
        ("memory", f"{format_mib(node.allocated_memory_mib)} of "
                   f"{format_mib(node.memory_mib_capacity)} allocated "
                   f"({format_mib(node.memory_mib)} x {node.memory_allocation_ratio:g}, "
                   "less the host's reserve)"),
        ("disk free", f"{node.disk_free_gib:.1f}G"), ("vms", str(node.vm_count)),
        ("heartbeat", _heartbeat(node)),
        *((f"warning {w.code}", f"{w.message}. Fix: {w.hint}") for w in node.warnings),
    ]))
    return EXIT_OK
