"""External tools run as asyncio subprocesses: always a timeout, stderr in the error."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from typing import Self

from limiquantix.common.errors import LimiquantixError


class ToolFailed(LimiquantixError):
    """An external tool (qemu-img, ...) exited non-zero or timed out."""

    code = "tool_failed"
    status = 500
    default_hint = "Check that the tool is installed (scripts/setup.sh) and see the message."


async def run_tool(args: Sequence[str], *, timeout_s: float = 60.0) -> bytes:
    """Run ``args``; return stdout, or raise ToolFailed with the tool's stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError:
        raise ToolFailed(f"{args[0]} is not installed", tool=args[0]) from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ToolFailed(f"{args[0]} took longer than {timeout_s:g} s", tool=args[0]) from None
    if proc.returncode != 0:
        message = stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise ToolFailed(f"{args[0]} failed: {message}", tool=args[0])
    return stdout


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 20.0) -> int:
    """SIGTERM a process we started, wait for it, SIGKILL it if it will not end."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


class StartStopContext(abc.ABC):
    """Something that starts processes and stops them: ``async with`` runs ``start()``, and
    ``stop()`` on leaving, or at once when the start fails half-way, so nothing is left running.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Start everything and return once it is ready."""

    @abc.abstractmethod
    async def stop(self) -> object:
        """Stop whatever is running (also what a failed start left), by PID."""

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
