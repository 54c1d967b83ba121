"""Inbound IMs are validated where they enter; screen names keep the bytes the server sent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.events import IncomingIM
from aimbot.oscar.intake import DroppedIM, incoming_im
from aimbot.oscar.snacs import (
    IcbmIncomingIM,
    IcbmSendIM,
    IcbmTyping,
    MessageData,
    TextFragment,
    UserInfo,
)
from aimbot.oscar.wire import (
    MAX_SCREEN_NAME_BYTES,
    TlvBlock,
    decode_screen_name,
    encode_screen_name,
    pack_str8,
    pack_u16,
    printable,
    screen_name_problem,
)
from tests.helpers.oscar import tlvs_from_bytes

COOKIE = b"\x01\x02\x03\x04\x05\x06\x07\x08"
JEROME_LATIN1 = bytes.fromhex("4ae972f46d65")  # "Jérôme" in Latin-1
JEROME_UTF8 = "Jérôme".encode()


def im_body(sender: bytes, text: bytes = b"hi", channel: int = 1, extra: bytes = b"") -> bytes:
    message = MessageData((TextFragment(0, 0, text),)).encode()
    return (
        COOKIE
        + pack_u16(channel)
        + pack_str8(sender)
        + pack_u16(0)  # warning level
        + pack_u16(0)  # user info TLV count
        + TlvBlock.of((0x0002, message)).encode()
        + extra
    )


def intake(body: bytes) -> IncomingIM | DroppedIM:
    return incoming_im(IcbmIncomingIM.decode(body))


@pytest.mark.parametrize("raw", [JEROME_LATIN1, JEROME_UTF8, b"Bob Smith", b"\xff\xfe"])
def test_a_reply_goes_to_exactly_the_bytes_the_name_arrived_as(raw: bytes) -> None:
    im = intake(im_body(raw))
    assert isinstance(im, IncomingIM)
    assert encode_screen_name(im.sender) == raw
    reply = IcbmSendIM.text_message(COOKIE, im.sender, 0, b"hello").encode()
    assert reply[10 : 11 + len(raw)] == bytes([len(raw)]) + raw
    typing = IcbmTyping(im.sender, 2).encode()
    assert typing[10 : 11 + len(raw)] == bytes([len(raw)]) + raw


def test_the_latin1_name_is_not_re_encoded_as_utf8() -> None:
    im = intake(im_body(JEROME_LATIN1))
    assert isinstance(im, IncomingIM)
    assert im.sender == "Jérôme"
    assert encode_screen_name(im.sender) != JEROME_UTF8


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "is empty"),
        (b" ", "is blank"),
        (b"   ", "is blank"),
        (b"x" * (MAX_SCREEN_NAME_BYTES + 1), "98 bytes long"),
        (b"\xe9" * 252, "252 bytes long"),
        (b"evil\nINFO forged line", "control characters"),
        (b"tab\there", "control characters"),
        (b"del\x7f", "control characters"),
    ],
)
def test_a_sender_nobody_could_answer_is_dropped(raw: bytes, why: str) -> None:
    result = intake(im_body(raw))
    assert isinstance(result, DroppedIM) and not result.routine
    assert why in result.reason
    assert "\n" not in printable(result.sender)


def test_names_of_exactly_the_cap_are_answerable() -> None:
    assert screen_name_problem("x" * MAX_SCREEN_NAME_BYTES) is None
    assert isinstance(intake(im_body(b"x" * MAX_SCREEN_NAME_BYTES)), IncomingIM)


def test_non_text_channels_and_missing_message_data_are_dropped() -> None:
    rendezvous = intake(im_body(b"alice", channel=2))
    assert isinstance(rendezvous, DroppedIM) and rendezvous.routine
    bare = COOKIE + pack_u16(1) + UserInfo("alice").encode()
    missing = intake(bare)
    assert isinstance(missing, DroppedIM) and "no message data" in missing.reason


def test_charset_0_ucs2_text_arrives_intact() -> None:
    im = intake(im_body(b"alice", "café 你好 😀".encode("utf-16-be")))
    assert isinstance(im, IncomingIM) and im.text == "café 你好 😀"


def test_printable_escapes_what_could_forge_a_log_line() -> None:
    assert printable("a\nb") == "'a\\nb'"
    assert printable("x\r\x00\x1b[31m") == "'x\\r\\x00\\x1b[31m'"
    assert printable("back\\slash") == "'back\\\\slash'"
    assert printable("Jérôme 你好") == "'Jérôme 你好'"
    assert printable("z" * 500).endswith("…'")
    assert len(printable("z" * 500)) < 210


@given(st.binary(max_size=300))
def test_screen_names_round_trip_any_bytes(raw: bytes) -> None:
    assert encode_screen_name(decode_screen_name(raw)) == raw


@given(
    st.binary(max_size=300),
    st.binary(max_size=120),
    st.binary(max_size=200),
    st.integers(0, 3),
    st.none() | st.binary(max_size=120),
)
def test_any_sender_and_any_tlvs_give_a_valid_im_a_dropped_one_or_protocol_error(
    sender: bytes, tlv_blob: bytes, trailer: bytes, channel: int, message: bytes | None
) -> None:
    tlvs = tlvs_from_bytes(tlv_blob, 6)
    if message is not None:  # message data (TLV 0x0002) of any shape, first so it is the one read
        tlvs = TlvBlock(TlvBlock.of((0x0002, message)).tlvs + tlvs.tlvs)
    head = COOKIE + pack_u16(channel) + bytes([len(sender) % 256]) + sender[:255]
    body = head + pack_u16(0) + pack_u16(0) + tlvs.encode() + trailer
    try:
        result = intake(body)
    except ProtocolError:
        return
    if isinstance(result, IncomingIM):
        assert screen_name_problem(result.sender) is None
        assert isinstance(result.text, str) and isinstance(result.html, str)
    else:
        assert isinstance(result, DroppedIM) and result.reason
