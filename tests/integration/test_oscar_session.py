"""Two real OscarClients and the devserver over loopback sockets: sign-on, IMs, typing, errors."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from aimbot.oscar.client import OscarClient, OutgoingIM, new_cookie
from aimbot.oscar.errors import (
    ConnectError,
    CookieError,
    LoginError,
    MessageTooLong,
    NotConnected,
    OscarError,
    ScreenNameError,
)
from aimbot.oscar.events import (
    DisconnectReason,
    HostAck,
    IMError,
    IncomingIM,
    RateChange,
    SessionEnded,
    TypingNotification,
    TypingState,
)
from aimbot.oscar.imtext import im_text_size, plain_to_html
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, never_limits
from aimbot.oscar.snacs import RATE_CODE_ALERT
from tests.helpers.oscar import HOST, PASSWORDS, WAIT, FakeClock, running_server, session_pool

MESSAGES = [
    "hello",
    "café — ünïcödé ✓ 你好 😀",
    "x" * 1500,
    ('Line <b>one</b> & "two" — ünï 😀\n' * 60)[:700],
]


def test_the_long_messages_really_are_1500_bytes_on_the_wire() -> None:
    assert im_text_size(plain_to_html(MESSAGES[2])) == 1500
    assert im_text_size(plain_to_html(MESSAGES[3])) >= 1500


async def test_two_clients_exchange_messages_intact_both_ways() -> None:
    clock = FakeClock()  # the throttle paces the 4th IM; pace in fake time, not real seconds
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", clock=clock, sleep=clock.sleep)
        bob = await pool.sign_on("Bob Smith", clock=clock, sleep=clock.sleep)
        for text in MESSAGES:
            await alice.client.send_im("bob smith", text)
            got = await bob.log.next(IncomingIM)
            assert got.text == text
            assert got.sender == "alice"
            assert not got.auto_response
            await bob.client.send_im("alice", text)
            back = await alice.log.next(IncomingIM)
            assert back.text == text
            assert back.sender == "Bob Smith"  # display form as the server stores it


async def test_many_ims_arrive_in_order() -> None:
    async with session_pool(enforce_rate_limits=False) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        bob = await pool.sign_on("bobsmith")
        for i in range(200):
            await alice.client.send_im("bobsmith", f"message {i}")
        received = [(await bob.log.next(IncomingIM)).text for _ in range(200)]
        assert received == [f"message {i}" for i in range(200)]


async def test_html_flag_sends_markup_as_given() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        await alice.client.send_im("bobsmith", "<b>bold</b> &amp; <BR>more", html=True)
        got = await bob.log.next(IncomingIM)
        assert got.html == "<b>bold</b> &amp; <BR>more"
        assert got.text == "bold & \nmore"


async def test_auto_response_flag_reaches_the_recipient() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        await alice.client.send_im("bobsmith", "I am away", auto_response=True)
        assert (await bob.log.next(IncomingIM)).auto_response


async def test_host_ack_carries_the_cookie_send_im_returned() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        await pool.sign_on("bobsmith")
        cookie = await alice.client.send_im("bobsmith", "ack me", request_ack=True)
        ack = await alice.log.next(HostAck)
        assert ack.cookie == cookie
        assert ack.recipient == "bobsmith"


async def test_a_cookie_chosen_by_the_caller_is_used_and_checked() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        chosen = new_cookie()
        assert len(chosen) == 8 and chosen != new_cookie()
        assert (
            await alice.client.send_im("bobsmith", "x", cookie=chosen, request_ack=True) == chosen
        )
        assert (await alice.log.next(HostAck)).cookie == chosen
        assert (await bob.log.next(IncomingIM)).cookie == chosen
        with pytest.raises(CookieError, match="8 bytes"):
            await alice.client.send_im("bobsmith", "x", cookie=b"short")


async def test_send_ims_sends_each_in_order_and_reports_the_one_that_cannot_go() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        ims = [
            OutgoingIM("bobsmith", "first", new_cookie(), request_ack=True),
            OutgoingIM("bad\nname", "never sent", new_cookie(), request_ack=True),
            OutgoingIM("bobsmith", "short cookie", b"short", request_ack=True),
            OutgoingIM("bobsmith", "<b>third</b>", new_cookie(), html=True, request_ack=True),
        ]
        results = await alice.client.send_ims(ims)
        assert results[0] is None and results[3] is None
        assert isinstance(results[1], ScreenNameError)
        assert isinstance(results[2], CookieError)
        got = [await bob.log.next(IncomingIM), await bob.log.next(IncomingIM)]
        assert [im.text for im in got] == ["first", "third"]
        assert [im.cookie for im in got] == [ims[0].cookie, ims[3].cookie]
        acks = [await alice.log.next(HostAck), await alice.log.next(HostAck)]
        assert [ack.cookie for ack in acks] == [ims[0].cookie, ims[3].cookie]


async def test_send_ims_now_writes_within_the_call_and_only_when_ready() -> None:
    """The synchronous send: the same results as send_ims(), written before it returns; before
    sign-on and after the session it refuses (NotConnected) and writes nothing."""
    async with session_pool() as pool:
        early = pool.client("alice")
        assert not early.ready_to_send(0x0004, 0x0006)
        with pytest.raises(NotConnected):
            early.send_ims_now([OutgoingIM("bobsmith", "too early", new_cookie())])
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        assert alice.client.ready_to_send(0x0004, 0x0006)
        ims = [
            OutgoingIM("bad\nname", "never sent", new_cookie(), request_ack=True),
            OutgoingIM("bobsmith", "now", new_cookie(), request_ack=True),
        ]
        results = alice.client.send_ims_now(ims)
        assert isinstance(results[0], ScreenNameError) and results[1] is None
        assert (await bob.log.next(IncomingIM)).cookie == ims[1].cookie
        assert (await alice.log.next(HostAck)).cookie == ims[1].cookie
        await alice.client.close()
        assert not alice.client.ready_to_send(0x0004, 0x0006)
        with pytest.raises(NotConnected):
            alice.client.send_ims_now([OutgoingIM("bobsmith", "too late", new_cookie())])


async def test_send_ims_without_a_session_raises_for_all() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        await alice.client.close()
        with pytest.raises(NotConnected):
            await alice.client.send_ims([OutgoingIM("bobsmith", "x", new_cookie())])


@pytest.mark.parametrize("throttle", [True, "auto"])
async def test_a_burst_the_send_budget_allows_stays_clear_of_the_server_limit(
    throttle: bool | str,
) -> None:
    clock = FakeClock()
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", throttle=throttle, clock=clock, sleep=clock.sleep)
        bob = await pool.sign_on("bobsmith")
        budget = alice.client.send_budget(0x0004, 0x0006, 100)
        assert 0 < budget < 100
        ims = [OutgoingIM("bobsmith", f"m{i}", new_cookie()) for i in range(budget)]
        assert await alice.client.send_ims(ims) == [None] * budget
        texts = [(await bob.log.next(IncomingIM)).text for _ in range(budget)]
        assert texts == [f"m{i}" for i in range(budget)]
        assert alice.client.send_budget(0x0004, 0x0006, 100) == 0
        assert alice.client.send_delay(0x0004, 0x0006) > 0
        assert clock.sleeps == []  # the batch itself was never paced
        notices = alice.log.of(RateChange)
        # Never limited; "auto" probes the alert line on purpose, to learn that it is enforced.
        assert all(notice.code == RATE_CODE_ALERT for notice in notices)
        assert throttle == "auto" or not notices


async def test_send_budget_is_unbounded_unthrottled_unless_the_server_model_is_asked() -> None:
    clock = FakeClock()
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", throttle=False, clock=clock, sleep=clock.sleep)
        assert alice.client.send_budget(0x0004, 0x0006, 50) == 50
        assert alice.client.send_budget(0x0004, 0x0006, 0) == 0
        assert 0 < alice.client.send_budget(0x0004, 0x0006, 50, server_model=True) < 50


async def test_a_server_without_limits_advertises_limits_that_never_bite() -> None:
    clock = FakeClock()
    async with session_pool(enforce_rate_limits=False, clock=clock) as pool:
        pool.server.add_account("robot", "robot-pw")
        robot = await pool.sign_on("robot", "robot-pw", clock=clock, sleep=clock.sleep)
        await pool.sign_on("bobsmith")
        assert all(never_limits(c) for c in robot.client.rate_classes.values())
        for _ in range(20):
            await robot.client.send_im("bobsmith", "no pacing needed")
        assert robot.client.send_delay(0x0004, 0x0006) == 0.0
        assert clock.sleeps == []


async def test_typing_notifications_are_relayed() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        for state in (TypingState.TYPING, TypingState.PAUSED, TypingState.NONE):
            await alice.client.send_typing("bobsmith", state)
            got = await bob.log.next(TypingNotification)
            assert got == TypingNotification("alice", state)


async def test_im_to_an_offline_user_yields_an_icbm_error_for_that_im() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        cookie = await alice.client.send_im("carol", "are you there?")
        error = await alice.log.next(IMError)
        assert error == IMError(0x0004, cookie, "carol")


async def test_limits_and_rate_classes_are_exposed() -> None:
    async with session_pool(max_message_bytes=700) as pool:
        alice = await pool.sign_on("alice")
        assert alice.client.max_message_bytes == 700
        classes = alice.client.rate_classes
        assert set(classes) == {c.class_id for c in DEFAULT_RATE_CLASSES}
        assert classes[3].window == DEFAULT_RATE_CLASSES[2].window
        assert alice.client.send_delay(0x0004, 0x0006) == 0.0
        assert alice.client.online


@pytest.mark.parametrize("accepted", [frozenset({"weak"}), frozenset({"strong"})])
async def test_login_works_with_servers_that_take_only_one_hash(accepted: frozenset[str]) -> None:
    async with session_pool(accepted_hashes=accepted) as pool:
        alice = await pool.sign_on("alice")
        assert alice.client.online


async def test_wrong_password_is_a_login_error_saying_so() -> None:
    async with running_server() as server:
        client = OscarClient("alice", "not-the-password", HOST, server.port)
        with pytest.raises(LoginError) as info:
            await client.connect()
        assert info.value.reason == "incorrect password"
        assert info.value.code == 0x0005
        assert not info.value.retryable
        assert "not-the-password" not in str(info.value)
        assert (await client.wait_ended()).reason is DisconnectReason.SIGNED_OFF
        await client.close()


async def test_unknown_screen_name_is_a_login_error_saying_so() -> None:
    async with running_server() as server:
        client = OscarClient("nobody", "whatever", HOST, server.port)
        with pytest.raises(LoginError) as info:
            await client.connect()
        assert info.value.reason == "unknown screen name"
        assert info.value.code == 0x0001
        assert not info.value.retryable


async def test_suspended_account_is_not_retryable() -> None:
    async with running_server() as server:
        server.add_account("dave", "dave-pw", suspended=True)
        with pytest.raises(LoginError) as info:
            await OscarClient("dave", "dave-pw", HOST, server.port).connect()
        assert info.value.code == 0x0011
        assert "suspended" in info.value.reason
        assert not info.value.retryable


async def test_rate_limited_login_is_retryable() -> None:
    async with running_server() as server:
        server.refuse_logins(0x001D)
        with pytest.raises(LoginError) as info:
            await OscarClient("alice", PASSWORDS["alice"], HOST, server.port).connect()
        assert info.value.retryable
        assert "rate-limited" in info.value.reason


async def test_connection_refused_is_a_connect_error_naming_the_address() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    client = OscarClient("alice", "pw", HOST, port)
    with pytest.raises(ConnectError, match=f"{HOST}:{port}"):
        await client.connect()
    ended = await client.wait_ended()
    assert ended.reason is DisconnectReason.EOF


async def test_silent_server_is_a_connect_error_within_connect_timeout() -> None:
    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(say_nothing, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = OscarClient("alice", "pw", HOST, port, connect_timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectError, match=r"within 0\.3 s"):
            await client.connect()
        assert loop.time() - started < 0.3 + 1.0
        assert (await client.wait_ended()).reason is DisconnectReason.TIMEOUT
    finally:
        server.close()
        await server.wait_closed()


async def test_close_signs_off_and_ends_the_events() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        await alice.client.close()
        await pool.server.wait_offline("alice", WAIT)
        ended = await alice.log.ended()
        assert ended.reason is DisconnectReason.CLOSED
        assert isinstance(alice.log.events[-1], SessionEnded)
        assert not alice.client.online
        with pytest.raises(NotConnected):
            await alice.client.send_im("bobsmith", "too late")
        with pytest.raises(NotConnected):
            await alice.client.send_typing("bobsmith", TypingState.TYPING)
        await alice.client.close()  # idempotent
        assert [e for e in alice.log.events if isinstance(e, SessionEnded)] == [ended]


async def test_events_before_anyone_iterates_are_kept_in_order() -> None:
    async with running_server() as server:
        alice = OscarClient("alice", PASSWORDS["alice"], HOST, server.port)
        bob = OscarClient("bobsmith", PASSWORDS["bobsmith"], HOST, server.port)
        await alice.connect()
        await bob.connect()
        await server.wait_online("bobsmith")
        try:
            await alice.send_typing("bobsmith", TypingState.TYPING)
            for i in range(3):
                await alice.send_im("bobsmith", f"queued {i}", request_ack=True)
            acks = 0
            async for event in alice.events():  # the server acks after relaying, in order
                acks += isinstance(event, HostAck)
                if acks == 3:
                    break
            server.sign_off("bobsmith")  # queued behind the relayed IMs in bob's stream
            assert (await bob.wait_ended()).reason is DisconnectReason.SIGNED_OFF
            events = [event async for event in bob.events()]
            assert events[0] == TypingNotification("alice", TypingState.TYPING)
            assert [e.text for e in events if isinstance(e, IncomingIM)] == [
                f"queued {i}" for i in range(3)
            ]
            assert isinstance(events[-1], SessionEnded) and len(events) == 5
            assert [event async for event in bob.events()] == []  # finished, never hangs
        finally:
            await alice.close()
            await bob.close()


async def test_send_before_connect_and_oversized_text_are_refused_clearly() -> None:
    async with session_pool() as pool:
        idle = pool.client("alice")
        with pytest.raises(NotConnected, match="not signed on"):
            await idle.send_im("bobsmith", "hi")
        alice = await pool.sign_on("alice")
        with pytest.raises(MessageTooLong, match="8001 bytes"):
            await alice.client.send_im("bobsmith", "y" * 8001)
        await idle.close()


@pytest.mark.parametrize(
    ("recipient", "why"),
    [
        ("", "is empty"),
        ("   ", "is blank"),
        ("x" * 98, "98 bytes long"),
        ("é" * 200, "200 bytes long"),
        ("bob\nsmith", "control characters"),
        ("\x00", "control characters"),
        ("你好", "no one-byte form"),
    ],
)
async def test_unsendable_recipients_raise_screen_name_error_for_ims_and_typing(
    recipient: str, why: str
) -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        with pytest.raises(ScreenNameError, match=why) as caught:
            await alice.client.send_im(recipient, "hi")
        assert isinstance(caught.value, OscarError)
        assert "\n" not in str(caught.value)  # the name is escaped, even in the message
        with pytest.raises(ScreenNameError, match=why):
            await alice.client.send_typing(recipient, TypingState.TYPING)
        assert alice.client.online  # refusing one recipient costs nothing else


async def test_connect_twice_is_refused() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        with pytest.raises(Exception, match="signs on once"):
            await alice.client.connect()


async def test_password_never_appears_in_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        await alice.client.send_im("carol", "offline")
        await alice.log.next(IMError)
        wrong = pool.client("alice", "wrong-secret-123")
        with pytest.raises(LoginError):
            await wrong.connect()
        text = caplog.text + repr(alice.client) + repr(wrong) + repr(pool.server)
        for secret in (PASSWORDS["alice"], "wrong-secret-123", *PASSWORDS.values()):
            assert secret not in text
        assert "alice" in caplog.text  # the log is not simply empty
