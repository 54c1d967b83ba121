"""The server behaviours the bot depends on, checked the same way on our devserver and on Open
OSCAR Server (skipped where its binary is absent): where they disagree, the real server is right.

- several sessions of one screen name only when both logins ask for them (TLV 0x004A = 0x01),
  with a notice IM from "OOS System Msg" to the earlier session; otherwise the new login wins
  and the older one gets a sign-off whose form follows its own flag;
- the buddy list is kept by the server across the client's reconnects;
- away and idle show in the buddy's arrival notices, invisible as a departure; typing goes
  only to active sessions;
- an ordinary account over its rate limit loses IMs silently, then is signed off; an is_bot
  account is advertised the same classes and loses nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.ratelimit import never_limits
from aimbot.oscar.snacs import IcbmIncomingIM, IcbmSendIM, IcbmTyping, RateParamsReply, SignOff
from aimbot.oscar.snacs_services import (
    FEEDBAG_BUDDY,
    BuddyArrived,
    BuddyDeparted,
    FeedbagNotModified,
    FeedbagReply,
)
from aimbot.oscar.wire import TlvBlock, pack_u16, pack_u32
from tests.helpers.oos_server import OOS_SKIP_REASON, oos_binary, running_oos
from tests.helpers.purple_script import (
    PROFILE_MIME,
    PurpleSession,
    feedbag_item,
    purple_sign_on,
    snac_type,
)

HOST = "127.0.0.1"
ALICE = ("likealice", "alice-pw-1")
BOB = ("likebob", "bob-pw-22")
ROBOT = ("likerobot", "robot-pw-333")
MULTI = 0x01
SINGLE = 0x03


@dataclass
class Server:
    port: int

    async def sign_on(
        self, account: tuple[str, str], multi_conn: int | None = SINGLE
    ) -> PurpleSession:
        session, _ = await purple_sign_on(HOST, self.port, *account, multi_conn=multi_conn)
        return session


@contextlib.asynccontextmanager
async def devserver() -> AsyncIterator[Server]:
    async with OscarServer(host=HOST, port=0) as server:
        for name, password in (ALICE, BOB):
            server.add_account(name, password)
        server.add_account(*ROBOT, is_bot=True)
        yield Server(server.port)


@contextlib.asynccontextmanager
async def open_oscar_server() -> AsyncIterator[Server]:
    async with running_oos() as oos:
        for name, password in (ALICE, BOB):
            await oos.create_user(name, password)
        await oos.create_user(*ROBOT, is_bot=True)
        yield Server(oos.oscar_port)


Factory = Callable[[], contextlib.AbstractAsyncContextManager[Server]]
BOTH = [
    pytest.param(devserver, id="devserver"),
    pytest.param(
        open_oscar_server,
        id="open-oscar-server",
        marks=pytest.mark.skipif(oos_binary() is None, reason=OOS_SKIP_REASON),
    ),
]


def text_of(im: IcbmIncomingIM) -> bytes:
    message = im.message()
    assert message is not None and message.texts
    return b"".join(t.payload for t in message.texts)


async def im(sender: PurpleSession, to: str, text: bytes, cookie: bytes) -> None:
    body = IcbmSendIM.text_message(cookie, to, 0, text, want_ack=True).encode()
    assert [snac_type(a.header) for a in await sender.request(0x04, 0x06, body)] == [(4, 0x0C)]


@pytest.mark.parametrize("server_factory", BOTH)
async def test_two_sessions_that_both_ask_for_several_stay_on(server_factory: Factory) -> None:
    async with server_factory() as server:
        first = await server.sign_on(ALICE, MULTI)
        second = await server.sign_on(ALICE, MULTI)
        bob = await server.sign_on(BOB)
        try:
            notice = IcbmIncomingIM.decode((await first.wait_for((0x04, 0x07))).body)
            assert notice.sender.screen_name == "OOS System Msg"
            assert notice.cookie == bytes(8) and not notice.sender.tlvs.tlvs
            assert b"signed into" in text_of(notice) and b"2 locations" in text_of(notice)
            await im(bob, ALICE[0], b"to both", b"cookie01")
            for session in (first, second):
                got = IcbmIncomingIM.decode((await session.wait_for((0x04, 0x07))).body)
                assert text_of(got) == b"to both"
        finally:
            for session in (first, second, bob):
                await session.close()


@pytest.mark.parametrize(
    ("first_flag", "second_flag", "tlv_form"),
    [
        pytest.param(MULTI, SINGLE, True, id="multi-then-single"),
        pytest.param(SINGLE, MULTI, True, id="single-then-multi"),
        pytest.param(None, MULTI, False, id="old-client-then-multi"),
    ],
)
@pytest.mark.parametrize("server_factory", BOTH)
async def test_otherwise_the_new_login_signs_the_old_one_off(
    server_factory: Factory, first_flag: int | None, second_flag: int, tlv_form: bool
) -> None:
    async with server_factory() as server:
        first = await server.sign_on(ALICE, first_flag)
        second = await server.sign_on(ALICE, second_flag)
        try:
            frame = await first.closed()
            assert frame is not None, "no channel-4 sign-off before the close"
            if tlv_form:  # clients that sent TLV 0x004A are told why
                assert SignOff.decode(frame.payload).signed_on_elsewhere
            else:  # old clients get the bare 4-byte frame
                assert frame.payload == b""
            await im(second, ALICE[0], b"still here", b"cookie02")
        finally:
            await second.close()


@pytest.mark.parametrize("server_factory", BOTH)
async def test_the_buddy_list_survives_a_reconnect(server_factory: Factory) -> None:
    async with server_factory() as server:
        alice = await server.sign_on(ALICE)
        await alice.request(0x13, 0x08, feedbag_item(BOB[0], 1, 5, FEEDBAG_BUDDY), queued=STATUS)
        await alice.close()
        again = await server.sign_on(ALICE)
        try:
            stored = await again.request(0x13, 0x05, pack_u32(0) + pack_u16(0))
            reply = FeedbagReply.decode(stored[0].body)
            assert [(i.name, i.item_id) for i in reply.items] == [(BOB[0], 5)]
            current = pack_u32(reply.last_update + 10) + pack_u16(1)
            unchanged = await again.request(0x13, 0x05, current)
            assert [snac_type(a.header) for a in unchanged] == [(0x13, 0x0F)]
            assert FeedbagNotModified.decode(unchanged[0].body).count == 1
        finally:
            await again.close()


STATUS = (0x0013, 0x000E)


@pytest.mark.parametrize("server_factory", BOTH)
async def test_away_idle_and_invisible_show_and_typing_skips_an_away_buddy(
    server_factory: Factory,
) -> None:
    async with server_factory() as server:
        alice = await server.sign_on(ALICE)
        bob = await server.sign_on(BOB)
        try:
            await alice.request(
                0x13, 0x08, feedbag_item(BOB[0], 1, 5, FEEDBAG_BUDDY), queued=STATUS
            )
            online = BuddyArrived.decode((await alice.wait_for((0x03, 0x0B))).body).user
            assert (online.tlvs.get_int(0x0001) or 0) & 0x0020 == 0
            away = TlvBlock.of((0x0003, PROFILE_MIME), (0x0004, b"gone fishing")).encode()
            await bob.request(0x02, 0x04, away)
            changed = BuddyArrived.decode((await alice.wait_for((0x03, 0x0B))).body).user
            assert (changed.tlvs.get_int(0x0001) or 0) & 0x0020 == 0x0020
            await bob.request(0x01, 0x11, pack_u32(600))
            idle = BuddyArrived.decode((await alice.wait_for((0x03, 0x0B))).body).user
            assert idle.tlvs.get_int(0x0004) == 10  # minutes
            invisible = TlvBlock.of((0x0006, pack_u32(0x0100))).encode()
            await bob.request(0x01, 0x1E, invisible)
            gone = BuddyDeparted.decode((await alice.wait_for((0x03, 0x0C))).body).user
            assert gone.screen_name == BOB[0]
            await bob.request(0x01, 0x1E, TlvBlock.of((0x0006, pack_u32(0))).encode())
            back = BuddyArrived.decode((await alice.wait_for((0x03, 0x0B))).body).user
            assert back.screen_name == BOB[0]
            # Typing, then an IM: both go through the same queue, so a relayed typing
            # notification would arrive first.
            await alice.request(0x04, 0x14, IcbmTyping(BOB[0], 0x0002).encode())
            await im(alice, BOB[0], b"are you there?", b"cookie03")
            await bob.wait_for((0x04, 0x07))
            assert (0x04, 0x14) not in [snac_type(r.header) for r in bob.inbox]
        finally:
            await alice.close()
            await bob.close()


@pytest.mark.parametrize("server_factory", BOTH)
async def test_an_ordinary_account_over_its_limit_loses_ims_silently_then_is_signed_off(
    server_factory: Factory,
) -> None:
    async with server_factory() as server:
        alice = await server.sign_on(ALICE)
        bob = await server.sign_on(BOB)
        try:
            # One IM at a time (each behind the barrier of PurpleSession.request), so that the
            # server has read everything we sent when it hangs up and the close stays clean.
            answers = []
            for i in range(40):
                cookie = i.to_bytes(8, "big")
                flood = IcbmSendIM.text_message(cookie, BOB[0], 0, b"flood", want_ack=True)
                try:
                    answers += await alice.request(0x04, 0x06, flood.encode())
                except AssertionError:
                    break  # signed off
            seen = [snac_type(a.header) for a in answers]
            assert 0 < seen.count((0x04, 0x0C)) < 40
            assert (0x04, 0x01) not in seen  # dropped IMs get no error
            frame = alice.signed_off
            if frame is None:  # the sign-off was lost to the reset (see PurpleSession.reset)
                assert alice.reset
            else:
                assert SignOff.decode(frame.payload).signed_on_elsewhere
        finally:
            await bob.close()


@pytest.mark.parametrize("server_factory", BOTH)
async def test_an_exempt_account_is_advertised_the_classes_and_loses_nothing(
    server_factory: Factory,
) -> None:
    async with server_factory() as server:
        robot = await server.sign_on(ROBOT)
        bob = await server.sign_on(BOB)
        try:
            rates = await robot.request(0x0001, 0x0006)
            advertised = RateParamsReply.decode(rates[0].body, extended=True).classes
            assert advertised and not any(never_limits(c) for c in advertised)
            for i in range(40):
                await im(robot, BOB[0], b"fast", i.to_bytes(8, "big"))
            assert robot.signed_off is None
        finally:
            await robot.close()
            await bob.close()
