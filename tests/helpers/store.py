"""A write flood for the store's commit pacing, shared by the store's and the handler's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aimbot.store import Store, StoreWriteError


async def one_write_per_turn(
    store: Store, seconds: float, on_commit: Callable[[StoreWriteError | None], None] | None = None
) -> int:
    """A flood: one IM stored per turn of the loop for `seconds`; returns how many, right after
    the last, whose transaction is still open (under the flood, waiting for its pace)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    writes = 0
    while True:
        await store.inbox_add(f"u{writes % 50}", "U", "hi", 1.0)
        if on_commit is not None and store.commit_ticket() is not None:
            store.after_commit(on_commit)  # (the first IM comes alone: committed already)
        writes += 1
        if loop.time() - started >= seconds:
            return writes
        await asyncio.sleep(0)  # the next write in the next turn
