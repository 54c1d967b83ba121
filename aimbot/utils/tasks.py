"""Stopping a task we own without losing our own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and return once it has ended.

    Its CancelledError is expected and absorbed; the caller's own is not. A bare
    `suppress(CancelledError)` around the await absorbs both, and a caller cancelled while it
    waits (a shutdown cancelling a close) would go on as if nobody had asked it to stop.
    Any other error the task ended with is raised, as awaiting it would.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
