"""Fault injection for tests ONLY: ``LQ_FAILPOINTS="before_ack=sleep:5,before_start=error"``.

A failpoint is a named place in the agent's work (``before_ack``, ``before_define``,
``before_start``, ``after_overlay``) where a test makes the agent pause (``sleep:SECONDS``, so it
can be killed with a command in flight), fail (``error``: the step raises) or crash (``exit``:
the process dies at once, as on a power cut). Production leaves the setting empty, and then
:meth:`Failpoints.hit` does nothing.
"""

from __future__ import annotations

import asyncio
import os

import structlog

from limiquantix.node_agent.errors import FailpointTriggered

log = structlog.get_logger()


class Failpoints:
    """The failpoints parsed from the setting, by name."""

    def __init__(self, spec: str) -> None:
        self._actions: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, action = item.partition("=")
            if not action:
                raise ValueError(f"failpoint {item!r} needs an action (sleep:S, error, exit)")
            self._actions[name.strip()] = action.strip()

    def __bool__(self) -> bool:
        return bool(self._actions)

    async def hit(self, name: str) -> None:
        """Run the action configured for ``name``, if any."""
        action = self._actions.get(name)
        if action is None:
            return
        log.warning("failpoint hit", failpoint=name, action=action)
        kind, _, arg = action.partition(":")
        match kind:
            case "sleep":
                await asyncio.sleep(float(arg or "1"))
            case "error":
                raise FailpointTriggered(f"failpoint {name} triggered", failpoint=name)
            case "exit":
                os._exit(int(arg or "137"))
            case _:
                raise ValueError(f"unknown failpoint action {action!r} for {name}")
