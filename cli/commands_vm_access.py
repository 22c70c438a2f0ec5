"""``lq vm console|ssh|log``: the ways into a VM."""

from __future__ import annotations

import shlex
import signal
import subprocess
import tempfile
import time
import urllib.parse
import webbrowser
from pathlib import Path

from limiquantix.cli import ssh
from limiquantix.cli.client import ApiClient, seg
from limiquantix.cli.commands_vm import UP, get_vm
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, SshUnavailable
from limiquantix.common.vms import VmState

LOG_POLL_S = 1.0
DEFAULT_LOG_BYTES = 64 * 1024
MAX_LOG_BYTES = 4 * 1024 * 1024  # the API's cap


def console(ctx: Context) -> int:
    """The browser console page with a single-use console ticket in the URL fragment.

    Never the API token: a pasted link grants one console session on this VM, only until the
    ticket expires (LQ_CONSOLE_TICKET_TTL_S) and only once. The fragment is never sent to a
    server, and the page removes it from the address bar at once.
    """
    record = get_vm(ctx.client, ctx.args.vm)
    if record.state not in UP and record.state != VmState.PAUSED:
        ctx.warn(f"{record.name} is {record.state}: the console shows a display only while "
                 "it runs")
    ticket = ctx.client.request("POST", f"/v1/vms/{seg(record.id)}/console").json()
    token = urllib.parse.quote(str(ticket["token"]), safe="")
    url = f"{ctx.client.config.url}/v1/vms/{seg(record.id)}/console#ticket={token}"
    ctx.print(url)
    ctx.err.write(f"single-use link, valid until {ticket['expires_at']}; run this again for "
                  "another\n")
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
