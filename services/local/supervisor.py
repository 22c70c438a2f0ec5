"""Keeps ``lq-local``'s children running: a child that exits is restarted, NATS first.

``lq-local`` used to stop the whole system when any child exited (a ``kill -9`` of the image
library took NATS, the API and the node down). Now each exit is reported on one line with the
last lines of the child's log, and the child is started again after a backoff (0.5 s doubling to
30 s; back to 0.5 s once it stayed up 60 s). nats-server comes first: while it is down nothing
else is restarted, and the others are not restarted for its sake — they reconnect by themselves
(``nats_client.connect`` retries forever). A child that keeps dying (5 exits within 2 min) is
reported with what to do next, and the supervisor returns 1 so ``lq-local`` stops everything.

The test harness ``Stack`` does not supervise (tests kill processes on purpose); only ``lq-local``
wraps it in a ``Supervisor``. Each child's PID is kept in ``<data_dir>/run/<name>.pid``
(``nats``, ``image-library``, ``api``, ``node-<id>``), rewritten at every restart and removed
when ``lq-local`` stops. With ``--nats-cluster N`` each server is its own child (``nats-1`` ...
``nats-N``): the others go on as long as one of them runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from limiquantix.common.nats_server import NatsServer
from limiquantix.local.stack import ServiceProcess, Stack

NATS = "nats"
POLL_S = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """How soon a child is restarted, and when to stop trying."""

    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    healthy_after_s: float = 60.0  # up this long: the next exit starts the backoff over
    give_up_exits: int = 5  # this many exits ...
    give_up_window_s: float = 120.0  # ... within this window: it will not get better alone
    log_lines: int = 5  # of the child's log, printed with each exit


class Backoff:
    """One child's exit history: when to restart it, and whether to give up."""

    def __init__(self, policy: RestartPolicy, now: float) -> None:
        self.policy = policy
        self.started_at = now
        self.delay_s = policy.first_delay_s
        self.exits: deque[float] = deque()
        self.restart_at: float | None = None  # set while the child waits to be restarted

    def exited(self, now: float) -> float:
        """Record an exit at ``now``; returns the delay before the restart."""
        if now - self.started_at >= self.policy.healthy_after_s:
            self.delay_s = self.policy.first_delay_s
        self.exits.append(now)
        while self.exits and self.exits[0] < now - self.policy.give_up_window_s:
            self.exits.popleft()
        delay = self.delay_s
        self.delay_s = min(self.delay_s * 2, self.policy.max_delay_s)
        self.restart_at = now + delay
        return delay

    @property
    def gave_up(self) -> bool:
        return len(self.exits) >= self.policy.give_up_exits

    def restarted(self, now: float) -> None:
        self.started_at = now
        self.restart_at = None


class GaveUp(Exception):
    """A child kept exiting; carries the message for the user."""


def describe_exit(code: int | None) -> str:
    """``exit code 1`` / ``killed by SIGKILL`` (asyncio reports signals as negative codes)."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def readable(line: str, width: int = 300) -> str:
    """A service's JSON log line as a person reads it: level, event, fields, and only the last
    line of a traceback (where the cause is); other lines (nats-server's) as they are."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:width]
    if not isinstance(entry, dict):
        return line[:width]
    level, event = entry.pop("level", "?"), entry.pop("event", "")
    exception = str(entry.pop("exception", "")).strip()
    for noise in ("service", "timestamp", "logger"):
        entry.pop(noise, None)
    text = " ".join([f"{level}: {event}", *(f"{k}={v}" for k, v in entry.items())])
    if exception:
        text += f" -- {exception.splitlines()[-1]}"
    return text[:width]


def _tail(log: Path | None, lines: int) -> str:
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return "\n".join(f"    | {readable(line)}" for line in text)


class Supervisor:
    """``await Supervisor(stack, run_dir).run(stop)``: 0 after ``stop``, 1 after giving up."""

    def __init__(self, stack: Stack, run_dir: Path, *, policy: RestartPolicy | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.stack = stack
        self.run_dir = run_dir
        self.policy = policy or RestartPolicy()
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.backoffs: dict[str, Backoff] = {}
        self.restarts = 0

    def _backoff(self, name: str) -> Backoff:
        if name not in self.backoffs:
            self.backoffs[name] = Backoff(self.policy, time.monotonic())
        return self.backoffs[name]

    async def run(self, stop: asyncio.Event) -> int:
        """Tend the children until ``stop`` is set (returns 0) or one keeps dying (returns 1)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name, server in self._nats_members():
            self._write_pid(name, server.process)
        for name, service in self.stack.services.items():
            self._write_pid(name, service.process)
        try:
            while not stop.is_set():
                try:
                    await self._tend(stop)
                except GaveUp as exc:
                    self.say(str(exc))
                    return 1
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: see heartbeat.py
                    async with asyncio.timeout(POLL_S):
                        await stop.wait()
            return 0
        finally:
            for pid_file in self.run_dir.glob("*.pid"):
                pid_file.unlink(missing_ok=True)

    async def _tend(self, stop: asyncio.Event) -> None:
        """One pass: NATS first; the others only once NATS runs (in a cluster: once any
        member runs, since clients move to the members that are up)."""
        running = [await self._tend_one(name, server.process, server.log_file,
                                        self._nats_restarter(name, server), stop)
                   for name, server in self._nats_members()]
        if not any(running):
            return
        for name, service in list(self.stack.services.items()):
            await self._tend_one(name, service.process, service.log,
                                 self._restarter(name, service), stop)

    async def _tend_one(self, name: str, process: asyncio.subprocess.Process | None,
                        log: Path | None, restart: Callable[[], Awaitable[None]],
                        stop: asyncio.Event) -> bool:
        """Notice an exit, or restart when its delay is over; True when the child runs."""
        if process is not None and process.returncode is None:
            return True
        backoff, now = self._backoff(name), time.monotonic()
        if backoff.restart_at is None:  # a new exit
            code = process.returncode if process is not None else None
            self._exited(name, describe_exit(code), log, backoff.exited(now), backoff)
            return False
        # Ctrl-C in a terminal reaches nats-server too (same process group): no restart then.
        if now < backoff.restart_at or stop.is_set():
            return False
        try:
            await restart()
        except (OSError, RuntimeError, TimeoutError) as exc:  # e.g. nats-server's port taken
            backoff.restart_at = None
            self._exited(name, f"failed to start: {exc}", log, backoff.exited(time.monotonic()),
                         backoff)
            return False
        backoff.restarted(time.monotonic())
        self.restarts += 1
        return True

    def _exited(self, name: str, how: str, log: Path | None, delay: float,
                backoff: Backoff) -> None:
        tail = _tail(log, self.policy.log_lines)
        if backoff.gave_up:
            window = self.policy.give_up_window_s
            raise GaveUp(
                f"lq-local: {name} {how}; it exited {len(backoff.exits)} times in "
                f"{window:g} s, so lq-local gives up and stops everything.\n"
                f"  What to do: read its log {log} (last lines below), fix what it names (often "
                "a port another program took, or an LQ_* setting), then run lq-local again.\n"
                f"{tail}")
        self.say(f"lq-local: {name} {how}; restarting it in {delay:g} s "
                 f"(exit {len(backoff.exits)} in {self.policy.give_up_window_s:g} s; "
                 f"log: {log})\n{tail}".rstrip())

    def _nats_members(self) -> list[tuple[str, NatsServer]]:
        """``nats`` alone, or ``nats-1`` ... ``nats-N`` for a cluster (``--nats-cluster N``)."""
        members = self.stack.nats.members
        if len(members) == 1:
            return [(NATS, members[0])]
        return [(f"{NATS}-{i}", m) for i, m in enumerate(members, start=1)]

    def _nats_restarter(self, name: str, server: NatsServer) -> Callable[[], Awaitable[None]]:
        async def restart() -> None:
            await server.start()
            self._write_pid(name, server.process)
            self.say(f"lq-local: {name} restarted (pid {self._pid(server.process)}); "
                     "the services reconnect by themselves")
        return restart

    def _restarter(self, name: str, service: ServiceProcess) -> Callable[[], Awaitable[None]]:
        async def restart() -> None:
            await service.start()
            self._write_pid(name, service.process)
            self.say(f"lq-local: {name} restarted (pid {self._pid(service.process)})")
        return restart

    @staticmethod
    def _pid(process: asyncio.subprocess.Process | None) -> int | None:
        return process.pid if process is not None else None

    def _write_pid(self, name: str, process: asyncio.subprocess.Process | None) -> None:
        if process is not None:
            (self.run_dir / f"{name}.pid").write_text(f"{process.pid}\n")
