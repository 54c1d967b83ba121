"""Conformance: a real AIM client's sign-on, replayed against our devserver and the real server.

The client is libpurple's oscar code, scripted step by step (tests/helpers/purple_script.py):
each request waits for the server's answer before the next, as libpurple does. The same script
runs against our devserver and against Open OSCAR Server (../shared, skipped where absent; see
tests/helpers/oos_server.py). Both must answer every request with the same SNAC types, and the
session must then work: a buddy added to the server-stored list is announced online, its
profile can be read, IMs and typing notifications go both ways, and its departure is announced.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.snacs import IcbmIncomingIM, IcbmSendIM, IcbmTyping
from aimbot.oscar.snacs_services import (
    FEEDBAG_BUDDY,
    FEEDBAG_GROUP,
    BuddyArrived,
    BuddyDeparted,
    FeedbagReply,
    LocateUserInfoReply,
)
from aimbot.oscar.wire import pack_str8, pack_u16
from tests.helpers.oos_server import OOS_SKIP_REASON, oos_binary, running_oos
from tests.helpers.purple_script import (
    PurpleSession,
    Received,
    SignOnTrace,
    SnacType,
    feedbag_item,
    purple_sign_on,
    snac_type,
    user_info_query,
)

HOST = "127.0.0.1"
USER = ("purpleuser", "purple-pw-1")
BUDDY = ("purplebuddy", "buddy-pw-22")
BUDDY_PROFILE = "I am the buddy; type help"

# What libpurple waits for after each request (oscar.c): the rights replies and the list (or
# "not modified") before it calls itself online; requests without an answer get none.
LIBPURPLE_EXPECTS: dict[SnacType, list[SnacType]] = {
    (0x01, 0x17): [(0x01, 0x18)],
    (0x01, 0x06): [(0x01, 0x07)],
    (0x01, 0x08): [],
    (0x01, 0x0E): [(0x01, 0x0F)],
    (0x13, 0x02): [(0x13, 0x03)],
    (0x13, 0x05): [(0x13, 0x06)],
    (0x02, 0x02): [(0x02, 0x03)],
    (0x03, 0x02): [(0x03, 0x03)],
    (0x04, 0x04): [(0x04, 0x05)],
    (0x09, 0x02): [(0x09, 0x03)],
    (0x02, 0x04): [],
    (0x04, 0x02): [],
    (0x01, 0x1E): [(0x01, 0x0F)],
    (0x01, 0x11): [],
    (0x13, 0x07): [],
    (0x01, 0x02): [],
    (0x04, 0x10): [(0x04, 0x17)],
}
FAMILIES_LIBPURPLE_NEEDS = {0x0001, 0x0002, 0x0003, 0x0004, 0x0009, 0x0013}
RATE_NOTICE = (0x0001, 0x000A)
STATUS = (0x0013, 0x000E)  # OOS sends it through the session's queue, after later answers


@dataclass
class Target:
    name: str
    port: int


@dataclass
class Outcome:
    """What one server did for the scripted session, as SNAC types in order."""

    trace: SignOnTrace
    after_signon: list[SnacType] = field(default_factory=list)
    steps: dict[str, list[SnacType]] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def devserver() -> AsyncIterator[Target]:
    async with OscarServer(host=HOST, port=0) as server:
        for name, password in (USER, BUDDY):
            server.add_account(name, password)
        yield Target("devserver", server.port)


@contextlib.asynccontextmanager
async def open_oscar_server() -> AsyncIterator[Target]:
    async with running_oos() as oos:
        for name, password in (USER, BUDDY):
            await oos.create_user(name, password)
        yield Target("Open OSCAR Server", oos.oscar_port)


SERVERS = {"devserver": devserver, "oos": open_oscar_server}
needs_oos = pytest.mark.skipif(oos_binary() is None, reason=OOS_SKIP_REASON)
BOTH = [
    pytest.param("devserver", id="devserver"),
    pytest.param("oos", id="open-oscar-server", marks=needs_oos),
]


async def run_script(target: Target) -> Outcome:
    """The whole scripted session against one server; asserts what must hold on any server."""
    user, trace = await purple_sign_on(HOST, target.port, *USER)
    buddy: PurpleSession | None = None
    try:
        outcome = Outcome(trace)
        # Sent by the server on its own after sign-on (message of the day, stats interval);
        # rate notices are left out: OOS looks at rates once a second, we at once.
        stats = await user.wait_for((0x000B, 0x0002))
        unasked = {snac_type(r.header) for r in [*user.inbox, stats]} - {RATE_NOTICE}
        outcome.after_signon = sorted(unasked)
        user.inbox.clear()
        unknown = await user.request(0x0055, 0x0003, pack_u16(1) + pack_str8(b"x"))
        outcome.steps["55/03 unknown"] = types(unknown)
        assert unknown[0].body[:2] == b"\x00\x01", target.name

        buddy, _ = await purple_sign_on(HOST, target.port, *BUDDY, profile=BUDDY_PROFILE)
        outcome.steps["13/11"] = types(await user.request(0x13, 0x11))
        group = feedbag_item("Buddies", 1, 0, FEEDBAG_GROUP)
        outcome.steps["13/08 group"] = types(await user.request(0x13, 0x08, group, queued=STATUS))
        item = feedbag_item(BUDDY[0], 1, 7, FEEDBAG_BUDDY)
        outcome.steps["13/08 buddy"] = types(await user.request(0x13, 0x08, item, queued=STATUS))
        outcome.steps["13/12"] = types(await user.request(0x13, 0x12))
        arrived = BuddyArrived.decode((await user.wait_for((0x03, 0x0B))).body)
        assert arrived.user.screen_name == BUDDY[0], target.name

        stored = await user.request(0x13, 0x04)
        outcome.steps["13/04"] = types(stored)
        names = {i.name for i in FeedbagReply.decode(stored[0].body).items}
        assert names == {"Buddies", BUDDY[0]}, target.name

        info = await user.request(0x02, 0x05, user_info_query(BUDDY[0], 0x0001))
        outcome.steps["02/05"] = types(info)
        reply = LocateUserInfoReply.decode(info[0].body)
        assert reply.tlvs.get(0x0002) == BUDDY_PROFILE.encode(), target.name
        offline = await user.request(0x02, 0x05, user_info_query("nobodyhere", 0x0001))
        outcome.steps["02/05 offline"] = types(offline)

        await exchange_im(user, buddy, outcome, target)
        await buddy.close()
        buddy = None
        departed = await user.wait_for((0x03, 0x0C))
        assert BuddyDeparted.decode(departed.body).user.screen_name == BUDDY[0], target.name
        return outcome
    finally:
        await user.close()
        if buddy is not None:
            await buddy.close()


async def exchange_im(
    user: PurpleSession, buddy: PurpleSession, outcome: Outcome, target: Target
) -> None:
    """An IM and a typing notification each way; the sender asks for a host ack, as the bot."""
    cookie = b"purple01"
    im = IcbmSendIM.text_message(cookie, BUDDY[0], 0, b"<HTML>hello buddy</HTML>", want_ack=True)
    outcome.steps["04/06"] = types(await user.request(0x04, 0x06, im.encode()))
    incoming = IcbmIncomingIM.decode((await buddy.wait_for((0x04, 0x07))).body)
    message = incoming.message()
    assert message is not None and message.texts[0].payload == b"<HTML>hello buddy</HTML>"
    assert (incoming.cookie, incoming.sender.screen_name) == (cookie, USER[0]), target.name

    typing = IcbmTyping(BUDDY[0], 0x0002).encode()
    outcome.steps["04/14"] = types(await user.request(0x04, 0x14, typing))
    relayed = IcbmTyping.decode((await buddy.wait_for((0x04, 0x14))).body)
    assert (relayed.screen_name, relayed.event) == (USER[0], 0x0002), target.name

    back = IcbmSendIM.text_message(b"purple02", USER[0], 0, b"hello yourself")
    outcome.steps["04/06 back"] = types(await buddy.request(0x04, 0x06, back.encode()))
    answer = IcbmIncomingIM.decode((await user.wait_for((0x04, 0x07))).body)
    assert answer.sender.screen_name == BUDDY[0], target.name
    typed = IcbmTyping(USER[0], 0x0000).encode()
    outcome.steps["04/14 back"] = types(await buddy.request(0x04, 0x14, typed))
    assert IcbmTyping.decode((await user.wait_for((0x04, 0x14))).body).event == 0


def types(answers: Sequence[Received]) -> list[SnacType]:
    return [snac_type(a.header) for a in answers]


@pytest.mark.parametrize("server", BOTH)
async def test_libpurple_sign_on_gets_every_answer_it_waits_for(server: str) -> None:
    async with SERVERS[server]() as target:
        outcome = await run_script(target)
    assert set(outcome.trace.host_online) >= FAMILIES_LIBPURPLE_NEEDS, target.name
    assert dict(outcome.trace.steps) == LIBPURPLE_EXPECTS, target.name
    assert [request for request, _ in outcome.trace.steps] == list(LIBPURPLE_EXPECTS)


@needs_oos
async def test_devserver_answers_like_open_oscar_server() -> None:
    async with devserver() as ours:
        mine = await run_script(ours)
    async with open_oscar_server() as real:
        theirs = await run_script(real)
    assert mine.trace.host_online == theirs.trace.host_online
    assert mine.trace.steps == theirs.trace.steps
    assert mine.after_signon == theirs.after_signon
    assert mine.steps == theirs.steps
