"""SNAC bodies of locate, buddy, PD, feedbag and the OService extras: layouts as Open OSCAR
Server sends them (bytes seen on the wire) and round trips; every decoder is also fuzzed with the
others in test_oscar_snacs.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.snacs import UserInfo
from aimbot.oscar.snacs_services import (
    SERVICE_SNAC_TYPES,
    BuddyArrived,
    BuddyDeparted,
    FeedbagInsert,
    FeedbagItem,
    FeedbagNotModified,
    FeedbagQueryIfModified,
    FeedbagReply,
    FeedbagStatus,
    IdleNotification,
    LocateUserInfoQuery,
    LocateUserInfoQuery2,
    LocateUserInfoReply,
    MessageOfTheDay,
)
from aimbot.oscar.wire import TlvBlock


def test_feedbag_reply_layout_as_oos_sends_it() -> None:
    # 13/06 from Open OSCAR Server for a group "Buddies" (1/0, class 1) and buddy xxb (1/7).
    wire = bytes.fromhex(
        "0000020007427564646965730001000000010000000378786200010007000000006b0d9787"
    )
    reply = FeedbagReply.decode(wire)
    assert [(i.name, i.group_id, i.item_id, i.class_id) for i in reply.items] == [
        ("Buddies", 1, 0, 1),
        ("xxb", 1, 7, 0),
    ]
    assert reply.last_update == 0x6B0D9787
    assert reply.encode() == wire


def test_empty_feedbag_reply_is_seven_bytes() -> None:
    assert FeedbagReply().encode() == bytes(7)


def test_query_if_modified_takes_libpurples_u16_count_and_oos_u8_form() -> None:
    assert FeedbagQueryIfModified.decode(bytes.fromhex("000000050002")).last_update == 5
    assert FeedbagQueryIfModified.decode(bytes.fromhex("0000000502")).count == 2
    assert FeedbagQueryIfModified.decode(bytes.fromhex("00000005")).count == 0
    assert FeedbagNotModified(0x6B0D9787, 2).encode() == bytes.fromhex("6b0d978702")


def test_feedbag_edits_carry_items_back_to_back() -> None:
    items = (
        FeedbagItem("Buddies", 1, 0, 1),
        FeedbagItem("bob", 1, 7, 0, TlvBlock.of((0x0131, b"Bobby"))),
    )
    body = FeedbagInsert(items).encode()
    assert FeedbagInsert.decode(body).items == items
    assert FeedbagStatus((0, 0x0A)).encode() == b"\x00\x00\x00\x0a"
    with pytest.raises(ProtocolError):
        FeedbagStatus.decode(b"\x00")


def test_user_info_queries_and_reply() -> None:
    assert LocateUserInfoQuery(1, "bob").encode() == b"\x00\x01\x03bob"
    assert LocateUserInfoQuery2.decode(b"\x00\x00\x00\x03\x03bob").wants(0x0002)
    info = UserInfo("bob", 0, TlvBlock.of((0x0001, b"\x00\x11")))
    reply = LocateUserInfoReply(info, TlvBlock.of((0x0002, b"hello")))
    assert LocateUserInfoReply.decode(reply.encode()) == reply


def test_buddy_departure_as_oos_sends_it() -> None:
    departed = BuddyDeparted.decode(bytes.fromhex("0378786200000001000100020000"))
    assert departed.user.screen_name == "xxb"
    assert departed.user.tlvs.get_int(0x0001) == 0
    assert BuddyArrived(departed.user).encode() == bytes.fromhex("0378786200000001000100020000")


def test_motd_and_idle() -> None:
    motd = MessageOfTheDay.decode(bytes.fromhex("0004000b0003686921"))
    assert motd.kind == 4 and motd.tlvs.get(0x000B) == b"hi!"
    assert IdleNotification(600).encode() == b"\x00\x00\x02\x58"


def _family_and_subgroup(cls: Any) -> tuple[int, int]:
    """A SNAC class's (family, subgroup) (the table types its values as plain `type`)."""
    key: tuple[int, int] = (cls.FAMILY, cls.SUBGROUP)
    return key


def test_every_service_snac_has_its_own_family_and_subgroup() -> None:
    assert len({_family_and_subgroup(c) for c in SERVICE_SNAC_TYPES.values()}) == len(
        SERVICE_SNAC_TYPES
    )


@given(
    st.lists(
        st.tuples(st.text(max_size=20), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
        max_size=5,
    ),
    st.integers(0, 0xFFFFFFFF),
)
def test_feedbag_replies_round_trip(raw: list[tuple[str, int, int]], last_update: int) -> None:
    items = tuple(FeedbagItem(name, group, item, 0) for name, group, item in raw)
    reply = FeedbagReply(items, last_update)
    decoded = FeedbagReply.decode(reply.encode())
    assert decoded.last_update == last_update
    assert [(i.group_id, i.item_id) for i in decoded.items] == [(g, i) for _, g, i in raw]
