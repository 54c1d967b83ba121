"""A Dify that misbehaves on purpose: endless answers, streams that break after some text.

Written for the tests of issue 13 (hostile peers). It speaks just enough of the Service API for
the bot (``POST /chat-messages`` as SSE, ``POST /chat-messages/{task_id}/stop``) over a real
loopback socket, and records what the bot did to it: how many bytes of answer the bot let it
write, whether the bot stopped the task, how many chat turns were asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TASK_ID = "task-hostile-1"
CONVERSATION_ID = "conv-hostile-1"


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@dataclass
class HostileDify:
    """``answer_bytes`` of "message" events per turn (then message_end), or ``break_after``
    bytes of them and then the connection is cut."""

    answer_bytes: int = 50 * 1024 * 1024
    break_after: int | None = None
    chunk_chars: int = 16 * 1024
    chunk_text: str = "x"
    written: int = 0  # answer bytes the client accepted, all turns together
    finished: int = 0  # turns whose whole answer was written
    chat_turns: int = 0
    stops: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.chat_turns += 1
        if body.get("response_mode") == "blocking":
            return await self._blocking(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"task_id": TASK_ID, "conversation_id": CONVERSATION_ID, "message_id": "m1"}
        chunk = frame({"event": "message", **base, "answer": self.chunk_text * self.chunk_chars})
        limit = self.answer_bytes if self.break_after is None else self.break_after
        sent = 0
        try:
            while sent < limit:
                await response.write(chunk)
                sent += len(chunk)
                self.written += len(chunk)
            if self.break_after is not None:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(frame({"event": "message_end", **base, "metadata": {}}))
            self.finished += 1
        except (ConnectionError, RuntimeError):
            pass  # the bot hung up: exactly what a bounded reader does
        return response

    async def _blocking(self, request: web.Request) -> web.StreamResponse:
        """One JSON document whose "answer" never ends (answer_bytes of it, then the rest)."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = (self.chunk_text * self.chunk_chars).encode()
        sent = 0
        try:
            await response.write(b'{"event": "message", "answer": "')
            while sent < self.answer_bytes:
                await response.write(chunk)
                sent += len(chunk)
                self.written += len(chunk)
            await response.write(f'", "conversation_id": "{CONVERSATION_ID}"}}'.encode())
            self.finished += 1
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def _stop(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.stops.append((request.match_info["task_id"], str(body.get("user"))))
        self.stopped.set()
        return web.json_response({"result": "success"})


@contextlib.asynccontextmanager
async def hostile_dify(**options: Any) -> AsyncIterator[HostileDify]:
    dify = HostileDify(**options)
    app = web.Application()
    app.router.add_post("/v1/chat-messages", dify._chat)
    app.router.add_post("/v1/chat-messages/{task_id}/stop", dify._stop)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    dify.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield dify
    finally:
        await runner.cleanup()
