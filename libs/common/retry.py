"""The one retry policy for transient failures: exponential backoff with jitter, up to a deadline.

A failure is transient when the same call can succeed later without anyone changing anything (a
peer restarting, a connection reset, NATS re-electing or reconnecting). The caller says which
errors are transient; everything else is raised at once. Past the deadline the last transient
error is raised, and the caller turns it into the VM's ``error`` as before: a short outage costs
time, a long one still ends (issue 11).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
import nats.js.errors
import structlog

log = structlog.get_logger()

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of 0.5, 1, 2, 4 ... s, capped, each with up to 25 % jitter (peers that failed
    together do not come back together)."""

    first_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.first_s
        while True:
            yield delay * (1 + random.random() / 4)  # jitter, not security
            delay = min(self.max_s, delay * self.factor)


def is_nats_transient(exc: BaseException) -> bool:
    """A NATS failure that goes away on its own: no answer in time, no responder yet,
    reconnecting, JetStream temporarily unavailable, or a stream with no leader for a moment
    (a publish answered "no response from stream" while a cluster elects one)."""
    return isinstance(exc, (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                            nats.errors.ConnectionReconnectingError,
                            nats.errors.OutboundBufferLimitError,
                            nats.js.errors.ServiceUnavailableError,
                            nats.js.errors.NoStreamResponseError, TimeoutError))


async def retry_transient(
    call: Callable[[], Awaitable[T]], *, what: str, deadline_s: float,
    transient: Callable[[BaseException], bool] = is_nats_transient,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[BaseException, int, float], Awaitable[None]] | None = None,
    progressed: Callable[[], bool] | None = None,
    **context: object,
) -> T:
    """``await call()``, again after each transient failure until ``deadline_s`` has passed.

    ``on_retry(error, attempt, delay)`` runs before each wait (e.g. to keep a record alive).
    ``progressed()``: True when the failed attempt still got somewhere (a download received
    bytes); the deadline and the backoff then start again, so only a stalled call gives up.
    """
    give_up_at = time.monotonic() + deadline_s
    delays = backoff.delays()
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            attempt += 1
            if progressed is not None and progressed():
                give_up_at = time.monotonic() + deadline_s
                delays = backoff.delays()
            delay = next(delays)
            left = give_up_at - time.monotonic()
            if not transient(exc) or left <= 0:
                raise
            delay = min(delay, left)
            log.warning("transient failure; retrying", what=what, attempt=attempt,
                        retry_in_s=round(delay, 2), error=f"{type(exc).__name__}: {exc}"[:300],
                        **context)
            if on_retry is not None:
                await on_retry(exc, attempt, delay)
            await asyncio.sleep(delay)
