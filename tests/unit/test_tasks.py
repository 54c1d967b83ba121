"""cancel_and_wait: the task we stop is absorbed, a cancellation of our own is not."""

from __future__ import annotations

import asyncio

import pytest

from aimbot.utils.tasks import cancel_and_wait


async def test_the_task_ends_and_its_cancellation_stays_inside() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_caller_cancelled_while_it_waits_ends_cancelled() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await release.wait()  # tidying up takes a while

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0)  # the closer now waits for the task
    closer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert task.done()


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)
