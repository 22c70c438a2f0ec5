"""The agent's stop cancels its background tasks until each has ended, even one that lost a
cancel (Python 3.11's ``wait_for`` drops a cancel landing in the step its wait completed)."""

from __future__ import annotations

import asyncio

from limiquantix.node_agent.main import cancel_until_done


async def _loop_that_loses_its_first_cancel(ticks: list[int]) -> None:
    lost = False
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if lost:
                raise
            lost = True  # what a library's wait_for did: the cancel vanished, the loop runs on
        ticks.append(1)


async def test_a_task_that_lost_its_cancel_is_cancelled_again_until_it_ends() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_loop_that_loses_its_first_cancel(ticks))
    calls: list[int] = []
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        await cancel_until_done([task], also=lambda: calls.append(1), every_s=0.05)
    assert task.cancelled()
    assert len(calls) >= 2  # cancelled again (and the guest watchers with it)


async def test_a_single_cancel_does_not_stop_such_a_task() -> None:
    """The failure the helper exists for: one cancel and a wait, as the TaskGroup did."""
    task = asyncio.create_task(_loop_that_loses_its_first_cancel([]))
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()


async def test_tasks_already_ended_need_no_wait() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    calls: list[int] = []
    await cancel_until_done([task], also=lambda: calls.append(1))
    assert calls == [1]
