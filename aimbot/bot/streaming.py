"""Parts of a streamed answer, stored and sent as Dify writes them (STREAM_PARTS).

The Dify client calls `hear` synchronously from its read loop, once per read from the network
with all the text of that read (an answer whose text all comes in the read that completes it is
never heard: it is rendered whole, with its real part count). Finished parts queue here and one
drain task stores and sends them in order, started only when a part exists (most answers fit
one IM and never need it). Keeping the two apart means a slow store never slows the reading
of the stream, and a part exists only once it is final (aimbot/bot/text/_stream.py says when).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aimbot.api.sse import TextChunk
from aimbot.bot.text import PartStream

log = logging.getLogger(__name__)


class PartCollector:
    """The finished parts of one answer, the drain that sends them, and the task id that
    stops the generation."""

    def __init__(
        self,
        make_stream: Callable[[], PartStream],
        send: Callable[[str], Awaitable[None]],
        name: str,
    ) -> None:
        # The stream is made when the first text is heard: an answer read whole never is.
        self._make_stream = make_stream
        self._stream: PartStream | None = None
        self.task_id = ""
        self._send = send
        self._name = name
        self._parts: deque[str] = deque()
        self._drain: asyncio.Task[None] | None = None

    @property
    def stream(self) -> PartStream:
        if self._stream is None:
            self._stream = self._make_stream()
        return self._stream

    @property
    def emitted(self) -> int:
        """Parts made so far."""
        return 0 if self._stream is None else self._stream.emitted

    @property
    def started(self) -> bool:
        """Whether any part was made: the rest of the answer is then numbered on from it."""
        return self.emitted > 0

    def hear(self, chunk: TextChunk) -> None:
        if chunk.task_id:
            self.task_id = chunk.task_id
        parts = self.stream.feed(chunk.text, replaces=chunk.replaces)
        if parts:
            self._parts.extend(parts)
            if self._drain is None:
                self._drain = asyncio.create_task(self._drained(), name=self._name)

    def abandon(self) -> None:
        """Send nothing that is not already being sent ("clear", shutdown)."""
        self._parts.clear()

    async def wait(self) -> None:
        """Until every part made so far has been handed over (a cancel does not cut one off)."""
        while self._drain is not None:
            await asyncio.shield(self._drain)

    async def _drained(self) -> None:
        try:
            while self._parts:
                await self._send(self._parts.popleft())
        finally:
            self._drain = None
