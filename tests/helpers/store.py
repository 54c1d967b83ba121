"""A write flood for the store's commit pacing, shared by the store's and the handler's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aimbot.store import Store, StoreWriteError


async def one_write_per_turn(
    store: Store, seconds: float, on_commit: Callable[[StoreWriteError | None], None] | None = None
) -> int:
    """A flood: one IM stored per turn of the loop for `seconds`; returns how many."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    writes = 0
    while loop.time() - started < seconds:
        await store.inbox_add(f"u{writes % 50}", "U", "hi", 1.0)
        if on_commit is not None:
            store.after_commit(on_commit)
        writes += 1
        await asyncio.sleep(0)  # the next write in the next turn
    return writes
