"""``lq vm exec|cp|passwd``: inside a VM through its QEMU guest agent (docs/guest-agent.md).

No SSH, no network to the guest needed: the node relays through the agent. ``exec`` exits with
the guest program's exit code (128 + N when signal N ended it), like ssh does.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from pathlib import Path

from limiquantix.cli.commands_vm import get_vm
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, LocalFileError, UsageError
from limiquantix.cli.sizes import format_bytes

# NAME:/abs/path (a VM name is a DNS label; the guest path is absolute).
_REMOTE = re.compile(r"^(?P<vm>[A-Za-z0-9][A-Za-z0-9-]{0,62}):(?P<path>/.*|[A-Za-z]:[\\/].*)$")


def exec_command(ctx: Context) -> int:
    """Run a program in the guest; its output here, its exit code as ours."""
    command = list(ctx.args.remote)
    if not command:
        raise UsageError("give the command after --, e.g. lq vm exec web-1 -- uname -a")
    record = get_vm(ctx.client, ctx.args.vm)
    stdin = sys.stdin.read() if ctx.args.stdin else ""
    result = ctx.client.api.guest.exec(record.id, command, input=stdin,
                                       timeout_s=ctx.args.timeout)
    ctx.out.write(result.stdout)
    ctx.out.flush()
    ctx.err.write(result.stderr)
    if result.truncated:
        ctx.warn("output truncated (at most 256 KiB is kept); write it to a file and lq vm cp it")
    ctx.err.flush()
    if result.signal is not None:
        return 128 + result.signal
    return int(result.exit_code or 0)


def remote_of(arg: str) -> tuple[str, str] | None:
    """``(vm, path)`` of ``NAME:/path``, None for a local file."""
    match = _REMOTE.match(arg)
    return (match["vm"], match["path"]) if match else None


def copy(ctx: Context) -> int:
    """``lq vm cp FILE NAME:/path`` (upload) or ``lq vm cp NAME:/path FILE`` (download);
    FILE ``-`` is stdin or stdout."""
    source, target = ctx.args.source, ctx.args.target
    into, out_of = remote_of(target), remote_of(source)
    if (into is None) == (out_of is None):
        raise UsageError("exactly one side must be NAME:/absolute/path, e.g. "
                         "lq vm cp app.conf web-1:/etc/app.conf")
    if into is not None:
        return _upload(ctx, source, *into)
    assert out_of is not None
    return _download(ctx, *out_of, target)


def _upload(ctx: Context, local: str, vm: str, path: str) -> int:
    record = get_vm(ctx.client, vm)
    guest = ctx.client.api.guest
    if local == "-":
        data = sys.stdin.buffer.read()
        written = guest.write_file(record.id, path, data, size=len(data), mode=ctx.args.mode,
                                   owner=ctx.args.owner)
    else:
        try:
            file = open(local, "rb")  # noqa: SIM115 - closed below, streamed meanwhile
        except OSError as exc:
            raise LocalFileError(f"cannot read {local}: {exc.strerror}") from None
        with file:
            written = guest.write_file(record.id, path, file, size=os.fstat(file.fileno()).st_size,
                                       mode=ctx.args.mode, owner=ctx.args.owner)
    ctx.err.write(f"{record.name}:{written.path}: {format_bytes(written.size)} written "
                  f"(sha256 {written.sha256})\n")
    return EXIT_OK


def _download(ctx: Context, vm: str, path: str, local: str) -> int:
    record = get_vm(ctx.client, vm)
    blocks = ctx.client.api.guest.read_file(record.id, path)
    size = 0
    if local == "-":
        for block in blocks:
            sys.stdout.buffer.write(block)
            size += len(block)
        sys.stdout.buffer.flush()
        return EXIT_OK
    target = Path(local)
    if target.is_dir():
        target = target / (path.replace("\\", "/").rsplit("/", 1)[-1] or "file")
    partial = target.with_name(target.name + ".lq-partial")
    try:
        with open(partial, "wb") as file:
            for block in blocks:
                file.write(block)
                size += len(block)
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise LocalFileError(f"cannot write {target}: {exc.strerror}") from None
    ctx.err.write(f"{target}: {format_bytes(size)} from {record.name}:{path}\n")
    return EXIT_OK


def passwd(ctx: Context) -> int:
    """Set a guest user's password: prompted twice, or one line from --password-stdin."""
    record = get_vm(ctx.client, ctx.args.vm)
    if ctx.args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"New password for {ctx.args.user} in {record.name}: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ; nothing was changed")
    if not password:
        raise UsageError("an empty password is not set")
    ctx.client.api.guest.set_password(record.id, ctx.args.user, password)
    ctx.print(f"{ctx.args.user}'s password set in {record.name}")
    return EXIT_OK
