"""DifyClient: one asyncio client for a Dify chat app's Service API.

Everything that can go wrong between the bot and Dify ends here as one of the typed errors in
``aimbot.api.errors``: the core only decides what to tell the user. The client owns the
decisions an operator would otherwise make by hand — retry with jittered back-off what a retry
can fix, stop retrying what it cannot, fall back to streaming for apps that refuse blocking, and
fail fast (circuit breaker) while Dify is down so users are not kept waiting for nothing.

The ``aiohttp.ClientSession`` is passed in: one session (one connection pool) per process, owned
and closed by whoever runs the process. Time is injected (``sleep``, ``clock``) so that tests see
back-off delays and cool-downs without waiting for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp

from aimbot import __version__
from aimbot.api.breaker import Admission, CircuitBreaker, CircuitState
from aimbot.api.errors import (
    DifyBadRequest,
    DifyCircuitOpen,
    DifyError,
    DifyProtocolError,
    DifyRateLimited,
    DifyStreamError,
    DifyTimeout,
    DifyUnavailable,
)
from aimbot.api.http_errors import (
    ErrorReply,
    error_for_reply,
    is_blocking_unsupported,
    parse_error_reply,
)
from aimbot.api.sse import (
    AnswerAssembler,
    AnswerEnding,
    SseDecoder,
    SseEvent,
    StreamResult,
    TextListener,
    parse_event_json,
)
from aimbot.utils.backoff import Backoff
from aimbot.utils.secret import Secret, mask_url_credentials, url_has_credentials

logger = logging.getLogger(__name__)

ResponseMode = Literal["streaming", "blocking"]
Observer = Callable[[str, float], None]
T = TypeVar("T")

# A blocking answer or a doctor reply is small; anything bigger is a misrouted download.
MAX_JSON_BODY_BYTES = 16 * 1024 * 1024
# Enough of an error body to find Dify's envelope; a proxy's HTML page is only described.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_USER_CHARS = 255  # Dify stores the end-user id in a String(255)
# A stop request for an abandoned generation is a courtesy to Dify: never keep a user waiting on it.
STOP_TIMEOUT = 5.0


def _frozen_inputs() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DifyOptions:
    """Every knob of the client; the defaults are the production defaults.

    ``read_timeout`` is the longest silence on the socket — Dify pings every ~10 s while it
    thinks, so it must stay well above 10 s. ``stream_deadline`` bounds one whole answer
    (blocking or streaming). ``end_grace`` is how long to keep reading after ``message_end``
    for the trailing events before using the complete answer anyway. ``request_timeout``
    bounds the small calls (delete, stop, parameters, info). ``max_answer_chars`` bounds one
    answer: past it the stream is no longer read, the generation is stopped in Dify and the
    answer is returned ``cut_short``.
    """

    base_url: str = "https://api.dify.ai/v1"
    response_mode: ResponseMode = "streaming"
    inputs: Mapping[str, Any] = field(default_factory=_frozen_inputs)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    stream_deadline: float = 180.0
    retry_base: float = 1.0
    retry_cap: float = 30.0
    retry_max_attempts: int = 5
    retry_max_time: float = 120.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    end_grace: float = 5.0
    request_timeout: float = 30.0
    max_answer_chars: int = 8000

    def __post_init__(self) -> None:
        problems: list[str] = []
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = mask_url_credentials(self.base_url)
            problems.append(f"base_url must be an http(s) URL, got {shown!r}")
        if url_has_credentials(self.base_url):
            problems.append("base_url must not carry user:password@ (the key authenticates)")
        if parts.query or parts.fragment:
            problems.append("base_url must not carry a query or fragment")
        if self.response_mode not in ("streaming", "blocking"):
            problems.append(
                f"response_mode must be 'streaming' or 'blocking', got {self.response_mode!r}"
            )
        inputs: object = self.inputs  # settings may hand over whatever JSON text decoded to
        if not isinstance(inputs, Mapping):
            problems.append(f"inputs must be a JSON object, got {type(inputs).__name__}")
        else:
            try:
                frozen = json.loads(json.dumps(dict(self.inputs)))
            except (TypeError, ValueError) as e:
                problems.append(f"inputs must be JSON-serialisable: {e}")
            else:
                object.__setattr__(self, "inputs", MappingProxyType(frozen))
        for name in (
            "connect_timeout",
            "read_timeout",
            "stream_deadline",
            "retry_base",
            "retry_cap",
            "retry_max_time",
            "breaker_cooldown",
            "end_grace",
            "request_timeout",
        ):
            value = getattr(self, name)
            if not _positive_number(value):
                problems.append(f"{name} must be a number > 0, got {value!r}")
        positive = _positive_number(self.retry_base) and _positive_number(self.retry_cap)
        if positive and self.retry_cap < self.retry_base:
            problems.append(
                f"retry_cap ({self.retry_cap}) must be >= retry_base ({self.retry_base})"
            )
        for name in ("retry_max_attempts", "breaker_threshold", "max_answer_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if problems:
            raise ValueError("invalid Dify options: " + "; ".join(problems))


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class Answer:
    """One reply. ``task_id`` (streaming only) is what ``stop()`` needs.

    ``ending`` says whether ``text`` is the whole answer, the first ``max_answer_chars`` of it
    ("cut_short"), or what arrived before the stream broke ("interrupted"); the last two are not
    asked again, since Dify has already recorded the turn.
    """

    text: str
    conversation_id: str
    message_id: str
    usage: Mapping[str, Any]
    task_id: str = ""
    ending: AnswerEnding = "complete"


class _BlockingRejected(Exception):
    """The app refused blocking mode: switch this client to streaming and ask again."""


class DifyClient:
    """Talks to one Dify app with one API key; safe to share between all user tasks.

    ``observer(outcome, seconds)`` is called once per ``chat`` (not for cancelled calls), for
    metrics: ``outcome`` is "ok" or the raised error's ``kind`` ("auth", "rate_limited",
    "unavailable", "protocol", "timeout", "bad_request", "stream_error",
    "conversation_not_found", "circuit_open"); ``seconds`` spans all attempts.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        options: DifyOptions | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        observer: Observer | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("the Dify API key is empty")
        if any(c.isspace() for c in api_key):
            raise ValueError("the Dify API key contains whitespace (copy/paste error?)")
        self._session = session
        self._options = options or DifyOptions()
        self._key = Secret(api_key)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._observer = observer
        self._mode: ResponseMode = self._options.response_mode
        self._base = self._options.base_url.rstrip("/")
        # No total: the stream deadline (asyncio.timeout) bounds the whole answer instead.
        # Built once (the options are frozen), not per request.
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=self._options.connect_timeout, sock_read=self._options.read_timeout
        )
        self._breaker = CircuitBreaker(
            self._options.breaker_threshold, self._options.breaker_cooldown, clock
        )

    def __repr__(self) -> str:
        return (
            f"DifyClient(base_url={self._base!r}, response_mode={self._mode!r}, "
            f"circuit={self.circuit_state!r})"
        )

    @property
    def options(self) -> DifyOptions:
        return self._options

    @property
    def response_mode(self) -> ResponseMode:
        """The mode in use now: blocking turns into streaming once an app refuses blocking."""
        return self._mode

    @property
    def circuit_state(self) -> CircuitState:
        return self._breaker.state

    @property
    def breaker(self) -> CircuitBreaker:
        """For health detail (consecutive failures, seconds until the next probe)."""
        return self._breaker

    # ------------------------------------------------------------------ public calls

    async def chat(
        self,
        user: str,
        query: str,
        conversation_id: str | None,
        *,
        on_text: TextListener | None = None,
    ) -> Answer:
        """Ask the app; ``conversation_id=None`` starts a new conversation.

        ``on_text`` hears the answer's text as it streams in (never in blocking mode).

        Raises a DifyError subclass (ValueError only for an invalid ``user``, a caller's bug).
        ConversationNotFound is never retried here: the caller forgets the id and asks once
        more with ``None``.
        """
        _check_user(user)
        if not isinstance(query, str) or not query.strip():
            # Data, not a programming error (an IM can be all markup): a typed error the core
            # already turns into a friendly reply, and no request Dify would reject anyway.
            raise DifyBadRequest("empty_query", "the message has no text to send to Dify")
        conversation_id = (conversation_id or "").strip() or None
        started = self._clock()
        try:
            answer = await self._with_retries(
                "chat", lambda: self._chat_attempt(user, query, conversation_id, on_text)
            )
        except DifyError as e:
            self._observe(e.kind, started)
            raise
        self._observe("ok", started)
        logger.debug(
            "Dify answered %s in %.2f s (%d characters, conversation %s)",
            user,
            self._clock() - started,
            len(answer.text),
            answer.conversation_id,
        )
        return answer

    async def delete_conversation(self, user: str, conversation_id: str) -> None:
        """Delete a conversation; any 2xx (204, or 200 with a body in older Dify) is success.

        Raises ConversationNotFound for an unknown id; a "clear" may simply ignore that.
        """
        _check_user(user)
        if not conversation_id:
            raise ValueError("conversation_id must be non-empty")
        path = f"/conversations/{quote(conversation_id, safe='')}"
        await self._with_retries(
            "delete_conversation",
            lambda: self._call(
                "DELETE", path, body={"user": user}, conversation_id=conversation_id
            ),
        )

    async def parameters(self) -> dict[str, Any]:
        """The app's parameters (input form, features): the doctor command shows them."""
        return await self._with_retries("parameters", lambda: self._call_dict("GET", "/parameters"))

    async def info(self) -> dict[str, Any]:
        """The app's name, mode and author: proves the key reaches the intended app."""
        return await self._with_retries("info", lambda: self._call_dict("GET", "/info"))

    async def stop(self, task_id: str, user: str) -> None:
        """Ask Dify to stop a streaming generation (it silently ignores another user's task)."""
        _check_user(user)
        if not task_id:
            raise ValueError("task_id must be non-empty")
        path = f"/chat-messages/{quote(task_id, safe='')}/stop"
        await self._with_retries("stop", lambda: self._call("POST", path, body={"user": user}))

    # ------------------------------------------------------------------ retries + breaker

    async def _with_retries(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` under the breaker, retrying what a retry can fix.

        Breaker bookkeeping: 5xx, connection errors, timeouts, malformed replies and in-stream
        errors with a 5xx status count as failures, per attempt; 429s count once, when their
        retries ran out; any other 4xx answer proves the server is healthy and resets the count.
        """
        opts = self._options
        backoff = Backoff(opts.retry_base, opts.retry_cap, rng=self._rng)
        started = self._clock()
        attempts = 0
        last: DifyError | None = None
        while True:
            admission = self._breaker.admit()
            if admission is None:
                if last is not None:
                    logger.warning(
                        "Dify %s: circuit is open; giving up after %d attempts", operation, attempts
                    )
                    raise last
                raise DifyCircuitOpen(self._breaker.retry_in()) from self._breaker.last_failure
            attempts += 1
            try:
                result = await attempt()
            except DifyError as e:
                last = e
                delay = self._retry_delay(operation, e, backoff, attempts, started)
                self._record(admission, e, giving_up=delay is None)
                if delay is None:
                    raise
                if self._breaker.state == "open":
                    logger.warning(
                        "Dify %s failed (%s) and the circuit opened; not retrying", operation, e
                    )
                    raise
            except asyncio.CancelledError:
                self._breaker.record_neutral(admission)
                raise
            except Exception:
                # Not a Dify verdict (a bug, most likely): never leave the probe slot taken.
                self._breaker.record_neutral(admission)
                raise
            else:
                self._breaker.record_success(admission)
                if attempts > 1:
                    logger.info(
                        "Dify %s recovered on attempt %d after %.2f s",
                        operation,
                        attempts,
                        self._clock() - started,
                    )
                return result
            logger.warning(
                "Dify %s failed (%s); retry %d of %d in %.2f s",
                operation,
                last,
                attempts,
                opts.retry_max_attempts - 1,
                delay,
            )
            await self._sleep(delay)  # a cancellation here holds nothing: it just propagates

    def _retry_delay(
        self, operation: str, error: DifyError, backoff: Backoff, attempts: int, started: float
    ) -> float | None:
        """The pause before the next attempt, or None when this error must not be retried."""
        opts = self._options
        if not _is_retryable(error):
            return None
        if attempts >= opts.retry_max_attempts:
            logger.warning(
                "Dify %s failed (%s); giving up after %d attempts", operation, error, attempts
            )
            return None
        delay = backoff.next_delay()
        if error.retry_after is not None:
            delay = error.retry_after  # the server (or its proxy) said when; believe it
        elapsed = self._clock() - started
        if elapsed + delay > opts.retry_max_time:
            logger.warning(
                "Dify %s failed (%s); giving up: a %.2f s pause would exceed the %.1f s budget",
                operation,
                error,
                delay,
                opts.retry_max_time,
            )
            return None
        return delay

    def _record(self, admission: Admission, error: DifyError, *, giving_up: bool) -> None:
        if isinstance(error, DifyRateLimited):
            # Back-pressure from a healthy server; only exhausted retries say "unusable".
            if giving_up:
                self._breaker.record_failure(admission, error)
            else:
                self._breaker.record_neutral(admission)
        elif isinstance(error, DifyUnavailable | DifyTimeout) or (
            isinstance(error, DifyStreamError) and (error.status or 0) >= 500
        ):
            self._breaker.record_failure(admission, error)
        else:
            self._breaker.record_success(admission)

    def _observe(self, outcome: str, started: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(outcome, self._clock() - started)
        except Exception:
            logger.exception("Dify call observer failed (ignored)")

    # ------------------------------------------------------------------ chat attempts

    def _chat_attempt(
        self, user: str, query: str, conversation_id: str | None, on_text: TextListener | None
    ) -> Awaitable[Answer]:
        """One attempt; in streaming mode the request itself, one coroutine fewer for every
        resumption of the answer's read (the common case)."""
        if self._mode == "streaming":
            return self._chat_once(user, query, conversation_id, "streaming", on_text)
        return self._chat_or_fall_back(user, query, conversation_id, on_text)

    async def _chat_or_fall_back(
        self, user: str, query: str, conversation_id: str | None, on_text: TextListener | None
    ) -> Answer:
        mode = self._mode
        try:
            return await self._chat_once(user, query, conversation_id, mode, on_text)
        except _BlockingRejected:
            if self._mode == "blocking":
                self._mode = "streaming"
                logger.warning(
                    "this Dify app does not support blocking mode (Agent app); "
                    "switching to streaming — set DIFY_RESPONSE_MODE=streaming"
                )
            return await self._chat_once(user, query, conversation_id, "streaming", on_text)

    async def _chat_once(
        self,
        user: str,
        query: str,
        conversation_id: str | None,
        mode: ResponseMode,
        on_text: TextListener | None = None,
    ) -> Answer:
        opts = self._options
        body: dict[str, Any] = {
            "inputs": dict(opts.inputs),
            "query": query,
            "response_mode": mode,
            "user": user,
        }
        if conversation_id:
            body["conversation_id"] = conversation_id
        assembler = AnswerAssembler(
            conversation_id, redact=self._redact, max_chars=opts.max_answer_chars, on_text=on_text
        )
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(opts.stream_deadline) as deadline:
                async with self._session.post(
                    self._base + "/chat-messages",
                    json=body,
                    headers=self._headers(streaming=mode == "streaming"),
                    timeout=self._client_timeout,
                    allow_redirects=False,
                ) as resp:
                    if resp.status >= 300:
                        reply = await self._error_reply(resp)
                        if mode == "blocking" and is_blocking_unsupported(reply):
                            raise _BlockingRejected
                        raise error_for_reply(
                            reply, conversation_id=conversation_id
                        ) from reply.cause()
                    if resp.content_type != "text/event-stream":
                        # Dispatch on what arrived, not on what was asked: some gateways and
                        # old versions answer a streaming request with one JSON document.
                        return _answer_from_blocking(
                            await self._read_json(resp),
                            conversation_id,
                            self._redact,
                            opts.max_answer_chars,
                        )
                    await self._read_stream(resp, assembler, deadline, loop)
                    if assembler.cut_short:
                        resp.close()  # not release(): the rest of the stream is not wanted
                    elif not assembler.complete and assembler.has_text:
                        raise DifyUnavailable(
                            f"Dify stream ended after {assembler.events} events without message_end"
                        )
                    else:
                        return _answer_from_stream(assembler.finish())
        except TimeoutError as e:
            if assembler.complete:
                logger.warning(
                    "Dify stream did not close %.1f s after message_end; using the answer",
                    opts.end_grace,
                )
                return _answer_from_stream(assembler.finish())
            reason = self._timeout_reason(e, assembler)
            if assembler.has_text:
                return await self._interrupted(assembler, user, reason)
            raise DifyTimeout(reason) from e
        except aiohttp.ClientError as e:
            if assembler.complete:
                logger.info("Dify connection dropped after message_end (%s); answer kept", e)
                return _answer_from_stream(assembler.finish())
            detail = f"{type(e).__name__}: {self._redact(str(e))}"
            if assembler.has_text:
                return await self._interrupted(
                    assembler, user, f"the stream broke off mid-answer ({detail})"
                )
            if assembler.events or assembler.pings:
                raise DifyUnavailable(f"Dify's stream broke off mid-answer ({detail})") from e
            raise DifyUnavailable(f"cannot reach Dify at {self._base} ({detail})") from e
        except DifyUnavailable as e:
            if not assembler.has_text or isinstance(e, DifyProtocolError):
                raise
            return await self._interrupted(assembler, user, str(e))
        logger.warning(
            "Dify answer for %s reached MAX_ANSWER_CHARS (%d); stopped reading and cut it short",
            user,
            opts.max_answer_chars,
        )
        await self._stop_quietly(assembler.task_id, user)
        return _answer_from_stream(assembler.partial("cut_short"))

    async def _read_stream(
        self,
        resp: aiohttp.ClientResponse,
        assembler: AnswerAssembler,
        deadline: asyncio.Timeout,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Feed the SSE body to the assembler until EOF or the size cap.

        Once ``message_end`` has arrived, what is left of the stream gets only ``end_grace``
        (Chatflow and TTS may trail it); the deadline is moved only if there is more to wait for,
        since the end of the stream usually arrives in the same chunk (moving a timer is a
        measurable part of each answer's cost).
        """
        decoder = SseDecoder()
        content = resp.content
        async for chunk in content.iter_any():
            was_complete = assembler.complete
            if self._apply_all(decoder.feed(chunk), assembler):
                return
            if assembler.complete and not was_complete and not content.at_eof():
                when = deadline.when()
                grace = loop.time() + self._options.end_grace
                deadline.reschedule(grace if when is None else min(when, grace))
        self._apply_all(decoder.close(), assembler)

    @classmethod
    def _apply_all(cls, events: Iterable[SseEvent], assembler: AnswerAssembler) -> bool:
        """Feed one read's events, then tell the listener their text (also the text ahead of
        an error event, as it was sent); True once the answer is cut short."""
        try:
            for event in events:
                cls._apply(event, assembler)
                if assembler.cut_short:
                    return True
            return False
        finally:
            assembler.tell()

    async def _interrupted(self, assembler: AnswerAssembler, user: str, reason: str) -> Answer:
        """Text has arrived, so Dify has the turn: keep what came instead of asking again."""
        logger.warning(
            "Dify answer for %s broke off after %d events (%s); keeping the text that arrived",
            user,
            assembler.events,
            reason,
        )
        await self._stop_quietly(assembler.task_id, user)
        return _answer_from_stream(assembler.partial("interrupted"))

    async def _stop_quietly(self, task_id: str, user: str) -> None:
        """Ask Dify to stop generating an answer we no longer read; one short attempt, no raise."""
        if not task_id:
            return
        path = f"/chat-messages/{quote(task_id, safe='')}/stop"
        try:
            async with asyncio.timeout(min(self._options.request_timeout, STOP_TIMEOUT)):
                await self._call("POST", path, body={"user": user})
        except (DifyError, TimeoutError) as e:
            logger.info("could not stop Dify task %s (%s); it may run to its end", task_id, e)

    @staticmethod
    def _apply(event: SseEvent, assembler: AnswerAssembler) -> None:
        """Feed one SSE event (a ping is only counted, for the timeout message)."""
        if event.is_ping or not event.data:
            assembler.pings += event.is_ping
            return
        assembler.feed(parse_event_json(event))

    def _timeout_reason(self, error: BaseException, assembler: AnswerAssembler) -> str:
        opts = self._options
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return f"could not connect to Dify at {self._base} within {opts.connect_timeout:g} s"
        if isinstance(error, aiohttp.SocketTimeoutError):
            return f"Dify sent nothing for {opts.read_timeout:g} s (read timeout)"
        if assembler.events == 0 and assembler.pings:
            return (
                f"Dify sent only keep-alive pings ({assembler.pings}) and no answer within "
                f"{opts.stream_deadline:g} s"
            )
        return (
            f"Dify did not finish the answer within {opts.stream_deadline:g} s "
            f"({assembler.events} events received)"
        )

    # ------------------------------------------------------------------ small calls

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> Any:
        """One JSON request/response; returns the decoded body (None when empty)."""
        try:
            async with asyncio.timeout(self._options.request_timeout):
                async with self._session.request(
                    method,
                    self._base + path,
                    json=body,
                    headers=self._headers(streaming=False),
                    timeout=self._client_timeout,
                    allow_redirects=False,
                ) as resp:
                    if resp.status >= 300:
                        reply = await self._error_reply(resp)
                        raise error_for_reply(
                            reply, conversation_id=conversation_id
                        ) from reply.cause()
                    raw = await self._read_limited(resp, MAX_JSON_BODY_BYTES)
        except TimeoutError as e:
            raise DifyTimeout(
                f"Dify {method} {path} got no complete reply within "
                f"{self._options.request_timeout:g} s"
            ) from e
        except aiohttp.ClientError as e:
            raise DifyUnavailable(
                f"cannot reach Dify at {self._base} ({type(e).__name__}: {self._redact(str(e))})"
            ) from e
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise DifyProtocolError(
                f"Dify {method} {path} answered {len(raw)} bytes that are not JSON"
            ) from e

    async def _call_dict(self, method: str, path: str) -> dict[str, Any]:
        payload = await self._call(method, path)
        if not isinstance(payload, dict):
            raise DifyProtocolError(f"Dify {method} {path} did not answer with a JSON object")
        return payload

    # ------------------------------------------------------------------ HTTP plumbing

    def _headers(self, *, streaming: bool) -> dict[str, str]:
        return {
            "Authorization": "Bearer " + self._key.get(),
            "Accept": "text/event-stream" if streaming else "application/json",
            "User-Agent": f"aimbot/{__version__}",
        }

    def _redact(self, text: str) -> str:
        key = self._key.get()
        return text.replace(key, "[redacted]") if key in text else text

    async def _error_reply(self, resp: aiohttp.ClientResponse) -> ErrorReply:
        body = await self._read_limited(resp, MAX_ERROR_BODY_BYTES, truncate=True)
        return parse_error_reply(
            resp.status,
            resp.content_type,
            body,
            retry_after=resp.headers.get("Retry-After"),
            redact=self._redact,
        )

    async def _read_json(self, resp: aiohttp.ClientResponse) -> Any:
        raw = await self._read_limited(resp, MAX_JSON_BODY_BYTES)
        try:
            return json.loads(raw)
        except ValueError as e:
            raise DifyProtocolError(
                f"Dify answered 200 with {len(raw)} bytes of {resp.content_type or 'untyped'} "
                "that are not JSON"
            ) from e

    @staticmethod
    async def _read_limited(
        resp: aiohttp.ClientResponse, limit: int, *, truncate: bool = False
    ) -> bytes:
        body = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                raise DifyProtocolError(f"Dify reply is larger than {limit} bytes")
        return bytes(body)


def dify_session() -> aiohttp.ClientSession:
    """The HTTP session for a DifyClient.

    No timeout of its own: the client sets each request's, and a session-wide one would cut long
    streams. No cookies: Dify's API is keyed by the bearer key, and a jar keeps whatever cookie
    any response sets, without a bound.
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None), cookie_jar=aiohttp.DummyCookieJar()
    )


def _check_user(user: str) -> None:
    if not isinstance(user, str) or not user.strip():
        raise ValueError("user must be a non-empty string")
    if len(user) > MAX_USER_CHARS:
        raise ValueError(f"user must be at most {MAX_USER_CHARS} characters, got {len(user)}")


def _is_retryable(error: DifyError) -> bool:
    if isinstance(error, DifyProtocolError):
        return False
    return isinstance(error, DifyRateLimited | DifyUnavailable | DifyTimeout)


def _answer_from_stream(result: StreamResult) -> Answer:
    return Answer(
        text=result.text,
        conversation_id=result.conversation_id,
        message_id=result.message_id,
        usage=result.usage,
        task_id=result.task_id,
        ending=result.ending,
    )


def _answer_from_blocking(
    payload: Any, conversation_id: str | None, redact: Callable[[str], str], max_chars: int
) -> Answer:
    """Blocking replies: only ``answer`` and ``conversation_id`` are reliably present."""
    if not isinstance(payload, dict):
        raise DifyProtocolError("Dify's blocking reply is not a JSON object")
    if payload.get("event") == "error":
        code = payload.get("code")
        message = payload.get("message")
        raise DifyBadRequest(
            redact(code) if isinstance(code, str) else "error",
            redact(message) if isinstance(message, str) else "(no message)",
        )
    answer = payload.get("answer")
    if not isinstance(answer, str):
        raise DifyProtocolError("Dify's blocking reply has no text 'answer'")
    returned_id = payload.get("conversation_id")
    if not isinstance(returned_id, str) or not returned_id:
        if not conversation_id:
            raise DifyProtocolError("Dify's blocking reply has no 'conversation_id'")
        returned_id = conversation_id
    message_id = payload.get("message_id") or payload.get("id") or ""
    metadata = payload.get("metadata")
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    task_id = payload.get("task_id")
    ending: AnswerEnding = "complete"
    if len(answer) > max_chars:
        logger.warning(
            "Dify's blocking answer has %d characters; cut to %d", len(answer), max_chars
        )
        answer, ending = answer[:max_chars], "cut_short"
    return Answer(
        text=answer,
        conversation_id=returned_id,
        message_id=message_id if isinstance(message_id, str) else "",
        usage=MappingProxyType(dict(usage)) if isinstance(usage, dict) else MappingProxyType({}),
        task_id=task_id if isinstance(task_id, str) else "",
        ending=ending,
    )
