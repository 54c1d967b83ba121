"""Turning a non-2xx Dify reply into a typed error: pure functions over status, headers and body.

Dify answers errors with ``{"code", "message", "status"}``, but what actually arrives may be a
proxy's HTML page, an empty body, or the concurrency limit dressed up as a 400. The decisions
(what is retryable, what means "forget the conversation", what means "switch to streaming")
live here so they are tested as data and so the client never shows raw HTTP text to anyone.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from aimbot.api.errors import (
    ConversationNotFound,
    DifyAuthError,
    DifyBadRequest,
    DifyError,
    DifyHttpError,
    DifyRateLimited,
    DifyTimeout,
    DifyUnavailable,
)

# Server text that reaches our logs is cut to this; a proxy's HTML page helps nobody at full size.
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class ErrorReply:
    """The parts of an error reply we act on, already redacted and shortened."""

    status: int
    code: str
    message: str
    content_type: str
    is_json: bool
    retry_after: float | None = None

    def cause(self) -> DifyHttpError:
        return DifyHttpError(self.status, self.code, self.message, self.content_type)


def parse_error_reply(
    status: int,
    content_type: str,
    body: bytes,
    *,
    retry_after: str | None = None,
    redact: Callable[[str], str] = str,
    now: float | None = None,
) -> ErrorReply:
    """Read Dify's error envelope, or describe a body that is not one (HTML, empty, garbage)."""
    code = f"http_{status}"
    message = ""
    is_json = False
    if body.strip():
        try:
            payload = json.loads(body)
            is_json = True
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            raw_code = payload.get("code")
            raw_message = payload.get("message")
            if isinstance(raw_code, str) and raw_code:
                code = raw_code
            if isinstance(raw_message, str):
                message = raw_message
    if not message:
        kind = "empty" if not body.strip() else "JSON" if is_json else "non-JSON"
        message = f"{kind} {status} reply ({len(body)} bytes, {content_type or 'no content type'})"
    return ErrorReply(
        status=status,
        code=_shorten(redact(code)),
        message=_shorten(redact(message)),
        content_type=content_type,
        is_json=is_json,
        retry_after=parse_retry_after(retry_after, now=now),
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad.

    Dify itself never sends one; proxies and CDNs in front of it sometimes do.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    if now is None:
        now = time.time()
    return max(0.0, when.timestamp() - now)


def is_too_many_requests(reply: ErrorReply) -> bool:
    """Dify's concurrency limit can surface as 400 ``invalid_param`` (Flask-RESTX handler order)."""
    return (
        reply.status == 400
        and reply.code == "invalid_param"
        and reply.message.lower().startswith("too many requests")
    )


def is_blocking_unsupported(reply: ErrorReply) -> bool:
    """Agent apps reject blocking mode with a 400; the only signal is the message text."""
    if reply.status != 400:
        return False
    text = reply.message.lower()
    return "does not support blocking" in text or "only supports streaming" in text


def is_retryable(reply: ErrorReply) -> bool:
    return reply.status in (408, 429) or reply.status >= 500 or is_too_many_requests(reply)


def error_for_reply(reply: ErrorReply, *, conversation_id: str | None) -> DifyError:
    """The typed error for a reply; the caller raises it ``from reply.cause()``.

    404 means "conversation gone" only when we named one and Dify said ``not_found`` — matched on
    status and code, because Dify's message text varies (Flask-RESTX appends help to it).
    """
    status = reply.status
    summary = f"Dify answered {status} {reply.code}: {reply.message}"
    if status == 429 or is_too_many_requests(reply):
        return DifyRateLimited(
            summary, status=status, code=reply.code, retry_after=reply.retry_after
        )
    if status == 408:
        return DifyTimeout(summary, status=status, code=reply.code)
    if status >= 500:
        return DifyUnavailable(
            summary, status=status, code=reply.code, retry_after=reply.retry_after
        )
    if 300 <= status < 400:
        return DifyBadRequest(
            reply.code,
            "Dify answered with a redirect; set DIFY_API_URL to the final URL",
            status=status,
        )
    if status in (401, 403):
        return DifyAuthError(summary, status=status, code=reply.code)
    if status == 404 and conversation_id and reply.code == "not_found":
        return ConversationNotFound(conversation_id)
    return DifyBadRequest(reply.code, reply.message, status=status)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "…"
