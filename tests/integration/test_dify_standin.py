"""The Dify stand-in on the wire: what a plain HTTP client sees, checked against the contract.

These tests speak raw HTTP (not our DifyClient) so that the stand-in is proven faithful on its
own; the client tests then rely on it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aimbot.devserver.dify_standin import (
    MSG_AGENT_BLOCKING,
    MSG_AUTH_HEADER,
    MSG_AUTH_INVALID,
    MSG_AUTH_SCHEME,
    MSG_BAD_JSON,
    MSG_BAD_UUID,
    MSG_NO_CONVERSATION,
    MSG_NO_USER,
    AnswerContext,
    DifyStandIn,
    default_answer,
)
from tests.helpers.dify import WAIT, dify_rig, guard_key_in_logs

USER = "aim:alice"


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield from guard_key_in_logs(caplog)


def chat_body(
    query: str = "hello", *, mode: str | None = "blocking", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "inputs": {}, "user": USER, **extra}
    if mode is not None:
        body["response_mode"] = mode
    return body


def assert_envelope(reply: Any, status: int, code: str, message: str | None = None) -> None:
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/json")
    payload = reply.json()
    assert payload["code"] == code and payload["status"] == status
    if message is not None:
        assert payload["message"] == message


# ---------------------------------------------------------------------------- auth, routing


async def test_auth_failures_have_dify_bodies_and_header() -> None:
    async with dify_rig() as rig:
        url = rig.standin.url + "/chat-messages"
        async with rig.session.post(url, json=chat_body()) as resp:
            missing = (resp.status, await resp.json(), resp.headers.get("WWW-Authenticate"))
        assert missing == (
            401,
            {"code": "unauthorized", "message": MSG_AUTH_HEADER, "status": 401},
            'Bearer realm="api"',
        )
        scheme = await rig.raw(
            "POST", "/chat-messages", chat_body(), headers={"Authorization": "Basic abc"}
        )
        assert_envelope(scheme, 401, "unauthorized", MSG_AUTH_SCHEME)
        wrong = await rig.raw(
            "POST", "/chat-messages", chat_body(), headers={"Authorization": "Bearer app-wrong"}
        )
        assert_envelope(wrong, 401, "unauthorized", MSG_AUTH_INVALID)
        assert rig.standin.request_count == 0  # rejected before the chat handler
        ok = await rig.raw(
            "POST",
            "/chat-messages",
            chat_body(),
            headers={"Authorization": f"bearer {rig.standin.api_key}"},
        )
        assert ok.status == 200  # the scheme is case-insensitive, as in Dify


async def test_unknown_route_is_a_json_404_even_without_a_key() -> None:
    async with dify_rig() as rig:
        async with rig.session.get(rig.standin.url + "/no-such-thing") as resp:
            assert resp.status == 404
            assert (await resp.json())["code"] == "not_found"
        wrong_method = await rig.raw("GET", "/chat-messages")
        assert_envelope(wrong_method, 405, "method_not_allowed")


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"query": "q", "inputs": {}}, "invalid_param", MSG_NO_USER),
        ({"query": "q", "inputs": {}, "user": ""}, "invalid_param", MSG_NO_USER),
        ({"query": "q", "user": USER}, "invalid_param", None),
        ({"inputs": {}, "user": USER}, "invalid_param", None),
        ({"query": "q", "inputs": [], "user": USER}, "invalid_param", None),
        (chat_body(mode="fast"), "invalid_param", None),
        (chat_body(conversation_id="not-a-uuid"), "invalid_param", MSG_BAD_UUID),
        (chat_body(conversation_id=42), "invalid_param", MSG_BAD_UUID),
    ],
)
async def test_invalid_chat_requests_get_documented_400s(
    body: dict[str, Any], code: str, message: str | None
) -> None:
    async with dify_rig() as rig:
        reply = await rig.raw("POST", "/chat-messages", body)
        assert_envelope(reply, 400, code, message)
        assert rig.standin.conversations == {}


@pytest.mark.parametrize("data", [b"", b"{not json", b"[1, 2]"])
async def test_unparseable_json_gets_the_documented_400(data: bytes) -> None:
    async with dify_rig() as rig:
        reply = await rig.raw(
            "POST", "/chat-messages", data=data, headers={"Content-Type": "application/json"}
        )
        assert_envelope(reply, 400, "bad_request", MSG_BAD_JSON)


# ---------------------------------------------------------------------------- replies


async def test_blocking_reply_has_the_documented_shape_and_visible_memory() -> None:
    async with dify_rig() as rig:
        first = await rig.raw("POST", "/chat-messages", chat_body("hi"))
        assert first.status == 200
        payload = first.json()
        conversation_id = payload["conversation_id"]
        assert uuid.UUID(conversation_id)
        for name in ("task_id", "id", "message_id", "created_at"):
            assert payload[name]
        assert payload["event"] == "message" and payload["mode"] == "chat"
        assert payload["id"] == payload["message_id"]
        assert payload["answer"] == default_answer(AnswerContext(USER, "hi", conversation_id, 1))
        usage = payload["metadata"]["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert isinstance(usage["total_price"], str) and usage["currency"] == "USD"
        assert payload["metadata"]["retriever_resources"] == []

        second = await rig.raw(
            "POST", "/chat-messages", chat_body("again", conversation_id=conversation_id)
        )
        assert f"turn 2 of conversation {conversation_id[:8]}" in second.json()["answer"]
        record = rig.standin.conversations[conversation_id]
        assert (record.user, record.turns, record.deleted) == (USER, 2, False)
        assert [r.query for r in rig.standin.chat_requests] == ["hi", "again"]
        assert rig.standin.chat_requests[1].conversation_id == conversation_id


async def test_missing_response_mode_means_blocking_as_in_dify() -> None:
    async with dify_rig() as rig:
        reply = await rig.raw("POST", "/chat-messages", chat_body(mode=None))
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.json()["answer"]


async def test_streaming_reply_is_dify_sse_with_raw_utf8_and_a_first_ping() -> None:
    text = "Grüße — " + "ünïcödé 🌍 " * 50

    async with dify_rig(answer=lambda ctx: text) as rig:
        reply = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert reply.body.startswith(b"event: ping\n\n")
        assert "Grüße".encode() in reply.body and b"\\u00fc" not in reply.body
        events = reply.events()
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "message_end" and set(kinds[:-1]) == {"message"}
        assert len(kinds) >= 3  # a few chunks, not one blob
        assert "".join(e["answer"] for e in events[:-1]) == text
        ids = {(e["task_id"], e["message_id"], e["conversation_id"]) for e in events}
        assert len(ids) == 1
        assert "usage" in events[-1]["metadata"]
        for line in reply.body.split(b"\n"):
            assert line in (b"", b"event: ping") or line.startswith(b"data: {")


async def test_pings_keep_coming_while_an_answer_takes_time() -> None:
    async with dify_rig(ping_interval=0.02) as rig:
        rig.standin.set_latency(0.2, user=USER)
        reply = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        assert reply.body.count(b"event: ping\n\n") >= 4
        assert reply.events()[-1]["event"] == "message_end"
        other = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming", user="aim:bob"))
        assert other.body.count(b"event: ping") == 1  # latency was for alice only


async def test_agent_mode_streams_thoughts_and_rejects_blocking() -> None:
    async with dify_rig(agent_mode=True) as rig:
        blocking = await rig.raw("POST", "/chat-messages", chat_body())
        assert_envelope(blocking, 400, "invalid_param", MSG_AGENT_BLOCKING)
        streaming = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        kinds = [e["event"] for e in streaming.events()]
        assert kinds[0] == "agent_thought" and kinds[-1] == "message_end"
        assert "agent_message" in kinds and "message" not in kinds
        info = await rig.raw("GET", "/info")
        assert info.json()["mode"] == "agent-chat"


async def test_answer_function_may_be_async_and_its_crash_is_dify_500() -> None:
    async def slow_answer(ctx: AnswerContext) -> str:
        await asyncio.sleep(0)
        if ctx.query == "crash":
            raise RuntimeError("model exploded")
        return ctx.query.upper()

    async with dify_rig() as rig:
        assert (
            "you said 'shout'"
            in (await rig.raw("POST", "/chat-messages", chat_body("shout"))).json()["answer"]
        )
        rig.standin.answer = slow_answer  # swapped on the running server
        reply = await rig.raw("POST", "/chat-messages", chat_body("shout"))
        assert reply.json()["answer"] == "SHOUT"
        crashed = await rig.raw("POST", "/chat-messages", chat_body("crash"))
        assert_envelope(crashed, 500, "internal_server_error")
        streamed = await rig.raw("POST", "/chat-messages", chat_body("crash", mode="streaming"))
        assert streamed.status == 200
        assert streamed.events()[-1]["event"] == "error"
        assert streamed.events()[-1]["status"] == 500


# ---------------------------------------------------------------------------- conversations


async def test_conversation_belongs_to_one_user() -> None:
    async with dify_rig() as rig:
        alice = (await rig.raw("POST", "/chat-messages", chat_body())).json()["conversation_id"]
        stolen = await rig.raw(
            "POST", "/chat-messages", chat_body(user="aim:mallory", conversation_id=alice)
        )
        assert_envelope(stolen, 404, "not_found", MSG_NO_CONVERSATION)
        unknown = await rig.raw(
            "POST", "/chat-messages", chat_body(conversation_id=str(uuid.uuid4()))
        )
        assert_envelope(unknown, 404, "not_found", MSG_NO_CONVERSATION)
        assert rig.standin.conversations[alice].turns == 1


async def test_delete_conversation_is_204_then_gone() -> None:
    async with dify_rig() as rig:
        cid = (await rig.raw("POST", "/chat-messages", chat_body())).json()["conversation_id"]
        not_yours = await rig.raw("DELETE", f"/conversations/{cid}", {"user": "aim:bob"})
        assert_envelope(not_yours, 404, "not_found", MSG_NO_CONVERSATION)
        deleted = await rig.raw("DELETE", f"/conversations/{cid}", {"user": USER})
        assert (deleted.status, deleted.body) == (204, b"")
        assert rig.standin.conversations[cid].deleted
        again = await rig.raw("DELETE", f"/conversations/{cid}", {"user": USER})
        assert again.status == 404
        chat = await rig.raw("POST", "/chat-messages", chat_body(conversation_id=cid))
        assert_envelope(chat, 404, "not_found", MSG_NO_CONVERSATION)
        no_body = await rig.raw("DELETE", f"/conversations/{cid}", data=b"")
        assert_envelope(no_body, 400, "bad_request", MSG_BAD_JSON)


async def test_parameters_info_and_meta() -> None:
    async with dify_rig() as rig:
        parameters = (await rig.raw("GET", "/parameters")).json()
        assert parameters["user_input_form"] == [] and "opening_statement" in parameters
        info = (await rig.raw("GET", "/info")).json()
        assert info["mode"] == "chat" and info["name"]
        assert (await rig.raw("GET", "/meta")).json() == {"tool_icons": {}}


async def test_stop_ends_a_pending_stream_only_for_its_owner() -> None:
    async with dify_rig(ping_interval=0.02) as rig:
        rig.standin.set_latency(WAIT)
        pending = asyncio.create_task(
            rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        )
        await rig.standin.wait_requests(1)
        [(task_id, owner)] = rig.standin.active_tasks()
        assert owner == USER
        ignored = await rig.raw("POST", f"/chat-messages/{task_id}/stop", {"user": "aim:bob"})
        assert ignored.json() == {"result": "success"}  # silently ignored, as in Dify
        assert not pending.done()
        stopped = await rig.raw("POST", f"/chat-messages/{task_id}/stop", {"user": USER})
        assert stopped.json() == {"result": "success"}
        async with asyncio.timeout(WAIT):
            reply = await pending
        assert reply.events()[-1]["event"] == "message_end"
        assert [(s.user, s.matched) for s in rig.standin.stop_requests] == [
            ("aim:bob", False),
            (USER, True),
        ]
        missing_user = await rig.raw("POST", f"/chat-messages/{task_id}/stop", {})
        assert_envelope(missing_user, 400, "invalid_param", MSG_NO_USER)


# ---------------------------------------------------------------------------- limits, faults


async def test_concurrency_limit_answers_the_documented_429() -> None:
    async with dify_rig(max_concurrency=1) as rig:
        rig.standin.set_latency(WAIT, user=USER)
        slow = asyncio.create_task(rig.raw("POST", "/chat-messages", chat_body(mode="streaming")))
        await rig.standin.wait_requests(1)
        assert rig.standin.active_requests == 1
        limited = await rig.raw("POST", "/chat-messages", chat_body(user="aim:bob"))
        assert_envelope(limited, 429, "too_many_requests")
        assert "Retry-After" not in limited.headers
        assert limited.json()["message"].startswith("Too many requests.")
        assert limited.json()["message"].endswith(f"for {rig.standin.app_id} is 1.")
        [(task_id, _)] = rig.standin.active_tasks()
        await rig.raw("POST", f"/chat-messages/{task_id}/stop", {"user": USER})
        async with asyncio.timeout(WAIT):
            await slow
        assert rig.standin.active_requests == 0
        after = await rig.raw("POST", "/chat-messages", chat_body(user="aim:bob"))
        assert after.status == 200


async def test_scripted_statuses_come_in_order_with_documented_bodies() -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(429, 500, 502, 503, 401, 403, 400)
        replies = [await rig.raw("POST", "/chat-messages", chat_body()) for _ in range(8)]
        assert [r.status for r in replies] == [429, 500, 502, 503, 401, 403, 400, 200]
        assert_envelope(replies[0], 429, "too_many_requests")
        assert_envelope(replies[1], 500, "internal_server_error")
        assert replies[2].headers["Content-Type"].startswith("text/html")
        assert b"502 Bad Gateway" in replies[2].body
        assert_envelope(replies[3], 503, "service_unavailable")
        assert_envelope(replies[4], 401, "unauthorized", MSG_AUTH_INVALID)
        assert replies[4].headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert_envelope(replies[5], 403, "forbidden")
        assert_envelope(replies[6], 400, "app_unavailable")
        assert rig.standin.pending_faults == 0
        assert rig.standin.request_count == 8


async def test_scripted_retry_after_non_json_502_and_custom_errors() -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(429, retry_after=7)
        rig.standin.non_json_502()
        rig.standin.script_too_many_requests_400()
        rig.standin.script_error(418, "teapot", "short and stout", headers={"X-Why": "tea"})
        first = await rig.raw("POST", "/chat-messages", chat_body())
        assert (first.status, first.headers["Retry-After"]) == (429, "7")
        html = await rig.raw("POST", "/chat-messages", chat_body())
        assert html.status == 502
        with pytest.raises(json.JSONDecodeError):
            html.json()
        too_many = await rig.raw("POST", "/chat-messages", chat_body())
        assert_envelope(too_many, 400, "invalid_param")
        assert too_many.json()["message"].startswith("Too many requests")
        custom = await rig.raw("POST", "/chat-messages", chat_body())
        assert_envelope(custom, 418, "teapot", "short and stout")
        assert custom.headers["X-Why"] == "tea"


async def test_mid_stream_error_and_its_blocking_twin() -> None:
    async with dify_rig(answer=lambda ctx: "x" * 400) as rig:
        rig.standin.fail_mid_stream(2)
        streamed = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        assert streamed.status == 200
        kinds = [e["event"] for e in streamed.events()]
        assert kinds[0] == "message" and kinds[-1] == "error" and "message_end" not in kinds
        error = streamed.events()[-1]
        assert (error["code"], error["status"]) == ("completion_request_error", 400)
        assert "task_id" not in error and error["conversation_id"]
        blocking = await rig.raw("POST", "/chat-messages", chat_body())
        assert_envelope(blocking, 400, "completion_request_error")
        healthy = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        assert healthy.events()[-1]["event"] == "message_end"


async def test_ping_only_stream_never_answers_until_the_client_leaves() -> None:
    async with dify_rig(ping_interval=0.01) as rig:
        rig.standin.ping_only()
        url = rig.standin.url + "/chat-messages"
        headers = {"Authorization": f"Bearer {rig.standin.api_key}"}
        async with rig.session.post(url, json=chat_body(mode="streaming"), headers=headers) as resp:
            assert resp.status == 200
            seen = b""
            while seen.count(b"event: ping\n\n") < 5:
                async with asyncio.timeout(WAIT):
                    seen += await resp.content.readany()
            assert b"data:" not in seen
            assert rig.standin.active_requests == 1
        # The stand-in notices the closed connection at its next ping and lets go.
        await rig.standin.wait_idle(WAIT)
        assert rig.standin.active_requests == 0


async def test_down_answers_503_until_cleared_and_keeps_queued_faults() -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(500)
        rig.standin.set_down(True)
        down = await rig.raw("POST", "/chat-messages", chat_body())
        assert_envelope(down, 503, "service_unavailable")
        rig.standin.set_down(False)
        assert (await rig.raw("POST", "/chat-messages", chat_body())).status == 500
        assert (await rig.raw("POST", "/chat-messages", chat_body())).status == 200


async def test_wait_requests_reports_what_it_saw_on_timeout() -> None:
    async with dify_rig() as rig:
        await rig.raw("POST", "/chat-messages", chat_body())
        await rig.standin.wait_requests(1, timeout=0.01)
        with pytest.raises(TimeoutError, match="saw 1 of 2 chat requests"):
            await rig.standin.wait_requests(2, timeout=0.05)


async def test_stop_is_prompt_even_with_hanging_requests() -> None:
    standin = DifyStandIn(ping_interval=WAIT)
    await standin.start()
    standin.ping_only(2)
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {standin.api_key}"}
        tasks = [
            asyncio.create_task(
                session.post(
                    standin.url + "/chat-messages", json=chat_body(mode=mode), headers=headers
                )
            )
            for mode in ("streaming", "blocking")
        ]
        await standin.wait_requests(2)
        async with asyncio.timeout(WAIT / 2):
            await standin.stop()  # far below the ping interval
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, aiohttp.ClientResponse):
                result.release()
    with pytest.raises(RuntimeError, match="not started"):
        _ = standin.url


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": ""},
        {"api_key": "has space"},
        {"max_concurrency": -1},
        {"ping_interval": 0},
        {"port": 70000},
    ],
)
def test_constructor_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DifyStandIn(**kwargs)


def test_scripting_rejects_nonsense() -> None:
    standin = DifyStandIn()
    with pytest.raises(ValueError):
        standin.script_statuses(200)
    with pytest.raises(ValueError):
        standin.ping_only(0)
    with pytest.raises(ValueError):
        standin.set_latency(-1)
    with pytest.raises(ValueError):
        standin.set_latency(float("nan"))


# ---------------------------------------------------------------------------- command line

REPO = Path(__file__).resolve().parents[2]
RUN_MAIN = (
    "import sys; from aimbot.devserver.dify_standin import main; sys.exit(main(sys.argv[1:]))"
)


async def test_command_line_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_MAIN,
        "--port",
        "0",
        "--api-key",
        "app-cli-key",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(WAIT):
            line = (await process.stdout.readline()).decode()
        assert "app-cli-key" in line
        url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
        assert url.endswith("/v1") and not url.endswith(":0/v1")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url + "/chat-messages",
                json=chat_body("from the cli"),
                headers={"Authorization": "Bearer app-cli-key"},
            ) as resp,
        ):
            assert resp.status == 200
            assert "from the cli" in (await resp.json())["answer"]
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    "args", [["--port", "-1"], ["--latency", "-2"], ["--ping-interval", "0"], ["--bogus"]]
)
async def test_command_line_rejects_bad_arguments(args: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_MAIN,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    async with asyncio.timeout(WAIT):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"usage:" in stderr


async def test_raw_replies_dropped_and_lingering_streams() -> None:
    async with dify_rig(ping_interval=0.01) as rig:
        rig.standin.script_raw(200, b"<html>portal</html>", content_type="text/html")
        portal = await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))
        assert (portal.status, portal.body) == (200, b"<html>portal</html>")
        assert portal.headers["Content-Type"].startswith("text/html")

        rig.standin.drop_mid_stream()
        with pytest.raises(aiohttp.ClientPayloadError):
            await rig.raw("POST", "/chat-messages", chat_body(mode="streaming"))

        rig.standin.linger_after_end()
        url = rig.standin.url + "/chat-messages"
        headers = {"Authorization": f"Bearer {rig.standin.api_key}"}
        async with rig.session.post(url, json=chat_body(mode="streaming"), headers=headers) as resp:
            seen = b""
            while b'"message_end"' not in seen or seen.count(b"event: ping") < 3:
                async with asyncio.timeout(WAIT):
                    seen += await resp.content.readany()
            assert not resp.content.at_eof()
        await rig.standin.wait_idle(WAIT)
        with pytest.raises(ValueError):
            rig.standin.script_raw(99, b"")
