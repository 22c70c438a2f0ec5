"""``lq vm …``: create, list, show and the lifecycle actions (with ``--wait``)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from limiquantix.cli import ssh, vm_input
from limiquantix.cli.client import ApiClient
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, ApiError, CliError
from limiquantix.cli.output import (
    StatusLine,
    key_values,
    print_json_if_asked,
    print_names_if_quiet,
    table,
)
from limiquantix.cli.sizes import format_duration, format_mib, parse_duration
from limiquantix.cli.sse import EventStream
from limiquantix.cli.waiting import GONE, VmWaiter, phase_status
from limiquantix.common.vms import CloneSource, VmRecord, VmState

UP = (VmState.RUNNING, VmState.READY)
WAIT_TARGETS: dict[str, tuple[str, ...]] = {
    "running": UP,
    "ready": (VmState.READY,),
    "ssh": UP,  # and the readiness phase ssh (or ready): an SSH banner answered
    "start": UP,
    "stop": (VmState.STOPPED,),
    "force-stop": (VmState.STOPPED,),
    "reboot": UP,
    "pause": (VmState.PAUSED,),
    "resume": UP,
    "retry": UP,
    "delete": (GONE,),
}
ACTIONS = ("start", "stop", "force-stop", "reboot", "pause", "resume", "retry")


def get_vm(client: ApiClient, vm: str) -> VmRecord:
    """By id or name (the API resolves both)."""
    return client.api.vms.get(vm)


def _timeout(ctx: Context) -> float:
    return parse_duration(ctx.args.timeout)


def _age(when: datetime) -> str:
    return format_duration(max((datetime.now(UTC) - when).total_seconds(), 0))


def _image_label(image: str) -> str:
    return os.path.basename(image) if os.sep in image else image


def _ssh_short(record: VmRecord) -> str:
    target = ssh.target_of(record)
    return f"{target.host}:{target.port}" if target else "-"


def connect_pairs(record: VmRecord) -> list[tuple[str, str]]:
    """How to reach the VM: ssh command, host key fingerprints, console."""
    target = ssh.target_of(record)
    pairs: list[tuple[str, str]] = []
    if target is None:
        pairs.append(("ssh", "no SSH forward (create with --network isolated or user)"))
    else:
        pairs.append(("ssh", f"{target.command()}    (or: lq vm ssh {record.name})"))
        keys = record.guest.ssh_host_keys or (
            f"not known yet (shown once the guest is ready: lq vm show {record.name})",)
        pairs += [("host key", key) for key in keys]
    pairs.append(("console", f"lq vm console {record.name}"))
    return pairs


def create(ctx: Context) -> int:
    args = ctx.args
    body = vm_input.create_body(args)
    if not args.ssh_key and not args.password_prompt:
        ctx.warn("no --ssh-key or --password-prompt: the VM is reachable only by its console")
    timeout_s = _timeout(ctx)  # parsed before anything is created
    started = time.monotonic()
    if not args.wait:
        record = ctx.client.post("/v1/vms", VmRecord, body)
        ctx.print(f"Creating {record.name} ({record.id}) on {record.node or 'a node'}")
        ctx.print(f"state: {record.state}  (follow: lq events --vm {record.name})")
        return EXIT_OK
    # The whole stream, opened before the POST: the VM's first events and the node's image
    # download progress (an image event, not a VM one) cannot slip past.
    with EventStream(ctx.client) as stream:
        record = ctx.client.post("/v1/vms", VmRecord, body)
        ctx.print(f"Creating {record.name} ({record.id}) on {record.node or 'a node'}")
        status = StatusLine(ctx.err)
        final = VmWaiter(ctx.client, status).wait(
            record.id, record.name, WAIT_TARGETS[args.wait], timeout_s, stream,
            phase="ssh" if args.wait == "ssh" else "")
        status.done()
    assert final is not None
    final = get_vm(ctx.client, final.id)  # fresh: forwards and host keys are set by now
    ctx.print(f"{final.name} is {final.state} on {final.node} after "
              f"{format_duration(time.monotonic() - started)}")
    ctx.print(key_values(connect_pairs(final)))
    return EXIT_OK


def list_vms(ctx: Context) -> int:
    records = ctx.client.api.vms.list(state=ctx.args.state, node=ctx.args.node,
                                      label=ctx.args.label)
    if print_json_if_asked(ctx, records) or print_names_if_quiet(ctx, (r.name for r in records)):
        return EXIT_OK
    rows = [
        [r.name, _state_label(r), r.node or "-", str(r.vcpus), format_mib(r.memory_mib),
         f"{r.disk_gib}G", _image_label(r.image), _ssh_short(r), _age(r.created_at)]
        for r in records
    ]
    if not rows:
        ctx.err.write("No VMs. Create one with: lq vm create NAME --image IMAGE\n")
        return EXIT_OK
    ctx.print(table(["NAME", "STATE", "NODE", "CPUS", "MEMORY", "DISK", "IMAGE", "SSH", "AGE"],
                    rows))
    return EXIT_OK


def _state_label(record: VmRecord) -> str:
    """A template's state says it is one: it is stopped for good, and only cloned."""
    return f"{record.state} (template)" if record.template else str(record.state)


def _clone_label(client: ApiClient, source: CloneSource) -> str:
    """The source VM and snapshot by name; their ids when the source is gone (a full clone
    outlives it)."""
    kind = "linked" if source.linked else "full"
    vm, snapshot = source.vm_id, source.snapshot_id
    try:
        record = get_vm(client, source.vm_id)
    except ApiError as exc:
        if exc.http_status != 404:
            raise
        vm = f"{source.vm_id}, deleted"
    else:
        vm = record.name
        snapshot = next((s.name for s in record.snapshots if s.id == snapshot), snapshot)
    at = f" at snapshot {snapshot}" if snapshot else ""
    return f"{vm} ({kind}{at})"


def linked_clones(client: ApiClient, record: VmRecord) -> list[VmRecord]:
    """The linked clones kept on ``record`` (a template's disk, or its snapshots' frozen
    bases), by name. Their disks back onto its files, so they are on its node: only that
    node's VMs are read."""
    return sorted((vm for vm in client.api.vms.list(node=record.node or None)
                   if vm.clone_of is not None and vm.clone_of.linked
                   and vm.clone_of.vm_id == record.id), key=lambda vm: vm.name)


def _linked_clone_pairs(record: VmRecord, clones: list[VmRecord]) -> list[tuple[str, str]]:
    """One line per linked clone with what it is kept on, after one that says what they
    block (the gateway refuses the VM's delete, and their snapshots', until they are gone)."""
    if not clones:
        return []
    names = {s.id: s.name for s in record.snapshots}
    blocks = "this template" if record.template else "this VM or those snapshots"
    pairs = [("linked clones", f"{len(clones)} (delete them before {blocks})")]
    for clone in clones:
        snapshot_id = clone.clone_of.snapshot_id if clone.clone_of else ""
        base = (f"snapshot {names.get(snapshot_id, snapshot_id)}" if snapshot_id
                else "the template's disk")
        pairs.append(("linked clone", f"{clone.name} on {base} ({clone.state})"))
    return pairs


def show(ctx: Context) -> int:
    record = get_vm(ctx.client, ctx.args.vm)
    if print_json_if_asked(ctx, record):
        return EXIT_OK
    clones = linked_clones(ctx.client, record)
    error = record.error
    guest = record.guest
    ctx.print(key_values([
        ("name", record.name),
        ("id", record.id),
        ("state", str(record.state)),
        ("error", f"{error.message} ({error.code}) - {error.hint}" if error else ""),
        ("template", "yes: frozen; make VMs of it with 'lq vm clone' (linked by default)"
                     if record.template else ""),
        ("clone of", _clone_label(ctx.client, record.clone_of) if record.clone_of else ""),
        *_linked_clone_pairs(record, clones),
        ("node", record.node),
        ("image", record.image),
        ("cpus", str(record.vcpus)),
        ("memory", format_mib(record.memory_mib)),
        ("disk", f"{record.disk_gib}G"),
        ("user", record.cloud_init.user),
        ("network", record.network.mode + (f":{record.network.source}"
                                           if record.network.source else "")),
        ("addresses", ", ".join(f"{a.address} ({a.interface or '?'}, {a.source})"
                                  for a in guest.ip_addresses) or ", ".join(guest.addresses)),
        ("agent", (f"connected {guest.agent.version}" if guest.agent.connected
                   else "not connected" if record.state in UP else "")),
        ("os", " ".join(filter(None, (guest.os.name, guest.os.kernel))) if guest.os else ""),
        ("phase", phase_status(record) if guest.phase else ""),
        ("stopped by", record.stopped_by if record.state == VmState.STOPPED else ""),
        ("ready in", f"{guest.boot_seconds:.1f}s" if guest.boot_seconds is not None else ""),
        ("cloud-init", guest.cloud_init_error),
        ("vnc", f"{record.vnc.host}:{record.vnc.port}" if record.vnc else ""),
        ("created", record.created_at.isoformat(timespec="seconds")),
        ("updated", record.updated_at.isoformat(timespec="seconds")),
        *connect_pairs(record),
    ]))
    return EXIT_OK


def action(ctx: Context) -> int:
    """start|stop|force-stop|reboot|pause|resume|delete on one or more VMs.

    Each VM is tried even when an earlier one fails; every failure gets its error line and
    the exit code is the worst seen (timeout 3 over error 1).
    """
    timeout_s = _timeout(ctx)
    worst = EXIT_OK
    for vm in ctx.args.vms:
        try:
            _act_on(ctx, vm, ctx.args.action, timeout_s)
        except CliError as exc:
            ctx.err.write(exc.line() + "\n")
            worst = max(worst, exc.exit_code)
    return worst


def _act_on(ctx: Context, vm: str, name: str, timeout_s: float) -> None:
    record = get_vm(ctx.client, vm)
    if name == "delete":
        ctx.client.api.vms.delete(record.id, force=getattr(ctx.args, "force", False))
    else:
        ctx.client.api.vms.action(record.id, name)
    if not ctx.args.wait:
        ctx.print(f"{record.name}: {name} requested")
        return
    status = StatusLine(ctx.err)
    final = VmWaiter(ctx.client, status).wait(record.id, record.name, WAIT_TARGETS[name],
                                              timeout_s)
    status.done()
    ctx.print(f"{record.name}: {final.state if final else 'deleted'}")
