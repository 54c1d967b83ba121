"""Every way a session can die surfaces as SessionEnded within the configured bound; rate limits
are enforced by the devserver and respected by the client's throttle."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest

from aimbot.oscar.errors import NotConnected
from aimbot.oscar.events import (
    DisconnectReason,
    HostAck,
    IMError,
    IncomingIM,
    RateChange,
    SessionEnded,
    TypingState,
)
from aimbot.oscar.ratelimit import never_limits
from aimbot.oscar.snacs import IcbmIncomingIM
from tests.helpers.oscar import PASSWORDS, WAIT, FakeClock, RawPeer, Session, session_pool

KEEPALIVE = 0.25
READ_TIMEOUT = 0.25
BOUND = KEEPALIVE + READ_TIMEOUT
SLACK = 0.75  # scheduling noise on a loaded 2-core machine


class Timeouts(TypedDict):
    keepalive_interval: float
    read_timeout: float


FAST: Timeouts = {"keepalive_interval": KEEPALIVE, "read_timeout": READ_TIMEOUT}


async def ended_within(session: Session, bound: float) -> tuple[DisconnectReason, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended = await session.log.ended(timeout=bound + SLACK)
    return ended.reason, loop.time() - started


async def test_killed_server_is_noticed_at_once() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        await pool.server.stop(abrupt=True)
        reason, _ = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.EOF
        assert not alice.client.online


async def test_dropped_session_is_eof() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        bob = await pool.sign_on("bobsmith", **FAST)
        await pool.server.drop_session("alice")
        reason, _ = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.EOF
        assert bob.client.online and pool.server.is_online("bobsmith")


@pytest.mark.parametrize("who", ["alice", None])
async def test_stalled_server_times_out_within_keepalive_plus_read_timeout(who: str | None) -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        pool.server.stall(who)
        reason, elapsed = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.TIMEOUT
        assert elapsed <= BOUND + SLACK
        pool.server.stall(who, stalled=False)


async def test_idle_but_healthy_session_survives_many_keepalive_rounds() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        with pytest.raises(TimeoutError):
            await alice.log.ended(timeout=4 * BOUND)
        assert alice.client.online


async def test_duplicate_login_signs_the_first_session_off() -> None:
    async with session_pool() as pool:
        first = await pool.sign_on("alice", **FAST)
        # A login that does not ask for several sessions (0x03) replaces the first one.
        second = await RawPeer.sign_on(pool.server.port, "alice", PASSWORDS["alice"], multi_conn=3)
        reason, _ = await ended_within(first, BOUND)
        assert reason is DisconnectReason.SIGNED_ON_ELSEWHERE
        bob = await pool.sign_on("bobsmith")
        await bob.client.send_im("alice", "to the new session")
        _, body = await second.snac(lambda h: (h.family, h.subgroup) == (0x0004, 0x0007))
        message = IcbmIncomingIM.decode(body).message()
        assert message is not None and message.texts[0].payload == b"to the new session"
        await second.close()


async def test_a_malformed_write_is_skipped_and_the_im_behind_it_arrives() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        bob = await pool.sign_on("bobsmith")
        await pool.server.send_malformed("alice")
        await bob.client.send_im("alice", "right behind the junk")
        assert (await alice.log.next(IncomingIM)).text == "right behind the junk"
        assert alice.client.online and not alice.log.of(SessionEnded)


async def test_junk_with_no_frame_to_resume_at_ends_the_session() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        pool.server.send_raw("alice", b"\x00" * 70_000)
        reason, _ = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.PROTOCOL_ERROR
        assert "junk in the FLAP stream" in (await alice.client.wait_ended()).detail


async def test_four_byte_signoff_without_length_is_understood() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        pool.server.sign_off("alice", short_form=True)
        reason, _ = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.SIGNED_OFF


async def test_signoff_with_code_1_means_signed_on_elsewhere() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        pool.server.sign_off("alice", code=1)
        reason, _ = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.SIGNED_ON_ELSEWHERE


async def test_restart_on_the_same_port_signs_off_and_accepts_new_logins() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice", **FAST)
        port = pool.server.port
        await pool.server.restart()
        reason, _ = await ended_within(alice, BOUND)
        assert reason is DisconnectReason.SIGNED_OFF
        assert pool.server.port == port
        again = await pool.sign_on("alice", **FAST)
        assert again.client.online


async def test_a_throttle_wait_ends_when_the_session_does() -> None:
    never = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await never.wait()

    clock = FakeClock()
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", clock=clock, sleep=sleep_forever, **FAST)
        await pool.sign_on("bobsmith")
        sent = 0
        while alice.client.send_delay(0x0004, 0x0006) == 0:
            await alice.client.send_im("bobsmith", "burst")
            sent += 1
        assert sent < 10
        blocked = asyncio.create_task(alice.client.send_im("bobsmith", "waits for rate budget"))
        await pool.server.drop_session("alice")
        with pytest.raises(NotConnected):
            async with asyncio.timeout(WAIT):
                await blocked


# -- rate limits -----------------------------------------------------------------------------------


async def test_sending_past_the_rate_limit_drops_silently_with_notices() -> None:
    clock = FakeClock()  # frozen: every IM arrives "back to back"
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        bob = await pool.sign_on("bobsmith")
        cookies = [
            await alice.client.send_im("bobsmith", f"burst {i}", request_ack=True) for i in range(8)
        ]
        while (await alice.log.next(RateChange)).code != 3:
            pass  # the limited notice is sent while the 8th IM is dropped
        clock.now += 120  # the level recovers: the next IM goes through again
        # and, as on OOS, the server says so on its own, without waiting for another IM
        assert (await alice.log.next(RateChange)).code == 4
        later = await alice.client.send_im("bobsmith", "after the pause", request_ack=True)
        acks = [(await alice.log.next(HostAck)).cookie for _ in range(8)]
        received = [(await bob.log.next(IncomingIM)).text for _ in range(8)]
        # Like Open OSCAR Server: the 8th is dropped with no error and no ack; acks and IMs
        # keep their order, so anything for it would have come before the 9th's.
        assert acks == [*cookies[:7], later]
        assert received == [*(f"burst {i}" for i in range(7)), "after the pause"]
        assert alice.log.of(IMError) == []
        assert pool.server.stats.rate_limited["alice"] == 1
        assert alice.client.online
        notices = alice.log.of(RateChange)
        assert [(n.code, n.class_id) for n in notices] == [(2, 3), (3, 3), (4, 3)]


async def test_sending_past_the_disconnect_level_ends_the_session() -> None:
    clock = FakeClock()
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        await pool.sign_on("bobsmith")
        for i in range(14):
            await alice.client.send_im("bobsmith", f"flood {i}")
        ended = await alice.log.ended()
        assert ended.reason is DisconnectReason.RATE_LIMITED
        assert "rate limit (class 3)" in ended.detail
        assert pool.server.stats.rate_disconnects["alice"] == 1
        await pool.server.wait_offline("alice", WAIT)


async def test_the_signed_on_elsewhere_code_after_going_over_the_limit_means_rate_limited() -> None:
    # Open OSCAR Server ends a session past the disconnect level with sign-off code 0x0001, the
    # code of "signed on elsewhere"; the client's rate bookkeeping tells the two apart.
    clock = FakeClock()
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", throttle=False)
        await pool.sign_on("bobsmith")
        for i in range(9):
            await alice.client.send_im("bobsmith", f"burst {i}")
        assert (await alice.log.next(RateChange)).code == 2
        assert (await alice.log.next(RateChange)).code == 3
        pool.server.sign_off("alice", code=1)
        ended = await alice.log.ended()
        assert ended.reason is DisconnectReason.RATE_LIMITED
        assert "not another login" in ended.detail


async def test_throttled_client_never_trips_the_enforced_limit() -> None:
    clock = FakeClock()  # the client's pacing sleeps advance the server's clock too
    async with session_pool(clock=clock) as pool:
        alice = await pool.sign_on("alice", clock=clock, sleep=clock.sleep)
        bob = await pool.sign_on("bobsmith")
        for i in range(25):
            await alice.client.send_im("bobsmith", f"paced {i}")
            await alice.client.send_typing("bobsmith", TypingState.TYPING)
        received = [(await bob.log.next(IncomingIM)).text for _ in range(25)]
        assert received == [f"paced {i}" for i in range(25)]
        assert pool.server.stats.rate_limited["alice"] == 0
        assert alice.log.of(IMError) == []
        assert clock.sleeps, "25 back-to-back IMs must have been paced"
        assert alice.client.send_delay(0x0004, 0x0006) > 0


async def test_bot_accounts_are_exempt_from_rate_limits() -> None:
    clock = FakeClock()
    async with session_pool(clock=clock) as pool:
        pool.server.add_account("bot", "bot-pw", is_bot=True)
        bot = await pool.sign_on("bot", "bot-pw", throttle=False)
        bob = await pool.sign_on("bobsmith")
        # Like Open OSCAR Server: the ordinary classes are advertised, never enforced, and no
        # rate notice ever comes (the silence is how a client learns it is exempt).
        assert not any(never_limits(c) for c in bot.client.rate_classes.values())
        for i in range(30):
            await bot.client.send_im("bobsmith", f"fast {i}")
        received = [(await bob.log.next(IncomingIM)).text for _ in range(30)]
        assert received == [f"fast {i}" for i in range(30)]
        assert bot.log.of(IMError) == [] and bot.log.of(RateChange) == []
