"""Parts of a streamed answer collected as Dify sends it (STREAM_PARTS, progressive delivery).

The Dify client calls `hear` synchronously from its read loop; the answering task picks the
finished parts up (`take`) between its own awaits and stores and sends them in order. Keeping
the two apart means that a slow store never slows the reading of the stream, and that a part
exists only once it is final (see aimbot/bot/text/_stream.py for when that is).
"""

from __future__ import annotations

import asyncio
import logging

from aimbot.api.sse import TextChunk
from aimbot.bot.text import PartStream

log = logging.getLogger(__name__)


class PartCollector:
    """The finished parts of one answer, and the task id that stops its generation."""

    def __init__(self, stream: PartStream) -> None:
        self.stream = stream
        self.task_id = ""
        self.ready = asyncio.Event()
        self._parts: list[str] = []

    def hear(self, chunk: TextChunk) -> None:
        if chunk.task_id:
            self.task_id = chunk.task_id
        parts = self.stream.feed(chunk.text, replaces=chunk.replaces)
        if parts:
            self._parts.extend(parts)
            self.ready.set()

    def take(self) -> list[str]:
        """The parts finished since the last call, oldest first."""
        parts, self._parts = self._parts, []
        self.ready.clear()
        return parts

    @property
    def started(self) -> bool:
        """Whether any part has been handed out: the answer is then a streamed one."""
        return self.stream.emitted > 0
