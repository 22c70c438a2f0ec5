"""Waiting for something in a test: a poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.01


async def eventually(check: Callable[[], T | Awaitable[T]], *, timeout_s: float = 5.0,
                     interval_s: float = POLL_S, what: str = "the condition") -> T:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that;
    AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s:g} s"
        await asyncio.sleep(interval_s)


def eventually_sync(check: Callable[[], T], *, timeout_s: float = 5.0,
                    interval_s: float = POLL_S, what: str = "the condition") -> T:
    """``eventually`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s:g} s"
        time.sleep(interval_s)
    return result
