"""``lq vm …``: create, list, show, lifecycle actions, console, ssh and the serial log."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
import webbrowser
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from limiquantix.cli import ssh, vm_input
from limiquantix.cli.client import ApiClient, seg
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, CliError, SshUnavailable
from limiquantix.cli.output import StatusLine, key_values, table
from limiquantix.cli.sizes import format_duration, format_mib, parse_duration
from limiquantix.cli.sse import EventStream
from limiquantix.cli.waiting import GONE, VmWaiter
from limiquantix.common.vms import VmRecord, VmState

UP = (VmState.RUNNING, VmState.READY)
WAIT_TARGETS: dict[str, tuple[str, ...]] = {
    "running": UP,
    "ready": (VmState.READY,),
    "start": UP,
    "stop": (VmState.STOPPED,),
    "force-stop": (VmState.STOPPED,),
    "reboot": UP,
    "pause": (VmState.PAUSED,),
    "resume": UP,
    "delete": (GONE,),
}
ACTIONS = ("start", "stop", "force-stop", "reboot", "pause", "resume")
LOG_POLL_S = 1.0
DEFAULT_LOG_BYTES = 64 * 1024
MAX_LOG_BYTES = 4 * 1024 * 1024  # the API's cap
_json = msgspec.json.Encoder()


def get_vm(client: ApiClient, vm: str) -> VmRecord:
    """By id or name (the API resolves both)."""
    return client.get(f"/v1/vms/{seg(vm)}", VmRecord)


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
        final = VmWaiter(ctx.client, status).wait(record.id, record.name,
                                                  WAIT_TARGETS[args.wait], timeout_s, stream)
        status.done()
    assert final is not None
    final = get_vm(ctx.client, final.id)  # fresh: forwards and host keys are set by now
    ctx.print(f"{final.name} is {final.state} on {final.node} after "
              f"{format_duration(time.monotonic() - started)}")
    ctx.print(key_values(connect_pairs(final)))
    return EXIT_OK


def list_vms(ctx: Context) -> int:
    query = {"state": ctx.args.state, "node": ctx.args.node}
    records = ctx.client.get_list("/v1/vms", VmRecord, query)
    if ctx.args.json:
        ctx.print(_json.encode(records).decode())
        return EXIT_OK
    if ctx.args.quiet:
        if records:
            ctx.print("\n".join(r.name for r in records))
        return EXIT_OK
    rows = [
        [r.name, str(r.state), r.node or "-", str(r.vcpus), format_mib(r.memory_mib),
         f"{r.disk_gib}G", _image_label(r.image), _ssh_short(r), _age(r.created_at)]
        for r in records
    ]
    if not rows:
        ctx.err.write("No VMs. Create one with: lq vm create NAME --image IMAGE\n")
        return EXIT_OK
    ctx.print(table(["NAME", "STATE", "NODE", "CPUS", "MEMORY", "DISK", "IMAGE", "SSH", "AGE"],
                    rows))
    return EXIT_OK


def show(ctx: Context) -> int:
    record = get_vm(ctx.client, ctx.args.vm)
    if ctx.args.json:
        ctx.print(_json.encode(record).decode())
        return EXIT_OK
    error = record.error
    guest = record.guest
    ctx.print(key_values([
        ("name", record.name),
        ("id", record.id),
        ("state", str(record.state)),
        ("error", f"{error.message} ({error.code}) - {error.hint}" if error else ""),
        ("node", record.node),
        ("image", record.image),
        ("cpus", str(record.vcpus)),
        ("memory", format_mib(record.memory_mib)),
        ("disk", f"{record.disk_gib}G"),
        ("user", record.cloud_init.user),
        ("network", record.network.mode + (f":{record.network.source}"
                                           if record.network.source else "")),
        ("addresses", ", ".join(guest.addresses)),
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
        ctx.client.request("DELETE", f"/v1/vms/{seg(record.id)}")
    else:
        ctx.client.request("POST", f"/v1/vms/{seg(record.id)}/{name}")
    if not ctx.args.wait:
        ctx.print(f"{record.name}: {name} requested")
        return
    status = StatusLine(ctx.err)
    final = VmWaiter(ctx.client, status).wait(record.id, record.name, WAIT_TARGETS[name],
                                              timeout_s)
    status.done()
    ctx.print(f"{record.name}: {final.state if final else 'deleted'}")


def console(ctx: Context) -> int:
    """The browser console page; the API token rides in the URL fragment, never sent anywhere."""
    record = get_vm(ctx.client, ctx.args.vm)
    if record.state not in UP and record.state != VmState.PAUSED:
        ctx.warn(f"{record.name} is {record.state}: the console shows a display only while "
                 "it runs")
    url = f"{ctx.client.config.url}/v1/vms/{seg(record.id)}/console#token={ctx.client.config.token}"
    ctx.print(url)
    if ctx.args.open and not webbrowser.open(url):
        ctx.warn("no browser could be started here; open the URL above yourself")
    return EXIT_OK


def ssh_command(ctx: Context) -> int:
    """Run ssh to the VM's forward, verifying the host key against the API's fingerprints."""
    args = ctx.args
    record = get_vm(ctx.client, args.vm)
    target = ssh.target_of(record)
    if target is None:
        raise SshUnavailable(f"{record.name} has no SSH port forward")
    if args.user:
        target = ssh.SshTarget(target.host, target.port, args.user)
    remote = tuple(args.remote)
    wanted = ssh.fingerprints_of(record)
    with tempfile.TemporaryDirectory(prefix="lq-ssh-") as tmp:
        alias = ssh.alias_of(record)
        if wanted:
            scanned = ssh.keyscan(target)
            if not scanned.strip():
                raise SshUnavailable(
                    f"nothing answers SSH at {target.host}:{target.port} yet",
                    hint="The guest may still be booting or stopped; check 'lq vm show' and "
                         "retry.")
            keys = ssh.matching_keys(scanned, wanted)
            if not keys:
                raise SshUnavailable(
                    f"the host key offered at {target.host}:{target.port} is not the one "
                    f"{record.name} reported ({', '.join(sorted(wanted))})",
                    hint="Do not connect: something else answers on that port. Check "
                         "'lq vm show' and the node.")
            known_hosts = Path(tmp) / "known_hosts"
            known_hosts.write_text("".join(f"{alias} {kind} {key}\n" for kind, key in keys))
        else:
            ctx.warn(f"{record.name}'s host key fingerprint is unknown (guest not ready yet?): "
                     "trusting the key it offers on first use")
            known_hosts = ssh.tofu_known_hosts()
        argv = ssh.ssh_argv(target, alias, known_hosts, verified=bool(wanted),
                            identity=args.identity or "", remote=remote)
        if args.print:
            ctx.print(shlex.join(argv))
            return EXIT_OK
        return _run_foreground(argv)


def _run_foreground(argv: list[str]) -> int:
    """ssh owns the terminal; Ctrl-C is for it, not for us. Its exit status is ours."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        raise SshUnavailable("ssh is not installed", hint="Install openssh-client.") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def log(ctx: Context) -> int:
    """The serial console log's tail; ``--follow`` then prints exactly the bytes appended.

    The API tells the log's full size (``X-Log-Size``), so following asks only for the bytes
    past what was printed instead of re-reading and diffing the tail.
    """
    record = get_vm(ctx.client, ctx.args.vm)
    path = f"/v1/vms/{seg(record.id)}/console-log"
    text, size = console_log(ctx.client, path, DEFAULT_LOG_BYTES)
    ctx.out.write(text)
    ctx.out.flush()
    while ctx.args.follow:
        time.sleep(LOG_POLL_S)
        _, now = console_log(ctx.client, path, 1)
        if now < size:  # the log was replaced (VM recreated): start over from its tail
            size = 0
        while now > size:
            wanted = min(now - size, MAX_LOG_BYTES)
            text, now = console_log(ctx.client, path, wanted)
            if now == size + wanted or wanted == MAX_LOG_BYTES:
                ctx.out.write(text)
                ctx.out.flush()
                size = now
    return EXIT_OK


def console_log(client: ApiClient, path: str, max_bytes: int) -> tuple[str, int]:
    """(the last ``max_bytes`` of the log, the log's full size in bytes)."""
    response = client.request("GET", path, query={"max_bytes": max_bytes},
                              headers={"Accept": "text/plain"})
    text = response.body.decode(errors="replace")
    size = response.headers.get("x-log-size", "")
    return text, int(size) if size.isdigit() else len(response.body)
