"""Readiness phases of a boot (docs/guest-agent.md): ``defined → booting → network →
cloud_init_done | cloud_init_failed → ssh → ready``, each recorded once with its time in
``guest.phases`` (``guest.phase`` = the latest) and announced as a ``vm.phase`` event.

Phases only move forward: a phase reached after a later one (an address the agent reports after
cloud-init finished) is not recorded, so the times in ``guest.phases`` are in order. ``ssh`` is
probed only once cloud-init is done: an SSH banner before that may still refuse the user's key.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import msgspec
import structlog

from limiquantix.common.events import VmPhaseReached
from limiquantix.common.model import utcnow
from limiquantix.common.vms import GuestInfo, GuestPhase, VmRecord
from limiquantix.node_agent.recorder import Recorder

log = structlog.get_logger()

RANK: dict[str, int] = {"defined": 0, "booting": 1, "network": 2, "cloud_init_done": 3,
                        "cloud_init_failed": 3, "ssh": 4, "ready": 5}
SSH_PROBE_S = 3.0  # one attempt: connect and read the banner
SSH_POLL_S = 1.0


def with_phase(guest: GuestInfo, phase: GuestPhase, at: datetime) -> GuestInfo | None:
    """``guest`` with ``phase`` reached at ``at``; None when it was reached, or passed, already."""
    if phase in guest.phases:
        return None
    if guest.phase is not None and RANK[guest.phase] >= RANK[phase]:
        return None
    return msgspec.structs.replace(guest, phase=phase, phases={**guest.phases, phase: at})


def booted_guest(previous: GuestInfo, at: datetime) -> GuestInfo:
    """A new boot's guest info: phases ``defined`` (the create's, when this boot is the
    create's; else the domain was defined already: the boot's time) and ``booting``."""
    defined = previous.phases.get("defined", at) if previous.phase == "defined" else at
    return GuestInfo(phase="booting", phases={"defined": defined, "booting": at})


def elapsed_s(guest: GuestInfo, at: datetime) -> float | None:
    """Seconds from the boot's start to ``at``."""
    start = guest.phases.get("booting")
    return None if start is None else round((at - start).total_seconds(), 2)


def phase_event(record: VmRecord, phase: GuestPhase) -> VmPhaseReached:
    at = record.guest.phases[phase]
    return VmPhaseReached(vm_id=record.id, name=record.name, node=record.node, phase=phase,
                          at=at, elapsed_s=elapsed_s(record.guest, at))


async def reach(recorder: Recorder, vm_id: str, phase: GuestPhase) -> VmRecord | None:
    """Record ``phase`` now (unless reached or passed) and announce it."""
    at = utcnow()

    def change(record: VmRecord) -> VmRecord | None:
        guest = with_phase(record.guest, phase, at)
        return None if guest is None else msgspec.structs.replace(record, guest=guest)

    updated = await recorder.patch(vm_id, change)
    if updated is not None and updated.guest.phases.get(phase) == at:
        log.info("guest phase", vm_id=vm_id, phase=phase,
                 elapsed_s=elapsed_s(updated.guest, at))
        await recorder.publish(phase_event(updated, phase))
    return updated


def ssh_endpoint(record: VmRecord, host: str) -> tuple[str, int] | None:
    """Where the node reaches the VM's SSH server: its forward of guest port 22, if any."""
    for forward in record.forwards:
        if forward.guest_port == 22 and forward.host_port > 0:
            return host, forward.host_port
    return None


async def ssh_banner(host: str, port: int, *, timeout_s: float = SSH_PROBE_S) -> bool:
    """True when something on ``host:port`` greets like an SSH server (``SSH-``)."""
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            line = await reader.readline()
        return line.startswith(b"SSH-")
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def wait_for_ssh(host: str, port: int, *, timeout_s: float) -> bool:
    """Poll for an SSH banner until ``timeout_s``; user networking accepts the connection
    before the guest does, so only the banner counts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if await ssh_banner(host, port):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(SSH_POLL_S)


def defined_guest(at: datetime) -> GuestInfo:
    """The guest info of a VM whose domain the create just defined (phase ``defined``)."""
    return GuestInfo(phase="defined", phases={"defined": at})
