"""``lq ... --wait | cat`` on a terminal: stderr is a TTY, stdout a pipe. Status lines must not
redraw in place then (their carriage returns used to mix ``NAME: deleting`` into the piped
``NAME: deleted``): every state is its own line, with no control characters."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess

import pytest

from limiquantix.local.stack import Stack
from tests.support.cli import LQ, Lq
from tests.support.flows import unique_name

pytestmark = pytest.mark.stack


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the pty's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def _run_with_tty_stderr(lq: Lq, *args: str) -> tuple[int, str, str]:
    """Run lq with stdout a pipe and stderr a pseudo-terminal, as `lq ... | cat` in a shell."""
    master, slave = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            LQ, *args, env=lq.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=slave)
        os.close(slave)
        reader = asyncio.create_task(asyncio.to_thread(_read_all, master))
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        err = await reader
    finally:
        os.close(master)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(errors="replace")


async def test_wait_output_piped_from_a_terminal_is_one_state_per_line(
        lq: Lq, stack: Stack) -> None:
    name = unique_name()
    code, out, created = await _run_with_tty_stderr(
        lq, "vm", "create", name, "--memory", "256M", "--disk", "1G", "--wait", "running")
    assert code == 0, created
    code, out, deleted = await _run_with_tty_stderr(lq, "vm", "delete", name, "--wait")
    assert code == 0, deleted
    for text in (out, created, deleted):
        assert "\r" not in text.replace("\r\n", "\n") and "\x1b[" not in text
    assert out.splitlines()[-1] == f"{name}: deleted"
    states = [line.split(": ", 1)[1] for line in created.splitlines() if line.startswith(name)]
    assert states[-1] == "running" and len(states) == len(set(states))  # each change once
    assert all(line.count(f"{name}:") <= 1 for line in (created + deleted).splitlines())
