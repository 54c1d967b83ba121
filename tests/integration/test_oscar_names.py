"""Screen names from the network, over real loopback sockets: validated where they enter, kept
as the bytes the server sent, and escaped wherever they are logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aimbot.oscar import client as client_module
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import DisconnectReason, IncomingIM, SessionEnded
from tests.helpers.oscar import HOST, WAIT, session_pool
from tests.helpers.strict_oscar import strict_server

JEROME_LATIN1 = bytes.fromhex("4ae972f46d65")  # "Jérôme" in Latin-1
JEROME_UTF8 = "Jérôme".encode()
UNANSWERABLE = [b"", b" ", b"evil\nINFO aimbot: forged line", b"\xe9" * 252, b"x" * 98]


@pytest.mark.parametrize("name", [JEROME_LATIN1, JEROME_UTF8])
async def test_bad_senders_are_dropped_and_a_reply_goes_to_the_exact_bytes(
    name: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.oscar.client")
    async with strict_server() as server:
        server.ims = [(bad, b"no answer possible") for bad in UNANSWERABLE] + [(name, b"hi")]
        client = OscarClient("bot", "bot-password", HOST, server.port)
        try:
            async with asyncio.timeout(WAIT):
                await client.connect()
                event = await anext(client.events())
                assert isinstance(event, IncomingIM) and event.text == "hi"
                await client.send_im(event.sender, "hello back")
                await server.got_im.wait()
            assert server.recipients == [name]
            assert client.online
        finally:
            await client.close()
    dropped = [r for r in caplog.records if "dropping an IM" in r.getMessage()]
    assert len(dropped) == len(UNANSWERABLE)
    assert all(r.levelno == logging.WARNING for r in dropped)
    for record in caplog.records:
        assert "\n" not in record.getMessage()  # no forged log lines
    assert any("'evil\\nINFO aimbot: forged line'" in r.getMessage() for r in dropped)


async def test_a_latin1_screen_name_account_is_answered_through_the_devserver() -> None:
    async with session_pool() as pool:
        pool.server.add_account("Jérôme", "jerome-pw")
        bot = await pool.sign_on("alice")
        jerome = await pool.sign_on("Jérôme", "jerome-pw")
        await jerome.client.send_im("alice", "bonjour")
        got = await bot.log.next(IncomingIM)
        assert got.sender == "Jérôme"
        await bot.client.send_im(got.sender, "salut")
        assert (await jerome.log.next(IncomingIM)).text == "salut"


@pytest.mark.parametrize(("advertised", "used"), [(20_000, 8000), (10, 64), (1, 64)])
async def test_an_advertised_im_size_out_of_range_is_clamped_with_a_warning(
    advertised: int, used: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aimbot.oscar.client")
    async with session_pool(max_message_bytes=advertised) as pool:
        alice = await pool.sign_on("alice")
        assert alice.client.max_message_bytes == used
    assert any(
        f"maximum IM size of {advertised} bytes; using {used}" in r.getMessage()
        for r in caplog.records
    )


async def test_an_advertised_im_size_in_range_is_used_as_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aimbot.oscar.client")
    async with session_pool(max_message_bytes=2544) as pool:
        alice = await pool.sign_on("alice")
        assert alice.client.max_message_bytes == 2544
    assert not any("maximum IM size" in r.getMessage() for r in caplog.records)


async def test_a_slow_consumer_holds_the_reader_back_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = 5
    monkeypatch.setattr(client_module, "EVENT_QUEUE_LIMIT", limit)
    async with session_pool(enforce_rate_limits=False) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        bob = pool.client("bobsmith")  # no EventLog: nobody reads bob's events yet
        await bob.connect()
        try:
            for i in range(40):
                await alice.client.send_im("bobsmith", f"message {i}")
            async with asyncio.timeout(WAIT):
                await bob.wait_paused()  # the queue filled; reading stopped
            assert bob.queued_events == limit
            received = []
            async with asyncio.timeout(WAIT):
                async for event in bob.events():
                    assert bob.queued_events <= limit
                    assert isinstance(event, IncomingIM)
                    received.append(event.text)
                    if len(received) == 40:
                        break
            assert received == [f"message {i}" for i in range(40)]
        finally:
            await bob.close()


async def test_a_session_held_back_by_backpressure_still_ends_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "EVENT_QUEUE_LIMIT", 3)
    async with session_pool(enforce_rate_limits=False) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        bob = pool.client("bobsmith")
        await bob.connect()
        for i in range(10):
            await alice.client.send_im("bobsmith", f"message {i}")
        async with asyncio.timeout(WAIT):
            await bob.wait_paused()
        async with asyncio.timeout(WAIT):
            await bob.close()
        events = [event async for event in bob.events()]
        assert [e.text for e in events if isinstance(e, IncomingIM)] == [
            "message 0",
            "message 1",
            "message 2",
        ]
        assert events[-1] == SessionEnded(DisconnectReason.CLOSED, "closed by us")
