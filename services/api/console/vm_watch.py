"""Ends a console session when its VM stops or is deleted (the proxy reacts to lifecycle events).

A core NATS subscription on the VM's event subjects: JetStream-published events reach core
subscribers too, and a session only cares about what happens while it is open.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from limiquantix.common import subjects
from limiquantix.common.events import VmDeleted, VmStateChanged, event_decoder
from limiquantix.common.vms import VmState

log = structlog.get_logger()

# A console outlives 'stopping' on purpose: the user may watch the guest shut down; the display
# is gone only once the domain is off or the VM is going away.
ENDING_STATES = frozenset({VmState.STOPPED, VmState.DELETING})


def ending_reason(data: bytes) -> str | None:
    """Why the session must end after this event, or None when it may go on."""
    try:
        event = event_decoder.decode(data)
    except msgspec.DecodeError:
        return None
    match event:
        case VmDeleted():
            return "VM deleted"
        case VmStateChanged(state=state) if state in ENDING_STATES:
            return f"VM {state.value}"
    return None


class VmWatch:
    """``async with VmWatch(nc, vm_id, on_end)``: calls ``on_end(reason)`` once, on stop/delete."""

    def __init__(self, nc: Client, vm_id: str, on_end: Callable[[str], None]) -> None:
        self._nc = nc
        self._vm_id = vm_id
        self._on_end = on_end
        self._subscription: Subscription | None = None
        self.reason: str | None = None

    async def _on_message(self, msg: Msg) -> None:
        reason = ending_reason(msg.data)
        if reason is not None and self.reason is None:
            self.reason = reason
            log.info("console ends with its VM", vm_id=self._vm_id, reason=reason)
            self._on_end(reason)

    async def __aenter__(self) -> VmWatch:
        self._subscription = await self._nc.subscribe(
            subjects.vm_events(self._vm_id), cb=self._on_message
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._subscription is not None and not self._nc.is_closed:
            try:
                await self._subscription.unsubscribe()
            except Exception:  # connection draining or gone: nothing left to release
                log.debug("console watch unsubscribe failed", vm_id=self._vm_id)
