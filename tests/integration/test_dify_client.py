"""DifyClient against the stand-in over loopback HTTP: modes, conversations, calls, secrecy."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest

from aimbot.api.dify_client import DifyClient, DifyOptions
from aimbot.api.errors import (
    ConversationNotFound,
    DifyAuthError,
    DifyBadRequest,
    DifyHttpError,
    DifyProtocolError,
    DifyStreamError,
    DifyUnavailable,
)
from aimbot.api.sse import TextChunk
from aimbot.devserver.dify_standin import AnswerContext, default_answer
from tests.helpers.dify import SECRET_KEY, WAIT, dify_rig, guard_key_in_logs

USER = "aim:alice"
MODES = ["streaming", "blocking"]


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield from guard_key_in_logs(caplog)


def markdown_answer(ctx: AnswerContext) -> str:
    """~5,000 characters of the Markdown an LLM writes, with non-ASCII and emoji."""
    block = (
        "## Überblick 🌍\n\n"
        "Here is **bold**, _italic_ and `code` — with “quotes”, naïve café text.\n\n"
        "1. first item\n2. second item with a [link](https://example.com/ä?q=1&r=2)\n\n"
        "```python\nprint('héllo')\n```\n\n"
    )
    text = (block * 40)[:5000]
    return f"{ctx.query}\n{text}"


# ---------------------------------------------------------------------------- both modes


@pytest.mark.parametrize("mode", MODES)
async def test_chat_answers_and_remembers_in_both_modes(mode: str) -> None:
    async with dify_rig() as rig:
        client = rig.client(response_mode=mode, inputs={"lang": "en"})
        first = await client.chat(USER, "hello", None)
        assert first.text == default_answer(AnswerContext(USER, "hello", first.conversation_id, 1))
        assert uuid.UUID(first.conversation_id) and uuid.UUID(first.message_id)
        assert first.usage["total_tokens"] > 0
        assert first.task_id
        second = await client.chat(USER, "and again", first.conversation_id)
        assert second.conversation_id == first.conversation_id
        assert f"turn 2 of conversation {first.conversation_id[:8]}" in second.text
        sent = rig.standin.chat_requests
        assert [r.response_mode for r in sent] == [mode, mode]
        assert [r.conversation_id for r in sent] == [None, first.conversation_id]
        assert all(r.user == USER and dict(r.inputs) == {"lang": "en"} for r in sent)
        assert client.response_mode == mode
        assert rig.observed and [outcome for outcome, _ in rig.observed] == ["ok", "ok"]


@pytest.mark.parametrize("mode", MODES)
async def test_long_markdown_non_ascii_answer_arrives_intact(mode: str) -> None:
    async with dify_rig(answer=markdown_answer) as rig:
        client = rig.client(response_mode=mode)
        answer = await client.chat(USER, "explain", None)
        expected = markdown_answer(AnswerContext(USER, "explain", answer.conversation_id, 1))
        assert len(expected) > 5000
        assert answer.text == expected


async def test_agent_app_streams_agent_messages() -> None:
    async with dify_rig(agent_mode=True, answer=lambda ctx: "agent says " * 20) as rig:
        answer = await rig.client().chat(USER, "hi", None)
        assert answer.text == "agent says " * 20


async def test_blocking_refused_by_an_agent_app_switches_to_streaming_and_retries() -> None:
    async with dify_rig(agent_mode=True) as rig:
        client = rig.client(response_mode="blocking")
        answer = await client.chat(USER, "hi", None)
        assert "you said 'hi'" in answer.text
        assert client.response_mode == "streaming"
        assert [r.response_mode for r in rig.standin.chat_requests] == ["blocking", "streaming"]
        assert rig.time.sleeps == []  # an immediate switch, not a back-off
        await client.chat(USER, "again", answer.conversation_id)
        assert rig.standin.chat_requests[-1].response_mode == "streaming"
        assert len(rig.standin.chat_requests) == 3


# ---------------------------------------------------------------------------- conversations


@pytest.mark.parametrize("mode", MODES)
async def test_lost_conversation_raises_conversation_not_found_without_retry(mode: str) -> None:
    async with dify_rig() as rig:
        client = rig.client(response_mode=mode)
        alice = await client.chat(USER, "hi", None)
        with pytest.raises(ConversationNotFound) as info:
            await client.chat("aim:mallory", "let me in", alice.conversation_id)
        assert info.value.conversation_id == alice.conversation_id
        assert isinstance(info.value.__cause__, DifyHttpError)
        assert info.value.__cause__.status == 404
        unknown = str(uuid.uuid4())
        with pytest.raises(ConversationNotFound):
            await client.chat(USER, "hi", unknown)
        assert rig.standin.request_count == 3 and rig.time.sleeps == []
        # What the caller does next: forget the id, ask once as a new conversation.
        fresh = await client.chat(USER, "hi", None)
        assert fresh.conversation_id not in (alice.conversation_id, unknown)
        assert client.circuit_state == "closed"


async def test_delete_conversation_accepts_204_and_legacy_200() -> None:
    async with dify_rig() as rig:
        client = rig.client()
        first = await client.chat(USER, "hi", None)
        await client.delete_conversation(USER, first.conversation_id)
        assert rig.standin.conversations[first.conversation_id].deleted
        with pytest.raises(ConversationNotFound):
            await client.chat(USER, "still there?", first.conversation_id)
        with pytest.raises(ConversationNotFound):
            await client.delete_conversation(USER, first.conversation_id)
        rig.standin.legacy_delete_reply = True
        second = await client.chat(USER, "hi", None)
        await client.delete_conversation(USER, second.conversation_id)
        assert rig.standin.conversations[second.conversation_id].deleted


async def test_parameters_info_and_stop() -> None:
    async with dify_rig() as rig:
        client = rig.client()
        parameters = await client.parameters()
        assert "user_input_form" in parameters
        info = await client.info()
        assert info["mode"] == "chat"
        await client.stop("some-task", USER)
        assert [(s.task_id, s.user) for s in rig.standin.stop_requests] == [("some-task", USER)]


async def test_stop_reaches_a_running_generation() -> None:
    async with dify_rig() as rig:
        rig.standin.set_latency(WAIT)
        client = rig.client()
        pending = asyncio.create_task(client.chat(USER, "long one", None))
        await rig.standin.wait_requests(1)
        [(task_id, _)] = rig.standin.active_tasks()
        await client.stop(task_id, USER)
        async with asyncio.timeout(WAIT):
            answer = await pending
        assert answer.text == ""  # stopped before any chunk
        assert rig.standin.stop_requests[-1].matched


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("mode", MODES)
async def test_mid_stream_error_is_a_typed_failure_not_retried(mode: str) -> None:
    async with dify_rig(answer=lambda ctx: "partial answer " * 10) as rig:
        rig.standin.fail_mid_stream(code="provider_quota_exceeded", message="quota gone")
        client = rig.client(response_mode=mode)
        with pytest.raises(DifyBadRequest) as info:
            await client.chat(USER, "hi", None)
        assert (info.value.code, info.value.message) == ("provider_quota_exceeded", "quota gone")
        assert isinstance(info.value, DifyStreamError) == (mode == "streaming")
        assert rig.standin.request_count == 1 and rig.time.sleeps == []
        assert client.circuit_state == "closed"
        assert rig.observed[-1][0] in ("stream_error", "bad_request")


async def test_mid_stream_500_counts_against_the_breaker() -> None:
    async with dify_rig() as rig:
        rig.standin.fail_mid_stream(
            2, code="internal_server_error", status=500, message="Internal Server Error"
        )
        client = rig.client(breaker_threshold=2)
        for _ in range(2):
            with pytest.raises(DifyStreamError):
                await client.chat(USER, "hi", None)
        assert client.circuit_state == "open"


async def test_wrong_key_is_an_auth_error_and_the_key_is_never_shown() -> None:
    async with dify_rig() as rig:
        wrong = "app-WrongKeyThatMustNotLeak"
        client = rig.client(api_key=wrong)
        with pytest.raises(DifyAuthError) as info:
            await client.chat(USER, "hi", None)
        assert info.value.status == 401
        assert rig.time.sleeps == [] and rig.standin.request_count == 0
        for text in (str(info.value), repr(info.value), str(info.value.__cause__), repr(client)):
            assert wrong not in text


async def test_server_text_echoing_the_key_is_redacted_everywhere() -> None:
    async with dify_rig() as rig:
        rig.standin.script_error(400, "invalid_param", f"token Bearer {SECRET_KEY} is odd")
        rig.standin.fail_mid_stream(message=f"provider said {SECRET_KEY}")
        client = rig.client()
        errors: list[DifyBadRequest] = []
        for _ in range(2):
            with pytest.raises(DifyBadRequest) as info:
                await client.chat(USER, "hi", None)
            errors.append(info.value)
        for error in errors:
            assert "[redacted]" in str(error)
            for text in (str(error), repr(error), error.message, str(error.__cause__)):
                assert SECRET_KEY not in text


async def test_client_repr_and_state_never_show_the_key() -> None:
    async with dify_rig() as rig:
        client = rig.client()
        await client.chat(USER, "hi", None)
        assert SECRET_KEY not in repr(client)
        assert SECRET_KEY not in str(vars(client))
        assert "circuit='closed'" in repr(client)


async def test_bad_arguments_are_rejected_before_any_request() -> None:
    async with dify_rig() as rig:
        client = rig.client()
        for user in ["", "  ", "x" * 256]:
            with pytest.raises(ValueError):
                await client.chat(user, "hi", None)
        for query in ["", " \n "]:
            with pytest.raises(DifyBadRequest) as info:
                await client.chat(USER, query, None)
            assert info.value.code == "empty_query"
        with pytest.raises(ValueError):
            await client.delete_conversation(USER, "")
        with pytest.raises(ValueError):
            await client.stop("", USER)
        assert rig.standin.request_count == 0
        for key in ("", "   ", "app key"):
            with pytest.raises(ValueError):
                DifyClient(rig.session, key, DifyOptions(base_url=rig.standin.url))


async def test_blank_conversation_id_starts_a_new_conversation() -> None:
    async with dify_rig() as rig:
        answer = await rig.client().chat(USER, "hi", "  ")
        assert "turn 1" in answer.text
        assert rig.standin.chat_requests[0].conversation_id is None


# ---------------------------------------------------------------------------- odd replies

CONV = "8f0c1f8e-5a3e-4b8e-9d55-0c2b7d9a1e01"
SSE = "text/event-stream"


def sse(*events: dict[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


async def test_stream_lingering_after_message_end_still_answers_promptly() -> None:
    async with dify_rig(ping_interval=0.02) as rig:
        rig.standin.linger_after_end()
        client = rig.client(end_grace=0.1, stream_deadline=WAIT)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await client.chat(USER, "hi", None)
        assert "you said 'hi'" in answer.text
        assert loop.time() - started < WAIT / 2  # the grace, not the deadline
        assert rig.standin.request_count == 1


async def test_stream_ending_after_text_without_message_end_keeps_the_text() -> None:
    async with dify_rig() as rig:
        partial = sse({"event": "message", "conversation_id": CONV, "answer": "half"})
        rig.standin.script_raw(200, partial, content_type=SSE)
        answer = await rig.client().chat(USER, "hi", None)
        # Dify has the turn already: asking again would add a second answer to the conversation.
        assert (answer.text, answer.ending, answer.conversation_id) == ("half", "interrupted", CONV)
        assert rig.standin.request_count == 1 and rig.time.sleeps == []


async def test_text_read_with_an_error_event_reaches_the_listener_before_the_error() -> None:
    """The listener hears once per read; the text ahead of an error in the same read is not
    lost to it (the parts it completes have been, or are being, sent)."""
    async with dify_rig() as rig:
        body = sse(
            {"event": "message", "conversation_id": CONV, "task_id": "t", "answer": "Para 1\n"},
            {"event": "message", "conversation_id": CONV, "task_id": "t", "answer": "Para 2"},
            {"event": "error", "code": "completion_request_error", "message": "boom"},
        )
        rig.standin.script_raw(200, body, content_type=SSE)
        heard: list[TextChunk] = []
        with pytest.raises(DifyStreamError):
            await rig.client().chat(USER, "hi", None, on_text=heard.append)
        assert heard == [TextChunk("Para 1\nPara 2", True, "t")]


async def test_an_answer_read_whole_is_not_streamed_to_the_listener() -> None:
    async with dify_rig() as rig:
        body = sse(
            {"event": "message", "conversation_id": CONV, "task_id": "t", "answer": "All "},
            {"event": "message", "conversation_id": CONV, "task_id": "t", "answer": "at once"},
            {"event": "message_end", "conversation_id": CONV, "task_id": "t"},
        )
        rig.standin.script_raw(200, body, content_type=SSE)
        heard: list[TextChunk] = []
        answer = await rig.client().chat(USER, "hi", None, on_text=heard.append)
        assert (answer.text, heard) == ("All at once", [])


async def test_stream_ending_before_any_text_is_retried_as_unavailable() -> None:
    async with dify_rig() as rig:
        no_text = sse({"event": "workflow_started", "conversation_id": CONV, "data": {}})
        rig.standin.script_raw(200, no_text, content_type=SSE)
        answer = await rig.client().chat(USER, "hi", None)
        assert "you said 'hi'" in answer.text and answer.ending == "complete"
        assert rig.standin.request_count == 2 and len(rig.time.sleeps) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"<html>Please log in to the hotel Wi-Fi</html>", "text/html", "not JSON"),
        (b'{"event": "message", "conversation_id": "x"}', "application/json", "no text 'answer'"),
        (b'{"answer": "hi"}', "application/json", "no 'conversation_id'"),
        (b"[]", "application/json", "not a JSON object"),
        (b"data: {not json}\n\n", SSE, "not JSON"),
        (b'data: {"answer": "no event"}\n\n', SSE, "'event' field"),
    ],
)
async def test_garbled_replies_are_protocol_errors_not_retried(
    body: bytes, content_type: str, fragment: str
) -> None:
    async with dify_rig() as rig:
        rig.standin.script_raw(200, body, content_type=content_type)
        client = rig.client(breaker_threshold=1)
        with pytest.raises(DifyProtocolError, match=fragment) as info:
            await client.chat(USER, "hi", None)
        assert isinstance(info.value, DifyUnavailable)  # to the user, the same outage
        assert rig.standin.request_count == 1 and rig.time.sleeps == []
        assert client.circuit_state == "open"  # but it does say the server is broken
        assert rig.observed[-1][0] == "protocol"


async def test_json_answer_to_a_streaming_request_is_accepted() -> None:
    async with dify_rig() as rig:
        body = json.dumps({"answer": "from a gateway", "conversation_id": CONV, "id": "m1"})
        rig.standin.script_raw(200, body.encode())
        answer = await rig.client(response_mode="streaming").chat(USER, "hi", None)
        assert (answer.text, answer.conversation_id, answer.message_id) == (
            "from a gateway",
            CONV,
            "m1",
        )
        assert dict(answer.usage) == {}


async def test_blocking_reply_without_conversation_id_keeps_the_callers() -> None:
    async with dify_rig() as rig:
        rig.standin.script_raw(200, json.dumps({"answer": "ok"}).encode())
        answer = await rig.client(response_mode="blocking").chat(USER, "hi", CONV)
        assert (answer.text, answer.conversation_id) == ("ok", CONV)


async def test_redirect_is_a_configuration_error() -> None:
    async with dify_rig() as rig:
        rig.standin.script_raw(
            301, b"", content_type="text/html", headers={"Location": "https://elsewhere/v1"}
        )
        with pytest.raises(DifyBadRequest, match="DIFY_API_URL"):
            await rig.client().chat(USER, "hi", None)
        assert rig.standin.request_count == 1


# --- issue 13 item 2: answers are bounded -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_over_max_answer_chars_is_cut_short(mode: str) -> None:
    async with dify_rig(answer=lambda ctx: "word " * 4000) as rig:
        answer = await rig.client(response_mode=mode, max_answer_chars=1000).chat(USER, "hi", None)
        assert answer.ending == "cut_short"
        assert answer.text == ("word " * 4000)[:1000]
        assert answer.conversation_id
        assert rig.standin.request_count == 1


async def test_a_stream_cut_short_stops_the_generation_for_its_user() -> None:
    async with dify_rig(answer=lambda ctx: "word " * 4000) as rig:
        answer = await rig.client(max_answer_chars=1000).chat(USER, "hi", None)
        assert answer.task_id
        assert [(s.task_id, s.user) for s in rig.standin.stop_requests] == [(answer.task_id, USER)]


async def test_an_answer_within_the_cap_is_complete() -> None:
    async with dify_rig(answer=lambda ctx: "word " * 100) as rig:
        answer = await rig.client(max_answer_chars=500).chat(USER, "hi", None)
        assert (answer.ending, answer.text) == ("complete", "word " * 100)
        assert rig.standin.stop_requests == []


async def test_the_bots_session_keeps_no_cookie_a_response_sets() -> None:
    """Dify is keyed by the bearer key; a gateway's (or a hostile peer's) cookies would only
    pile up in a jar without a bound, and be sent back to it."""
    from aiohttp import web

    from aimbot.api.dify_client import dify_session

    cookies_seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.Response(text="{}", content_type="application/json")
        response.set_cookie("tracker", "x" * 100)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat-messages", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with dify_session() as http:
            # By name: a jar keeps no cookie from a bare IP address anyway.
            for _ in range(2):
                async with http.post(f"http://localhost:{port}/v1/chat-messages", json={}) as r:
                    assert r.cookies["tracker"].value == "x" * 100  # it was set...
            assert len(http.cookie_jar) == 0
    finally:
        await runner.cleanup()
    assert cookies_seen == [None, None]  # ...and never sent back
