"""Error replies → typed errors, Retry-After, options validation and safe error texts."""

from __future__ import annotations

import email.utils
import json

import pytest

from aimbot.api.dify_client import DifyOptions
from aimbot.api.errors import (
    ConversationNotFound,
    DifyAuthError,
    DifyBadRequest,
    DifyCircuitOpen,
    DifyError,
    DifyRateLimited,
    DifyTimeout,
    DifyUnavailable,
)
from aimbot.api.http_errors import (
    MAX_MESSAGE_CHARS,
    ErrorReply,
    error_for_reply,
    is_blocking_unsupported,
    is_retryable,
    parse_error_reply,
    parse_retry_after,
)

CONV = "8f0c1f8e-5a3e-4b8e-9d55-0c2b7d9a1e01"


def body(status: int, code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message, "status": status}).encode()


def reply_for(status: int, code: str, message: str) -> ErrorReply:
    return parse_error_reply(status, "application/json", body(status, code, message))


@pytest.mark.parametrize(
    ("status", "code", "message", "expected", "retryable"),
    [
        (401, "unauthorized", "Access token is invalid", DifyAuthError, False),
        (403, "forbidden", "The app's API service has been disabled.", DifyAuthError, False),
        (400, "app_unavailable", "App unavailable", DifyBadRequest, False),
        (400, "invalid_param", "Arg user must be provided.", DifyBadRequest, False),
        (400, "invalid_param", "Too many requests. Please try again later.", DifyRateLimited, True),
        (413, "file_too_large", "File size exceeded.", DifyBadRequest, False),
        (429, "too_many_requests", "Too many requests.", DifyRateLimited, True),
        (429, "rate_limit_error", "Rate Limit Error", DifyRateLimited, True),
        (408, "request_timeout", "Request Timeout", DifyTimeout, True),
        (500, "internal_server_error", "The server encountered...", DifyUnavailable, True),
        (503, "service_unavailable", "unavailable", DifyUnavailable, True),
    ],
)
def test_status_and_code_map_to_typed_errors(
    status: int, code: str, message: str, expected: type[DifyError], retryable: bool
) -> None:
    reply = reply_for(status, code, message)
    assert (reply.code, reply.message, reply.is_json) == (code, message, True)
    error = error_for_reply(reply, conversation_id=None)
    assert type(error) is expected
    assert error.status == status
    assert is_retryable(reply) is retryable


def test_404_is_conversation_not_found_by_status_and_code_not_by_text() -> None:
    helpful = (
        "Conversation Not Exists. You have requested this URI [/v1/chat-messages] but did you…"
    )
    for message in ("Conversation Not Exists.", helpful, "anything at all"):
        error = error_for_reply(reply_for(404, "not_found", message), conversation_id=CONV)
        assert isinstance(error, ConversationNotFound)
        assert error.conversation_id == CONV
    # Without a conversation in the request, a 404 means a wrong URL, not a lost conversation.
    error = error_for_reply(reply_for(404, "not_found", "Not Found"), conversation_id=None)
    assert type(error) is DifyBadRequest and error.status == 404
    # A proxy's HTML 404 is not Dify's "not_found".
    html = parse_error_reply(404, "text/html", b"<html>404</html>")
    assert type(error_for_reply(html, conversation_id=CONV)) is DifyBadRequest


@pytest.mark.parametrize(
    ("content_type", "raw", "kind"),
    [
        ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>", "non-JSON"),
        ("application/json", b"", "empty"),
        ("application/json", b"[1,2]", "JSON"),
        ("text/plain", b"\xff\xfe garbage", "non-JSON"),
    ],
)
def test_bodies_that_are_not_an_envelope_are_described_not_quoted(
    content_type: str, raw: bytes, kind: str
) -> None:
    reply = parse_error_reply(502, content_type, raw)
    assert reply.code == "http_502"
    assert reply.message.startswith(f"{kind} 502 reply ({len(raw)} bytes")
    assert "<html>" not in reply.message and "Bad Gateway" not in reply.message
    assert isinstance(error_for_reply(reply, conversation_id=None), DifyUnavailable)


def test_long_messages_are_shortened_and_the_key_is_redacted() -> None:
    key = "app-VerySecret"
    reply = parse_error_reply(
        400,
        "application/json",
        body(400, "invalid_param", f"token {key} is bad " + "x" * 1000),
        redact=lambda text: text.replace(key, "[redacted]"),
    )
    assert key not in reply.message and "[redacted]" in reply.message
    assert len(reply.message) == MAX_MESSAGE_CHARS
    error = error_for_reply(reply, conversation_id=None)
    assert key not in str(error) and key not in repr(error)
    assert key not in str(reply.cause())


def test_redirects_are_a_configuration_error() -> None:
    reply = parse_error_reply(301, "text/html", b"<a href=...>moved</a>")
    error = error_for_reply(reply, conversation_id=None)
    assert type(error) is DifyBadRequest and "DIFY_API_URL" in str(error)
    assert not is_retryable(reply)


def test_blocking_unsupported_is_recognised_for_both_agent_kinds() -> None:
    assert is_blocking_unsupported(
        reply_for(400, "invalid_param", "Agent Chat App does not support blocking mode")
    )
    assert is_blocking_unsupported(
        reply_for(400, "bad_request", "Agent App only supports streaming response mode.")
    )
    assert not is_blocking_unsupported(
        reply_for(400, "invalid_param", "Arg user must be provided.")
    )
    assert not is_blocking_unsupported(reply_for(500, "x", "does not support blocking mode"))


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("-3", now=now) is None
    assert parse_retry_after("soon", now=now) is None
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(42.0)
    past = email.utils.formatdate(now - 42, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    reply = parse_error_reply(429, "text/html", b"<html>1015</html>", retry_after="12")
    error = error_for_reply(reply, conversation_id=None)
    assert isinstance(error, DifyRateLimited) and error.retry_after == 12.0


def test_error_texts_are_our_own() -> None:
    bad = DifyBadRequest("invalid_param", "Arg user must be provided.")
    assert (bad.code, bad.message, bad.status) == (
        "invalid_param",
        "Arg user must be provided.",
        400,
    )
    assert "invalid_param" in str(bad)
    assert str(ConversationNotFound(CONV)) == f"Dify conversation {CONV} does not exist"
    circuit = DifyCircuitOpen(12.345)
    assert circuit.retry_in == 12.345 and "12.3 s" in str(circuit)


# ---------------------------------------------------------------------------- options


def test_default_options_are_the_production_defaults() -> None:
    options = DifyOptions()
    assert options.base_url == "https://api.dify.ai/v1"
    assert options.response_mode == "streaming"
    assert dict(options.inputs) == {}
    assert (options.connect_timeout, options.read_timeout, options.stream_deadline) == (
        10.0,
        60.0,
        180.0,
    )
    assert (options.retry_base, options.retry_cap) == (1.0, 30.0)
    assert (options.retry_max_attempts, options.retry_max_time) == (5, 120.0)
    assert (options.breaker_threshold, options.breaker_cooldown) == (5, 30.0)


def test_inputs_are_copied_and_frozen() -> None:
    given = {"lang": "en", "nested": {"a": [1, 2]}}
    options = DifyOptions(inputs=given)
    given["lang"] = "de"
    assert options.inputs["lang"] == "en"
    with pytest.raises(TypeError):
        options.inputs["lang"] = "fr"  # type: ignore[index]


def test_invalid_options_are_all_reported_at_once() -> None:
    with pytest.raises(ValueError) as info:
        DifyOptions(
            base_url="ftp://example.com",
            response_mode="chunky",  # type: ignore[arg-type]
            inputs={"x": object()},
            read_timeout=0,
            retry_max_attempts=0,
            breaker_threshold=True,
        )
    text = str(info.value)
    for fragment in (
        "base_url",
        "response_mode",
        "inputs must be JSON-serialisable",
        "read_timeout",
        "retry_max_attempts",
        "breaker_threshold",
    ):
        assert fragment in text


def test_retry_cap_below_base_is_rejected() -> None:
    with pytest.raises(ValueError, match="retry_cap"):
        DifyOptions(retry_base=5.0, retry_cap=1.0)
    with pytest.raises(ValueError, match="inputs must be a JSON object"):
        DifyOptions(inputs=[1, 2])  # type: ignore[arg-type]
