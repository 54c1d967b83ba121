"""A local stand-in for a Dify chat app's Service API, over real HTTP (aiohttp.web).

The demo mode, the test suite and the benchmarks need a Dify that behaves like the real one —
same status codes, same error envelopes, same SSE framing with pings — but that can also be
told to fail on cue (a run of 429s, an HTML 502, an ``error`` event mid-stream, a stream that
only pings, like Dify's 2026 hang on unknown conversations). Its default answer makes the
conversation memory visible, so a human in the demo can see that turns are remembered.

Built to be fast: with no latency configured nothing sleeps, and every request does O(1) work,
so benchmarks can push thousands of requests a second through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import math
import re
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web

from aimbot.utils import eventloop

logger = logging.getLogger(__name__)

DEFAULT_API_KEY = "app-demo-key"
DEFAULT_PORT = 5001
PING = b"event: ping\n\n"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"

# Documented texts (see docs/dify-api.md §0, §4), so clients meet the real wording.
MSG_AUTH_HEADER = "Authorization header must be provided and start with 'Bearer'"
MSG_AUTH_SCHEME = "Authorization scheme must be 'Bearer'"
MSG_AUTH_INVALID = "Access token is invalid"
MSG_BAD_JSON = "Invalid JSON payload received or JSON payload is empty."
MSG_NO_USER = "Arg user must be provided."
MSG_NO_CONVERSATION = "Conversation Not Exists."
MSG_BAD_UUID = "conversation_id must be a valid UUID"
MSG_AGENT_BLOCKING = "Agent Chat App does not support blocking mode"
MSG_INTERNAL = (
    "The server encountered an internal error and was unable to complete your request. Either "
    "the server is overloaded or there is an error in the application."
)
MSG_UNAVAILABLE = (
    "The server is temporarily unable to service your request due to maintenance downtime or "
    "capacity problems. Please try again later."
)
MSG_MID_STREAM = "[openai] Error: Read timed out. (read timeout=60)"

_HTML_PAGES = {
    502: "502 Bad Gateway",
    504: "504 Gateway Time-out",
}


@dataclass(frozen=True)
class AnswerContext:
    """What an answer function gets; ``turn`` counts from 1 within the conversation."""

    user: str
    query: str
    conversation_id: str
    turn: int
    inputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


AnswerFn = Callable[[AnswerContext], str | Awaitable[str]]


def default_answer(ctx: AnswerContext) -> str:
    """Echo with the turn number, so a human can see the conversation is remembered."""
    return (
        f"you said {ctx.query!r}; this is turn {ctx.turn} of conversation {ctx.conversation_id[:8]}"
    )


@dataclass(frozen=True)
class ChatRequestRecord:
    """One authenticated chat request as received (before any fault or validation verdict)."""

    user: str
    query: str
    conversation_id: str | None
    response_mode: str | None
    time: float
    inputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class ConversationRecord:
    """Server-side conversation state; mutable because turns and deletion happen over time."""

    id: str
    user: str
    turns: int = 0
    deleted: bool = False


@dataclass(frozen=True)
class StopRecord:
    task_id: str
    user: str
    matched: bool  # False when the task was unknown or belonged to another user (ignored)


@dataclass(frozen=True)
class _StatusFault:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class _MidStreamFault:
    code: str
    status: int
    message: str


@dataclass(frozen=True)
class _PingOnlyFault:
    pass


@dataclass(frozen=True)
class _LingerFault:
    pass


@dataclass(frozen=True)
class _DropFault:
    pass


class ScriptedStream:
    """A streamed answer written piece by piece, for progressive delivery's tests and bench.

    Each piece is one ``message`` event. Before every piece after the first the stand-in waits
    for ``release()`` (tests: the test decides, nothing sleeps) or, with ``pause``, that many
    seconds (benchmarks). ``error_after=n``: an ``error`` event follows the n-th piece instead
    of the rest. A stop request ends it with ``message_end`` at once, as Dify does. ``sent_at``
    holds when each piece was written (time.perf_counter()), ``ended`` is set once the stream's
    last event (``message_end`` or ``error``) is written, ``end_sent`` says it was message_end.
    """

    def __init__(
        self,
        pieces: Sequence[str],
        *,
        pause: float | None = None,
        error_after: int | None = None,
    ) -> None:
        if not pieces:
            raise ValueError("a scripted stream needs at least one piece")
        if pause is not None and not 0 <= pause < math.inf:
            raise ValueError(f"pause must be a finite number >= 0, got {pause}")
        self.pieces = tuple(pieces)
        self.pause = pause
        self.error_after = error_after
        self.sent_at: list[float] = []
        self.ended = asyncio.Event()
        self.end_sent = False
        self.stopped = False
        self._released = 0
        self._changed = asyncio.Condition()

    @property
    def sent(self) -> int:
        return len(self.sent_at)

    async def release(self) -> None:
        """Let the next piece go."""
        async with self._changed:
            self._released += 1
            self._changed.notify_all()

    async def wait_sent(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with self._changed:
            async with asyncio.timeout(timeout):
                await self._changed.wait_for(lambda: self.sent >= count)

    async def _written(self) -> None:
        async with self._changed:
            self.sent_at.append(time.perf_counter())
            self._changed.notify_all()

    async def _gate(
        self, index: int, flight: _InFlight, ping: Callable[[], Awaitable[None]], every: float
    ) -> None:
        """Until piece `index` may go: released, paused for, or the generation stopped."""
        if self.pause is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.pause):
                    await flight.wake.wait()
            return
        while not flight.wake.is_set():
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every):
                        await self._changed.wait_for(lambda: self._released >= index)
                if self._released >= index or flight.wake.is_set():
                    return
            await ping()  # also notices a client that went away


@dataclass(frozen=True)
class _ScriptedFault:
    script: ScriptedStream


_Fault = (
    _StatusFault | _MidStreamFault | _PingOnlyFault | _LingerFault | _DropFault | _ScriptedFault
)


class _InFlight:
    """A chat being answered: stop() and server shutdown interrupt its waits through ``wake``."""

    __slots__ = ("stopped", "user", "wake")

    def __init__(self, user: str) -> None:
        self.user = user
        self.wake = asyncio.Event()
        self.stopped = False


class _Reply(Exception):
    """Raised inside handlers to answer with a Dify error envelope at once."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def envelope(status: int, code: str, message: str, **headers: str) -> web.Response:
    """Dify's error body: ``{"code", "message", "status"}`` with status mirrored."""
    return web.Response(
        status=status,
        body=_dumps({"code": code, "message": message, "status": status}),
        content_type="application/json",
        headers=headers or None,
    )


def _dumps(payload: Any) -> bytes:
    # Raw UTF-8 and compact separators, as current Dify (orjson) sends them.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "error"


def _html_page(status: int) -> bytes:
    title = _HTML_PAGES.get(status, f"{status} Error")
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


class DifyStandIn:
    """The stand-in server. Start it (or ``async with``), point a client at ``url``."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        agent_mode: bool = False,
        max_concurrency: int = 0,
        ping_interval: float = 10.0,
        answer: AnswerFn | None = None,
        record_requests: bool = True,
    ) -> None:
        if not api_key or any(c.isspace() for c in api_key):
            raise ValueError("api_key must be non-empty and contain no whitespace")
        if max_concurrency < 0:
            raise ValueError(f"max_concurrency must be >= 0, got {max_concurrency}")
        if not ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0, got {ping_interval}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        self.api_key = api_key
        self.host = host
        self.port = port
        self.agent_mode = agent_mode
        self.max_concurrency = max_concurrency
        self.ping_interval = ping_interval
        self.record_requests = record_requests
        self.app_id = str(uuid.uuid4())
        # Public so that a test can swap the behaviour of a running server between turns.
        self.answer: AnswerFn = answer or default_answer
        self._key_bytes = api_key.encode()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._faults: deque[_Fault] = deque()
        self._latency_all = 0.0
        self._latency_by_user: dict[str, float] = {}
        self._down = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight: dict[str, _InFlight] = {}
        self._conversations: dict[str, ConversationRecord] = {}
        self._request_count = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.chat_requests: list[ChatRequestRecord] = []
        self.stop_requests: list[StopRecord] = []
        # Dify ~0.8-0.11 answered DELETE with 200 and a body instead of today's bare 204.
        self.legacy_delete_reply = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL ending in /v1, like DIFY_API_URL."""
        if self._url is None:
            raise RuntimeError("the Dify stand-in is not started")
        return self._url

    @property
    def conversations(self) -> Mapping[str, ConversationRecord]:
        return MappingProxyType(self._conversations)

    @property
    def request_count(self) -> int:
        """Chat requests seen (counted even when ``record_requests`` is off)."""
        return self._request_count

    @property
    def active_requests(self) -> int:
        return self._active

    def active_tasks(self) -> list[tuple[str, str]]:
        """(task_id, user) of the chats being answered now — what a stop request names."""
        return [(task_id, flight.user) for task_id, flight in self._inflight.items()]

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/chat-messages", self._chat)
        app.router.add_post("/v1/chat-messages/{task_id}/stop", self._stop_task)
        app.router.add_delete("/v1/conversations/{conversation_id}", self._delete_conversation)
        app.router.add_get("/v1/parameters", self._parameters)
        app.router.add_get("/v1/info", self._info)
        app.router.add_get("/v1/meta", self._meta)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the Dify stand-in is already started")
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._url = f"http://{host}:{port}/v1"
        logger.info("Dify stand-in listening on %s", self._url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._url = None
        for flight in self._inflight.values():
            flight.wake.set()  # ping-only streams and latencies end now, not at shutdown_timeout
        await runner.cleanup()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()
        logger.info("Dify stand-in stopped")

    async def __aenter__(self) -> DifyStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ scripting

    def script_statuses(self, *statuses: int, retry_after: float | None = None) -> None:
        """The next chat requests answer with these statuses, in order, with Dify's bodies.

        502 and 504 come as a proxy's HTML page (that is what they are in real life); with
        ``retry_after`` each reply also carries a Retry-After header, as a proxy might send.
        """
        for status in statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"scripted status must be 4xx or 5xx, got {status}")
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            self._faults.append(self._status_fault(status, headers))

    def script_error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next ``times`` chat requests answer with exactly this Dify error envelope."""
        body = _dumps({"code": code, "message": message, "status": status})
        for _ in range(_positive_times(times)):
            self._faults.append(
                _StatusFault(
                    status, body, "application/json", MappingProxyType(dict(headers or {}))
                )
            )

    def script_too_many_requests_400(self, times: int = 1) -> None:
        """The concurrency limit as some Dify versions send it: 400 ``invalid_param``."""
        self.script_error(400, "invalid_param", self._too_many_message(), times=times)

    def non_json_502(self, times: int = 1) -> None:
        for _ in range(_positive_times(times)):
            self._faults.append(_StatusFault(502, _html_page(502), "text/html", {}))

    def fail_mid_stream(
        self,
        times: int = 1,
        *,
        code: str = "completion_request_error",
        status: int = 400,
        message: str = MSG_MID_STREAM,
    ) -> None:
        """Streams send some chunks then an ``error`` event; blocking gets the same as HTTP."""
        for _ in range(_positive_times(times)):
            self._faults.append(_MidStreamFault(code, status, message))

    def ping_only(self, times: int = 1) -> None:
        """Streams ping forever and never answer (blocking: no byte at all), until disconnect."""
        for _ in range(_positive_times(times)):
            self._faults.append(_PingOnlyFault())

    def linger_after_end(self, times: int = 1) -> None:
        """Streams answer fully, then keep the connection open with pings (trailing events)."""
        for _ in range(_positive_times(times)):
            self._faults.append(_LingerFault())

    def drop_mid_stream(self, times: int = 1) -> None:
        """Streams send some chunks, then the connection is cut (a proxy or pod dying)."""
        for _ in range(_positive_times(times)):
            self._faults.append(_DropFault())

    def script_raw(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next chat requests get exactly these bytes: for replies Dify itself never sends
        (a captive portal's 200 page, a truncated or garbled stream, a JSON reply to a stream)."""
        if not 100 <= status <= 599:
            raise ValueError(f"status must be 100..599, got {status}")
        fault = _StatusFault(status, body, content_type, MappingProxyType(dict(headers or {})))
        for _ in range(_positive_times(times)):
            self._faults.append(fault)

    def script_stream(self, script: ScriptedStream) -> ScriptedStream:
        """The next chat request is answered by this scripted stream (blocking: all at once)."""
        self._faults.append(_ScriptedFault(script))
        return script

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def set_latency(self, seconds: float, *, user: str | None = None) -> None:
        """Think this long before answering (per user, or for everyone); 0 clears it."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"latency must be a finite number >= 0, got {seconds}")
        if user is None:
            self._latency_all = seconds
        elif seconds:
            self._latency_by_user[user] = seconds
        else:
            self._latency_by_user.pop(user, None)

    def set_down(self, down: bool) -> None:
        """While down, every chat request gets 503 (faults stay queued for afterwards)."""
        self._down = down

    async def wait_requests(self, n: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once ``n`` chat requests have arrived in total; TimeoutError otherwise."""
        if self._request_count >= n:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise TimeoutError(
                f"the Dify stand-in saw {self._request_count} of {n} chat requests "
                f"within {timeout:g} s"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once no chat is being answered (e.g. after a client walked away)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            raise TimeoutError(
                f"the Dify stand-in still answers {self._active} chats after {timeout:g} s"
            ) from None

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route_error = request.match_info.http_exception
        if route_error is not None:
            # Flask routes before it authenticates: unknown paths are 404 whatever the key.
            return envelope(
                route_error.status, _snake(route_error.reason), route_error.reason or "error"
            )
        denied = self._check_auth(request.headers.get("Authorization"))
        if denied is not None:
            return envelope(
                401, "unauthorized", denied, **{"WWW-Authenticate": 'Bearer realm="api"'}
            )
        try:
            return await handler(request)
        except _Reply as reply:
            return reply.response
        except web.HTTPException as e:
            return envelope(e.status, _snake(e.reason), e.reason or "error")

    def _check_auth(self, header: str | None) -> str | None:
        if not header or " " not in header:
            return MSG_AUTH_HEADER
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return MSG_AUTH_SCHEME
        if not hmac.compare_digest(token.strip().encode(), self._key_bytes):
            return MSG_AUTH_INVALID
        return None

    @staticmethod
    async def _json_object(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise _Reply(envelope(400, "bad_request", MSG_BAD_JSON))
        return payload

    def _status_fault(self, status: int, headers: Mapping[str, str]) -> _StatusFault:
        frozen = MappingProxyType(dict(headers))
        if status in _HTML_PAGES:
            return _StatusFault(status, _html_page(status), "text/html", frozen)
        code, message = {
            400: ("app_unavailable", "App unavailable, please check your app configurations."),
            401: ("unauthorized", MSG_AUTH_INVALID),
            403: ("forbidden", "The app's API service has been disabled."),
            404: ("not_found", MSG_NO_CONVERSATION),
            429: ("too_many_requests", self._too_many_message()),
            500: ("internal_server_error", MSG_INTERNAL),
            503: ("service_unavailable", MSG_UNAVAILABLE),
        }.get(status, (f"http_{status}", f"Scripted HTTP {status}."))
        if status == 401:
            frozen = MappingProxyType({**frozen, "WWW-Authenticate": 'Bearer realm="api"'})
        body = _dumps({"code": code, "message": message, "status": status})
        return _StatusFault(status, body, "application/json", frozen)

    def _too_many_message(self) -> str:
        return (
            "Too many requests. Please try again later. The current maximum concurrent "
            f"requests allowed for {self.app_id} is {self.max_concurrency or 1}."
        )

    def _note_request(self, record: ChatRequestRecord) -> None:
        self._request_count += 1
        if self.record_requests:
            self.chat_requests.append(record)
        if self._waiters:
            for n, waiter in self._waiters:
                if n <= self._request_count and not waiter.done():
                    waiter.set_result(None)

    def _latency_for(self, user: str) -> float:
        if self._latency_by_user:
            return self._latency_by_user.get(user, self._latency_all)
        return self._latency_all

    # ------------------------------------------------------------------ chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_object(request)
        self._note_request(_record_of(body))
        fields = _validate_chat(body)
        user, query, streaming = fields.user, fields.query, fields.streaming

        if self._down:
            return envelope(503, "service_unavailable", MSG_UNAVAILABLE)
        if self.agent_mode and not streaming:
            return envelope(400, "invalid_param", MSG_AGENT_BLOCKING)
        fault = self._faults.popleft() if self._faults else None
        if isinstance(fault, _StatusFault):
            return web.Response(
                status=fault.status,
                body=fault.body,
                content_type=fault.content_type,
                headers=fault.headers or None,
            )
        if self.max_concurrency and self._active >= self.max_concurrency:
            return envelope(429, "too_many_requests", self._too_many_message())
        conversation = self._conversation_for(user, fields.conversation_id)
        conversation.turns += 1
        ctx = AnswerContext(user, query, conversation.id, conversation.turns, fields.inputs)

        task_id = str(uuid.uuid4())
        flight = _InFlight(user)
        self._inflight[task_id] = flight
        self._active += 1
        self._idle.clear()
        try:
            if streaming:
                return await self._stream(request, ctx, task_id, flight, fault)
            return await self._blocking(request, ctx, task_id, flight, fault)
        finally:
            self._active -= 1
            del self._inflight[task_id]
            if not self._active:
                self._idle.set()

    def _conversation_for(self, user: str, conversation_id: str) -> ConversationRecord:
        if not conversation_id:
            record = ConversationRecord(str(uuid.uuid4()), user)
            self._conversations[record.id] = record
            return record
        record_or_none = self._conversations.get(conversation_id)
        if record_or_none is None or record_or_none.deleted or record_or_none.user != user:
            raise _Reply(envelope(404, "not_found", MSG_NO_CONVERSATION))
        return record_or_none

    async def _blocking(
        self,
        request: web.Request,
        ctx: AnswerContext,
        task_id: str,
        flight: _InFlight,
        fault: _Fault | None,
    ) -> web.StreamResponse:
        if isinstance(fault, _PingOnlyFault):
            await self._hang(request, flight, None)
            return envelope(503, "service_unavailable", MSG_UNAVAILABLE)  # only seen at shutdown
        latency = self._latency_for(ctx.user)
        if latency:
            await self._think(latency, flight, None)
        if isinstance(fault, _MidStreamFault):
            # Blocking mode re-raises the pipeline's error as an HTTP error.
            return envelope(fault.status, fault.code, fault.message)
        text = "".join(fault.script.pieces) if isinstance(fault, _ScriptedFault) else None
        text = text if text is not None else await self._compose(ctx)
        if text is None:
            return envelope(500, "internal_server_error", MSG_INTERNAL)
        message_id = str(uuid.uuid4())
        return web.Response(
            body=_dumps(
                {
                    "event": "message",
                    "task_id": task_id,
                    "id": message_id,
                    "message_id": message_id,
                    "conversation_id": ctx.conversation_id,
                    "mode": "agent-chat" if self.agent_mode else "chat",
                    "answer": text,
                    "metadata": {"usage": _usage(ctx.query, text), "retriever_resources": []},
                    "created_at": int(time.time()),
                }
            ),
            content_type="application/json",
        )

    async def _stream(
        self,
        request: web.Request,
        ctx: AnswerContext,
        task_id: str,
        flight: _InFlight,
        fault: _Fault | None,
    ) -> web.StreamResponse:
        latency = self._latency_for(ctx.user)
        message_id = str(uuid.uuid4())
        base = {
            "task_id": task_id,
            "id": message_id,
            "message_id": message_id,
            "conversation_id": ctx.conversation_id,
            "created_at": int(time.time()),
        }
        if not latency and not isinstance(
            fault, _PingOnlyFault | _LingerFault | _DropFault | _ScriptedFault
        ):
            # Nothing to wait for: the same bytes in one write (benchmarks push thousands of
            # these a second, and every extra send costs as much as the rest of the work).
            body = PING + await self._stream_body(ctx, base, fault)
            return web.Response(body=body, headers={"Content-Type": SSE_CONTENT_TYPE})
        response = web.StreamResponse(headers={"Content-Type": SSE_CONTENT_TYPE})
        await response.prepare(request)
        try:
            await response.write(PING)  # newer Dify pings before any data
            if isinstance(fault, _PingOnlyFault):
                await self._hang(request, flight, response)
                return response
            await self._think(latency, flight, response)
            if flight.stopped:
                await response.write(_frame({"event": "message_end", **base, "metadata": {}}))
                return response
            if isinstance(fault, _ScriptedFault):
                await self._stream_scripted(request, fault.script, base, flight, response)
                return response
            body = await self._stream_body(ctx, base, fault)
            if isinstance(fault, _DropFault):
                await response.write(body[: len(body) // 2])
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write(body)
            if isinstance(fault, _LingerFault):
                await self._hang(request, flight, response)
        except (ConnectionResetError, ConnectionError) as e:
            logger.debug("stand-in client went away mid-stream (%s)", e)
        return response

    async def _stream_scripted(
        self,
        request: web.Request,
        script: ScriptedStream,
        base: Mapping[str, Any],
        flight: _InFlight,
        response: web.StreamResponse,
    ) -> None:
        async def ping() -> None:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client went away")
            await response.write(PING)

        try:
            for index, piece in enumerate(script.pieces):
                if index:
                    await script._gate(index, flight, ping, self.ping_interval)
                if flight.stopped:
                    script.stopped = True
                    break
                await response.write(_frame({"event": "message", **base, "answer": piece}))
                await script._written()
                if script.error_after == index + 1:
                    error = {
                        "event": "error",
                        "conversation_id": base["conversation_id"],
                        "message_id": base["message_id"],
                        "code": "completion_request_error",
                        "status": 400,
                        "message": MSG_MID_STREAM,
                    }
                    await response.write(_frame(error))
                    return
            await response.write(_frame({"event": "message_end", **base, "metadata": {}}))
            script.end_sent = True
        finally:
            script.ended.set()  # also when the client went away: nothing more will be written

    async def _stream_body(
        self, ctx: AnswerContext, base: Mapping[str, Any], fault: _Fault | None
    ) -> bytes:
        """The answer's events: chunks then message_end, or chunks then an ``error``."""
        text = await self._compose(ctx)
        frames: list[bytes] = []
        if self.agent_mode:
            frames.append(_frame(_agent_thought(base)))
        kind = "agent_message" if self.agent_mode else "message"
        if text is None:
            fault = _MidStreamFault("internal_server_error", 500, MSG_INTERNAL)
            text = ""
        chunks = _split(text)
        if isinstance(fault, _MidStreamFault):
            for chunk in chunks[: max(1, len(chunks) // 2)]:
                frames.append(_frame({"event": kind, **base, "answer": chunk}))
            frames.append(
                _frame(
                    {
                        "event": "error",
                        "conversation_id": ctx.conversation_id,
                        "message_id": base["message_id"],
                        "created_at": base["created_at"],
                        "code": fault.code,
                        "status": fault.status,
                        "message": fault.message,
                    }
                )
            )
        else:
            for chunk in chunks:
                frames.append(_frame({"event": kind, **base, "answer": chunk}))
            metadata = {"usage": _usage(ctx.query, text), "retriever_resources": []}
            frames.append(_frame({"event": "message_end", **base, "metadata": metadata}))
        return b"".join(frames)

    async def _compose(self, ctx: AnswerContext) -> str | None:
        """The answer text, or None when the answer function crashed (Dify's 500 path)."""
        try:
            result = self.answer(ctx)
            text: object = await result if inspect.isawaitable(result) else result
        except Exception:
            logger.exception("stand-in answer function failed")
            return None
        if not isinstance(text, str):  # a test's answer function may be untyped
            logger.error("stand-in answer function returned %s, not str", type(text).__name__)
            return None
        return text

    async def _think(
        self, seconds: float, flight: _InFlight, response: web.StreamResponse | None
    ) -> None:
        """Wait ``seconds`` (pinging every ping_interval when streaming); stop() cuts it short."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not flight.wake.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, self.ping_interval)):
                    await flight.wake.wait()
            if response is not None and not flight.wake.is_set() and loop.time() < deadline:
                await response.write(PING)

    async def _hang(
        self, request: web.Request, flight: _InFlight, response: web.StreamResponse | None
    ) -> None:
        """Never answer: ping (when streaming) until the client leaves or the server stops."""
        while not flight.wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_interval):
                    await flight.wake.wait()
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            if response is not None and not flight.wake.is_set():
                await response.write(PING)

    # ------------------------------------------------------------------ other endpoints

    async def _stop_task(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_object(request)
        user = body.get("user")
        if not isinstance(user, str) or not user:
            return envelope(400, "invalid_param", MSG_NO_USER)
        task_id = request.match_info["task_id"]
        flight = self._inflight.get(task_id)
        matched = flight is not None and flight.user == user
        if flight is not None and matched:
            flight.stopped = True
            flight.wake.set()
        self.stop_requests.append(StopRecord(task_id, user, matched))
        return web.json_response({"result": "success"})

    async def _delete_conversation(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_object(request)
        user = body.get("user")
        if user is None:
            user = "DEFAULT-USER"  # Dify's shared pseudo-user when none is given
        if not isinstance(user, str):
            return envelope(400, "invalid_param", "user must be a string")
        record = self._conversations.get(request.match_info["conversation_id"])
        if record is None or record.deleted or record.user != user:
            return envelope(404, "not_found", MSG_NO_CONVERSATION)
        record.deleted = True
        if self.legacy_delete_reply:
            return web.json_response({"result": "success"})
        return web.Response(status=204)

    async def _parameters(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "opening_statement": "Hello from the aimbot Dify stand-in.",
                "suggested_questions": [],
                "suggested_questions_after_answer": {"enabled": False},
                "speech_to_text": {"enabled": False},
                "text_to_speech": {"enabled": False},
                "retriever_resource": {"enabled": False},
                "annotation_reply": {"enabled": False},
                "more_like_this": {"enabled": False},
                "user_input_form": [],
                "sensitive_word_avoidance": {"enabled": False},
                "file_upload": {"image": {"enabled": False}},
                "system_parameters": {"file_size_limit": 15, "image_file_size_limit": 10},
            }
        )

    async def _info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "name": "aimbot Dify stand-in",
                "description": "A local stand-in for a Dify chat app (demo, tests, benchmarks).",
                "tags": [],
                "mode": "agent-chat" if self.agent_mode else "chat",
                "author_name": "aimbot",
            }
        )

    async def _meta(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"tool_icons": {}})


_NO_INPUTS: Mapping[str, Any] = MappingProxyType({})
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


@dataclass(frozen=True)
class _ChatFields:
    user: str
    query: str
    inputs: Mapping[str, Any]
    streaming: bool  # Dify: any mode but "streaming", even an absent one, means blocking
    conversation_id: str  # "" starts a new conversation


def _record_of(body: Mapping[str, Any]) -> ChatRequestRecord:
    """What arrived, field by field, even when it is about to be rejected."""
    user, query, mode = body.get("user"), body.get("query"), body.get("response_mode")
    conversation_id, inputs = body.get("conversation_id"), body.get("inputs")
    return ChatRequestRecord(
        user=user if isinstance(user, str) else "",
        query=query if isinstance(query, str) else "",
        conversation_id=conversation_id if isinstance(conversation_id, str) else None,
        response_mode=mode if isinstance(mode, str) else None,
        time=time.monotonic(),
        inputs=MappingProxyType(dict(inputs)) if isinstance(inputs, dict) else _NO_INPUTS,
    )


def _validate_chat(body: Mapping[str, Any]) -> _ChatFields:
    """Dify's checks, in Dify's order: the ``user`` decorator first, then the payload model."""
    user = body.get("user")
    if not isinstance(user, str) or not user:
        raise _Reply(envelope(400, "invalid_param", MSG_NO_USER))
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise _Reply(envelope(400, "invalid_param", "inputs: Field required (a JSON object)"))
    query = body.get("query")
    if not isinstance(query, str):
        raise _Reply(envelope(400, "invalid_param", "query: Field required (a string)"))
    mode = body.get("response_mode")
    if mode is not None and mode not in ("streaming", "blocking"):
        raise _Reply(
            envelope(
                400, "invalid_param", "response_mode: Input should be 'streaming' or 'blocking'"
            )
        )
    conversation_id = body.get("conversation_id")
    if conversation_id is None:
        conversation_id = ""
    if not isinstance(conversation_id, str):
        raise _Reply(envelope(400, "invalid_param", MSG_BAD_UUID))
    conversation_id = conversation_id.strip()
    if conversation_id and not _UUID.match(conversation_id):
        raise _Reply(envelope(400, "invalid_param", MSG_BAD_UUID))
    return _ChatFields(
        user=user,
        query=query,
        inputs=MappingProxyType(inputs),
        streaming=mode == "streaming",
        conversation_id=conversation_id,
    )


def _frame(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


def _split(text: str, pieces: int = 4) -> list[str]:
    """A few chunks, as an LLM stream would deliver them (never splits a code point)."""
    if len(text) < 2 * pieces:
        return [text]
    size = math.ceil(len(text) / pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _agent_thought(base: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event": "agent_thought",
        **base,
        "id": str(uuid.uuid4()),
        "position": 1,
        "thought": "",
        "observation": "",
        "tool": "",
        "tool_labels": {},
        "tool_input": "",
        "message_files": [],
    }


def _usage(query: str, answer: str) -> dict[str, Any]:
    prompt_tokens = len(query) // 4 + 1
    completion_tokens = len(answer) // 4 + 1
    return {
        "prompt_tokens": prompt_tokens,
        "prompt_unit_price": "0",
        "prompt_price_unit": "0.000001",
        "prompt_price": "0",
        "completion_tokens": completion_tokens,
        "completion_unit_price": "0",
        "completion_price_unit": "0.000001",
        "completion_price": "0",
        "total_tokens": prompt_tokens + completion_tokens,
        "total_price": "0",
        "currency": "USD",
        "latency": 0.0,
    }


def _positive_times(times: int) -> int:
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    return times


# ---------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aimbot.devserver dify",
        description="Run a local stand-in for a Dify chat app (Service API under /v1).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the app key it accepts")
    parser.add_argument(
        "--agent", action="store_true", help="behave like an Agent app (streaming only)"
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=0, help="answer 429 above this (0 = unlimited)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to think per answer")
    parser.add_argument(
        "--ping-interval", type=float, default=10.0, help="seconds between keep-alive pings"
    )
    return parser


def main(argv: list[str]) -> int:
    """``python -m aimbot.devserver dify [options]``: serve until Ctrl-C or SIGTERM."""
    try:
        args = _parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has already printed
        return e.code if isinstance(e.code, int) else 2
    try:
        return eventloop.run(_serve(args))
    except KeyboardInterrupt:
        return 0


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if args.max_concurrency < 0:
        parser.error(f"--max-concurrency must be >= 0, got {args.max_concurrency}")
    if not args.latency >= 0 or math.isinf(args.latency):
        parser.error(f"--latency must be a finite number >= 0, got {args.latency}")
    if not args.ping_interval > 0:
        parser.error(f"--ping-interval must be > 0, got {args.ping_interval}")
    if not args.api_key or any(c.isspace() for c in args.api_key):
        parser.error("--api-key must be non-empty and contain no whitespace")
    return args


async def _serve(args: argparse.Namespace) -> int:
    standin = DifyStandIn(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        agent_mode=args.agent,
        max_concurrency=args.max_concurrency,
        ping_interval=args.ping_interval,
        record_requests=False,  # a long-running demo server must not grow without bound
    )
    standin.set_latency(args.latency)
    try:
        await standin.start()
    except OSError as e:
        sys.stderr.write(f"dify stand-in: cannot listen on {args.host}:{args.port}: {e}\n")
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    mode = "agent" if args.agent else "chat"
    sys.stdout.write(
        f"Dify stand-in ({mode} app) listening on {standin.url} — API key: {standin.api_key}\n"
    )
    sys.stdout.flush()
    try:
        await stopping.wait()
    finally:
        await standin.stop()
    return 0
