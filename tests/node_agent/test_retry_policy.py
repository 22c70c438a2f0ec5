"""The one retry policy of transient failures (libs/common/retry.py), as the node uses it."""

from __future__ import annotations

import itertools
import time

import nats.errors
import pytest

from limiquantix.common.errors import NotFound
from limiquantix.common.retry import Backoff, is_nats_transient, retry_transient

FAST = Backoff(first_s=0.01, max_s=0.05)


def test_backoff_doubles_up_to_its_cap_with_at_most_a_quarter_of_jitter() -> None:
    delays = list(itertools.islice(Backoff(first_s=0.5, max_s=4.0).delays(), 6))
    for delay, base in zip(delays, (0.5, 1, 2, 4, 4, 4), strict=True):
        assert base <= delay <= base * 1.25


async def test_a_transient_failure_is_retried_until_the_call_succeeds() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise nats.errors.TimeoutError
        return "done"

    assert await retry_transient(flaky, what="test", deadline_s=5, backoff=FAST) == "done"
    assert calls == 3


async def test_a_final_failure_is_raised_at_once() -> None:
    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFound("gone")

    with pytest.raises(NotFound):
        await retry_transient(missing, what="test", deadline_s=5, backoff=FAST)
    assert calls == 1 and not is_nats_transient(NotFound("gone"))


async def test_past_the_deadline_the_last_transient_error_is_raised() -> None:
    async def down() -> None:
        raise nats.errors.NoRespondersError

    started = time.monotonic()
    with pytest.raises(nats.errors.NoRespondersError):
        await retry_transient(down, what="test", deadline_s=0.3, backoff=FAST)
    assert 0.3 <= time.monotonic() - started < 1.0


async def test_progress_between_failures_restarts_the_deadline() -> None:
    """A download that keeps getting further is never given up, however long it takes."""
    calls = 0

    async def slow_but_moving() -> str:
        nonlocal calls
        calls += 1
        if calls < 8:
            raise nats.errors.TimeoutError
        return "done"

    result = await retry_transient(slow_but_moving, what="test", deadline_s=0.05,
                                   backoff=Backoff(first_s=0.03, max_s=0.03),
                                   progressed=lambda: True)
    assert result == "done" and calls == 8
