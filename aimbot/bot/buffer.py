"""Per-user message buffer: decides when a user's pending IMs become one Dify query.

People often send a thought as several quick IMs; answering each separately wastes Dify calls and
gives muddled replies. A batch is released once the user has been quiet for `window` seconds, or
`max_wait` seconds after its first message, whichever comes first. The release depends only on
time and on what the user's client said about typing, never on message length or content, so no
message (however short) can get stuck.

Typing-aware mode: a client that sends typing notifications tells us more than silence can. While
such a user is composing (typing, or text waiting in their box) the batch waits for the next line,
still bounded by `max_wait`; once they are not, it goes after a short `grace` instead of the whole
window, so a lone IM is not delayed by a window meant for people who send several. A user whose
client never sent a typing notification keeps the plain window: their silence says nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from aimbot.oscar.events import TypingState

BufferMode = Literal["typing", "window"]

TYPING_GRACE: Final = 0.2
"""Seconds a typing-aware user's batch waits after their last IM (or after they stopped typing).

It only has to join IMs that leave the client together: a pasted multi-line text that the client
splits, or lines sent back to back, arrive within milliseconds of each other over one connection.
It also gives the client time to report that the user went on typing the next line, which it does
on the first keystroke. 0.2 s covers both with room for a slow link, and stays inside the 0.3 s a
lone IM may add over the Dify time (the target of `python -m bench latency`). Never longer than
BUFFER_WINDOW: an operator who set the window to 0 wants no waiting at all.
"""

KNOWN_TYPISTS: Final = 10_000
"""How many users the bot remembers as sending typing notifications (least recently heard from
forgotten first): bounded, so that a flood of typing events from new names costs a fixed amount.
A forgotten user only falls back to the plain window until their next typing notification."""


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

    __slots__ = (
        "_changed",
        "_clock",
        "_composing",
        "_first_at",
        "_last_at",
        "_messages",
        "_settled_at",
        "_typist",
        "grace",
        "max_wait",
        "window",
    )

    def __init__(
        self,
        window: float,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        typist: bool = False,
        grace: float = TYPING_GRACE,
    ) -> None:
        if window < 0 or max_wait < window:
            raise ValueError(f"need 0 <= window ({window}) <= max_wait ({max_wait})")
        if grace < 0:
            raise ValueError(f"need grace ({grace}) >= 0")
        self.window = window
        self.max_wait = max_wait
        self.grace = min(grace, window)
        self._clock = clock
        self._messages: list[PendingMessage] = []
        self._first_at = 0.0
        self._last_at = 0.0
        self._typist = typist  # the user's client sends typing notifications
        self._composing = False  # ... and the latest one said text is being written
        self._settled_at = 0.0  # last IM, or the moment they stopped composing
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def composing(self) -> bool:
        return self._composing

    def add(self, message: PendingMessage) -> None:
        now = self._clock()
        if not self._messages:
            self._first_at = now
        self._last_at = now
        self._settled_at = now
        # Sending is the end of what they were writing; the next line (if any) announces itself.
        self._composing = False
        self._messages.append(message)
        self._changed.set()

    def note_typing(self, state: TypingState) -> None:
        """The user's client reported a typing state (only called in typing-aware mode)."""
        composing = state is not TypingState.NONE
        if self._composing and not composing:
            self._settled_at = self._clock()
        self._typist = True
        self._composing = composing
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
        hard_deadline = self._first_at + self.max_wait
        if not self._typist:
            deadline = min(self._last_at + self.window, hard_deadline)
        elif self._composing:
            deadline = hard_deadline
        else:
            deadline = min(self._settled_at + self.grace, hard_deadline)
        return max(0.0, deadline - self._clock())

    async def next_batch(self) -> list[PendingMessage]:
        """Wait until the buffer holds a releasable batch, then return it (never empty)."""
        while True:
            delay = self.seconds_until_ready()
            if delay == 0.0:
                return self.take_all()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._changed.wait()


class Typists:
    """The users known to send typing notifications, least recently heard from first; bounded."""

    __slots__ = ("_capacity", "_keys")

    def __init__(self, capacity: int = KNOWN_TYPISTS) -> None:
        if capacity < 1:
            raise ValueError(f"need capacity ({capacity}) >= 1")
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def heard(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
