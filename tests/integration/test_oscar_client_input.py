"""What a signed-on OscarClient does with odd but survivable server input (injected raw)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aimbot.oscar.events import (
    IncomingIM,
    RateChange,
    SessionEnded,
    TypingNotification,
)
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES
from aimbot.oscar.snacs import (
    IcbmIncomingIM,
    IcbmTyping,
    MessageData,
    RateParamsChange,
    SnacBody,
    TextFragment,
    UserInfo,
)
from aimbot.oscar.wire import Channel, TlvBlock, encode_frame, encode_snac
from tests.helpers.oscar import Session, SessionPool, session_pool

MARKER = "marker after the odd input"


def snac_frame(body: SnacBody, *, flags: int = 0, prefix: bytes = b"") -> bytes:
    payload = encode_snac(body.FAMILY, body.SUBGROUP, 0x80000000, prefix + body.encode(), flags)
    return encode_frame(Channel.DATA, 1, payload)


def text_im(text: str, *, channel: int = 1) -> IcbmIncomingIM:
    message = MessageData((TextFragment(0, 0, text.encode()),))
    return IcbmIncomingIM(
        b"COOKIE42", channel, UserInfo("mallory"), TlvBlock.of((2, message.encode()))
    )


async def still_alive(pool: SessionPool, session: Session) -> None:
    """The session survived: a normal IM sent after the odd input still arrives."""
    pool.server.send_raw("alice", snac_frame(text_im(MARKER)))
    got = await session.log.next(IncomingIM)
    assert got.text == MARKER
    assert session.client.online


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(
            encode_frame(Channel.DATA, 1, encode_snac(4, 7, 0, b"short")), id="bad-im-body"
        ),
        pytest.param(encode_frame(Channel.DATA, 1, b"\x00\x04"), id="snac-shorter-than-header"),
        pytest.param(snac_frame(text_im("file transfer?", channel=2)), id="rendezvous-im"),
        pytest.param(snac_frame(IcbmTyping("mallory", 9)), id="unknown-typing-state"),
        pytest.param(encode_frame(Channel.ERROR, 1, b"\x00"), id="flap-error-frame"),
        pytest.param(encode_frame(9, 1, b"?"), id="unknown-channel"),
        pytest.param(
            encode_frame(Channel.DATA, 1, encode_snac(0x13, 0x03, 0, b"")), id="unknown-snac"
        ),
        pytest.param(
            encode_frame(Channel.DATA, 1, encode_snac(2, 1, 7, b"\x00\x05")), id="other-error"
        ),
        pytest.param(encode_frame(Channel.KEEPALIVE, 1, b""), id="keepalive"),
    ],
)
async def test_odd_input_is_skipped_and_the_session_goes_on(odd: bytes) -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        pool.server.send_raw("alice", odd)
        await still_alive(pool, alice)
        assert len(alice.log.of(IncomingIM)) == 1  # nothing else was turned into an IM


async def test_snac_with_the_optional_prefix_flag_is_read_past_the_prefix() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        pool.server.send_raw(
            "alice", snac_frame(text_im("prefixed"), flags=0x8000, prefix=b"\x00\x02xy")
        )
        assert (await alice.log.next(IncomingIM)).text == "prefixed"


async def test_typing_from_the_server_becomes_an_event() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        pool.server.send_raw("alice", snac_frame(IcbmTyping("Mallory M", 1)))
        got = await alice.log.next(TypingNotification)
        assert (got.sender, got.state.name) == ("Mallory M", "PAUSED")


async def test_rate_notice_updates_the_throttle_and_is_reported() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        assert alice.client.send_delay(4, 6) == 0.0
        im_class = DEFAULT_RATE_CLASSES[2]
        lowered = RateParamsChange(3, replace(im_class, current_level=3500))
        pool.server.send_raw("alice", snac_frame(lowered))
        notice = await alice.log.next(RateChange)
        assert (notice.code, notice.class_id) == (3, 3)
        assert alice.client.send_delay(4, 6) > 1.0
        assert alice.client.rate_classes[3].current_level == 3500


async def test_garbage_after_valid_frames_is_skipped_and_the_stream_goes_on() -> None:
    async with session_pool() as pool:
        alice = await pool.sign_on("alice")
        bob = await pool.sign_on("bobsmith")
        await bob.client.send_im("alice", "before the garbage")
        assert (await alice.log.next(IncomingIM)).text == "before the garbage"
        pool.server.send_raw("alice", b"\xff" * 6 + b"*\x02")
        await bob.client.send_im("alice", "after the garbage")
        assert (await alice.log.next(IncomingIM)).text == "after the garbage"
        assert alice.client.online and not alice.log.of(SessionEnded)
