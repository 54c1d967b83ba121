"""Per-user message buffer: decides when a user's pending IMs become one Dify query.

People often send a thought as several quick IMs; answering each separately wastes Dify calls and
gives muddled replies. A batch is released once the user has been quiet for `window` seconds, or
`max_wait` seconds after its first message, whichever comes first. The release depends only on
time, never on message length or content, so no message (however short) can get stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PendingMessage:
    inbox_id: int
    text: str
    received_at: float  # wall-clock time (persisted; used for INBOX_MAX_AGE)
    # The store's commit ticket for this IM (Store.commit_ticket): it must resolve before Dify
    # is asked, since a failed commit means the IM was never kept. None: already durable.
    stored: asyncio.Future[None] | None = field(default=None, compare=False)


class MessageBuffer:
    """Holds one user's accepted-but-unsent messages in arrival order."""

    __slots__ = ("_changed", "_clock", "_first_at", "_last_at", "_messages", "max_wait", "window")

    def __init__(
        self, window: float, max_wait: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if window < 0 or max_wait < window:
            raise ValueError(f"need 0 <= window ({window}) <= max_wait ({max_wait})")
        self.window = window
        self.max_wait = max_wait
        self._clock = clock
        self._messages: list[PendingMessage] = []
        self._first_at = 0.0
        self._last_at = 0.0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, message: PendingMessage) -> None:
        now = self._clock()
        if not self._messages:
            self._first_at = now
        self._last_at = now
        self._messages.append(message)
        self._changed.set()

    def take_all(self) -> list[PendingMessage]:
        """Empty the buffer (used by "clear" and shutdown) and return what it held."""
        taken, self._messages = self._messages, []
        self._changed.set()
        return taken

    def seconds_until_ready(self) -> float | None:
        """None when empty; otherwise how long until the batch should be released (>= 0)."""
        if not self._messages:
            return None
        now = self._clock()
        quiet_deadline = self._last_at + self.window
        hard_deadline = self._first_at + self.max_wait
        return max(0.0, min(quiet_deadline, hard_deadline) - now)

    async def next_batch(self) -> list[PendingMessage]:
        """Wait until the buffer holds a releasable batch, then return it (never empty)."""
        while True:
            delay = self.seconds_until_ready()
            if delay == 0.0:
                return self.take_all()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=delay)
