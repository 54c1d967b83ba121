"""SNAC bodies (docs/oscar-protocol.md §4-§10): exact layouts, lenient decoding, round trips and
fuzzing."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS, RateClass, RateGroup
from aimbot.oscar.snacs import (
    SNAC_TYPES,
    BucpChallenge,
    BucpChallengeRequest,
    BucpLoginRequest,
    BucpLoginResponse,
    ClientOnline,
    ClientVersions,
    FlapHello,
    HostOnline,
    HostVersions,
    IcbmError,
    IcbmHostAck,
    IcbmIncomingIM,
    IcbmParamsReply,
    IcbmParamsRequest,
    IcbmParamsSet,
    IcbmSendIM,
    IcbmTyping,
    LocateSetInfo,
    MessageData,
    NoOp,
    RateParamsAck,
    RateParamsChange,
    RateParamsReply,
    RateParamsRequest,
    SelfInfoReply,
    SelfInfoRequest,
    SignOff,
    SnacError,
    TextFragment,
    UserInfo,
    describe_error,
    login_hash,
    normalize_screen_name,
    parse_bos_address,
)
from aimbot.oscar.snacs_services import SERVICE_SNAC_TYPES
from aimbot.oscar.wire import Reader, Tlv, TlvBlock, decode_snac, decode_tlvs
from tests.helpers.oscar import tlvs_from_bytes

# -- BUCP ------------------------------------------------------------------------------------------


def test_challenge_request_layout() -> None:
    assert BucpChallengeRequest("alice").encode() == b"\x00\x01\x00\x05alice"
    assert BucpChallengeRequest.decode(b"\x00\x01\x00\x05alice") == BucpChallengeRequest("alice")


def test_challenge_request_without_screen_name_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="0x0001"):
        BucpChallengeRequest.decode(b"\x00\x4b\x00\x00")


def test_challenge_key_is_a_str16() -> None:
    assert BucpChallenge.decode(b"\x00\x0a1234567890") == BucpChallenge(b"1234567890")
    assert BucpChallenge(b"k3y").encode() == b"\x00\x03k3y"
    with pytest.raises(ProtocolError):
        BucpChallenge.decode(b"\x00\x0a123")


def test_login_hashes_follow_the_documented_formulas() -> None:
    key, password = b"3141592653", "hunter2"
    suffix = b"AOL Instant Messenger (SM)"
    weak = hashlib.md5(key + password.encode() + suffix).digest()
    strong = hashlib.md5(key + hashlib.md5(password.encode()).digest() + suffix).digest()
    assert login_hash(key, password, strong=False) == weak
    assert login_hash(key, password, strong=True) == strong
    assert weak != strong


def test_login_request_marks_the_strong_hash_and_multi_conn() -> None:
    digest = bytes(range(16))
    strong = BucpLoginRequest("alice", digest, strong_hash=True, client_name="aimbot")
    tlvs = Reader(strong.encode()).tlv_rest()
    assert tlvs.get(0x0001) == b"alice"
    assert tlvs.get(0x0025) == digest
    assert tlvs.get(0x004C) == b""
    assert tlvs.get(0x0003) == b"aimbot"
    # u8 as RAS reads it; 0x03 = one session: a second login signs this one off
    assert tlvs.get(0x004A) == b"\x03"
    weak = BucpLoginRequest("alice", digest, strong_hash=False, multi_conn=None)
    weak_tlvs = Reader(weak.encode()).tlv_rest()
    assert not weak_tlvs.has(0x004C) and not weak_tlvs.has(0x004A)


def test_login_request_needs_a_16_byte_hash() -> None:
    with pytest.raises(ProtocolError, match="16 bytes"):
        BucpLoginRequest("alice", b"short").encode()
    body = TlvBlock.of((0x0001, b"alice"), (0x0025, b"short")).encode()
    with pytest.raises(ProtocolError, match="0x0025"):
        BucpLoginRequest.decode(body)


def test_login_response_success_and_error_forms() -> None:
    ok = BucpLoginResponse("Alice", "127.0.0.1:5190", b"cookie")
    assert BucpLoginResponse.decode(ok.encode()) == ok
    assert ok.succeeded
    failed = BucpLoginResponse.decode(TlvBlock.of((0x0008, b"\x00\x05")).encode())
    assert failed.error_code == 5 and not failed.succeeded


def test_login_response_with_neither_cookie_nor_error_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="neither"):
        BucpLoginResponse.decode(TlvBlock.of((0x0001, b"alice")).encode())


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:5191", ("127.0.0.1", 5191)),
        ("bos.example.com", ("bos.example.com", 5190)),
        ("[::1]:6000", ("::1", 6000)),
        ("[::1]", ("::1", 5190)),
        (" host:1 ", ("host", 1)),
    ],
)
def test_bos_address_forms(address: str, expected: tuple[str, int]) -> None:
    assert parse_bos_address(address) == expected


@pytest.mark.parametrize("address", ["", ":5190", "host:port", "host:0", "host:70000", "[::1"])
def test_bad_bos_addresses_are_protocol_errors(address: str) -> None:
    with pytest.raises(ProtocolError):
        parse_bos_address(address)


def test_screen_names_normalise_by_dropping_spaces_and_case() -> None:
    assert normalize_screen_name("Bob Smith") == normalize_screen_name("bobsmith") == "bobsmith"


# -- channel 1 / channel 4 -------------------------------------------------------------------------


def test_hello_with_and_without_cookie() -> None:
    assert FlapHello().encode() == b"\x00\x00\x00\x01"
    hello = FlapHello.decode(FlapHello.with_cookie(b"abc").encode())
    assert hello.version == 1 and hello.cookie == b"abc"
    with pytest.raises(ProtocolError):
        FlapHello.decode(b"\x00\x00")


@pytest.mark.parametrize("code_bytes", [b"\x01", b"\x00\x01"])
def test_signoff_code_is_read_in_either_width(code_bytes: bytes) -> None:
    payload = TlvBlock.of((0x0009, code_bytes), (0x000B, b"http://x")).encode()
    signoff = SignOff.decode(payload)
    assert signoff.signed_on_elsewhere
    assert signoff.error_url == "http://x"


def test_empty_signoff() -> None:
    assert SignOff.decode(b"") == SignOff()
    assert not SignOff().signed_on_elsewhere
    assert SignOff().encode() == b""
    assert SignOff(1).encode() == b"\x00\x09\x00\x01\x01"
    assert SignOff(1).encode(one_byte_code=False) == b"\x00\x09\x00\x02\x00\x01"


# -- errors and OSERVICE ---------------------------------------------------------------------------


def test_snac_error_with_and_without_subcode() -> None:
    assert SnacError.decode(b"\x00\x04") == SnacError(4)
    with_sub = IcbmError(4, 0x10)
    assert IcbmError.decode(with_sub.encode()) == with_sub
    assert describe_error(4) == "recipient not logged on"
    assert "0x0999" in describe_error(0x999)
    with pytest.raises(ProtocolError):
        SnacError.decode(b"\x00")


def test_family_lists() -> None:
    assert HostOnline.decode(b"\x00\x01\x00\x04") == HostOnline((1, 4))
    versions = ClientVersions(((1, 3), (4, 1)))
    assert versions.encode() == bytes.fromhex("0001000300040001")
    assert ClientVersions.decode(versions.encode()).version_of(1) == 3
    assert versions.version_of(0x13) is None
    assert HostVersions.decode(versions.encode()).versions == versions.versions
    with pytest.raises(ProtocolError, match="multiple of 4"):
        # An odd word count (docs/oscar-protocol.md §12.10).
        ClientVersions.decode(b"\x00\x01\x00\x03\x00\x04")
    with pytest.raises(ProtocolError, match="odd"):
        HostOnline.decode(b"\x00\x01\x00")
    online = ClientOnline(((1, 3, 0x110, 0x164F),))
    assert ClientOnline.decode(online.encode()) == online
    with pytest.raises(ProtocolError, match="multiple of 8"):
        ClientOnline.decode(bytes(6))


def test_rate_reply_record_sizes_follow_the_declared_version() -> None:
    cls3 = DEFAULT_RATE_CLASSES[2]
    groups = DEFAULT_RATE_GROUPS
    for extended, size in ((False, 30), (True, 35)):
        reply = RateParamsReply((cls3,), (groups[2],), extended)
        body = reply.encode()
        assert len(body) == 2 + size + 4 + 4 * len(groups[2].members)
        assert RateParamsReply.decode(body) == reply  # detected
        assert RateParamsReply.decode(body, extended=extended) == reply


def test_rate_reply_with_trailing_garbage_is_rejected() -> None:
    body = RateParamsReply(DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS).encode() + b"\x00"
    with pytest.raises(ProtocolError):
        RateParamsReply.decode(body)


def test_rate_reply_needs_one_group_per_class() -> None:
    with pytest.raises(ProtocolError, match="one group per class"):
        RateParamsReply(DEFAULT_RATE_CLASSES, ()).encode()


def test_rate_notice_detects_the_record_size() -> None:
    cls = DEFAULT_RATE_CLASSES[0]
    for extended in (False, True):
        notice = RateParamsChange(3, cls, extended)
        assert RateParamsChange.decode(notice.encode()) == notice
    with pytest.raises(ProtocolError, match="cannot hold"):
        RateParamsChange.decode(b"\x00\x03" + bytes(29))


def test_empty_requests_and_rate_ack() -> None:
    for cls in (RateParamsRequest, SelfInfoRequest, NoOp, IcbmParamsRequest):
        assert cls().encode() == b""
        assert cls.decode(b"") == cls()
    ack = RateParamsAck((1, 2, 3, 4, 5))
    assert ack.encode() == bytes.fromhex("00010002000300040005")
    assert RateParamsAck.decode(ack.encode()) == ack


def test_self_info_keeps_the_second_block_of_newer_servers() -> None:
    user = UserInfo("Alice", 0, TlvBlock.of((1, b"\x00\x10")))
    reply = SelfInfoReply.decode(user.encode() + b"extra")
    assert reply.user == user
    assert reply.extra == b"extra"


# -- ICBM ------------------------------------------------------------------------------------------


def test_icbm_params_layout_with_ras_values() -> None:
    params = IcbmParamsReply(0, 3, 512, 999, 999, 0)
    assert params.encode() == bytes.fromhex(
        "0000 00000003 0200 03e7 03e7 00000000".replace(" ", "")
    )
    assert IcbmParamsReply.decode(params.encode() + b"extra") == params
    assert IcbmParamsSet().flags & 0x8  # typing notifications requested
    with pytest.raises(ProtocolError):
        IcbmParamsSet.decode(bytes(15))


def test_send_im_layout_matches_the_documented_bytes() -> None:
    cookie = b"12345678"
    snac = IcbmSendIM.text_message(cookie, "bob", 0x0000, b"hi", want_ack=True)
    expected = (
        cookie
        + b"\x00\x01"
        + b"\x03bob"
        + b"\x00\x02\x00\x12"  # TLV 2: message data, 18 bytes
        + b"\x05\x01\x00\x04\x01\x01\x01\x02"  # features fragment
        + b"\x01\x01\x00\x06\x00\x00\x00\x00hi"  # text fragment: charset 0, subset 0
        + b"\x00\x03\x00\x00"  # want host ack
        + b"\x00\x0b\x00\x00"  # we send typing notifications
    )
    assert snac.encode() == expected
    decoded = IcbmSendIM.decode(expected)
    assert decoded == snac
    assert decoded.want_ack and not decoded.auto_response
    assert decoded.message() == MessageData((TextFragment(0, 0, b"hi"),))


def test_send_im_auto_response_flag() -> None:
    snac = IcbmSendIM.text_message(bytes(8), "bob", 0, b"away", auto_response=True)
    assert snac.auto_response and not snac.want_ack


def test_cookie_must_be_eight_bytes() -> None:
    with pytest.raises(ProtocolError, match="8 bytes"):
        IcbmSendIM(b"short", 1, "bob").encode()


def test_incoming_im_from_hand_assembled_bytes() -> None:
    message = b"\x01\x01\x00\x08\x00\x02\x00\x00\x00h\x00i"  # UCS-2BE "hi", no features
    body = (
        b"ABCDEFGH\x00\x01"
        # sender, warning 0, TLV count 0 (docs/oscar-protocol.md §7)
        + b"\x09Bob Smith\x00\x00\x00\x00"
        + Tlv(0x0002, message).encode()
        + Tlv(0x0004, b"").encode()
        + Tlv(0x0016, b"\x00\x00\x00\x01").encode()
    )
    im = IcbmIncomingIM.decode(body)
    assert im.cookie == b"ABCDEFGH" and im.channel == 1
    assert im.sender.screen_name == "Bob Smith"
    assert im.auto_response
    data = im.message()
    assert data is not None and data.texts == (TextFragment(2, 0, b"\x00h\x00i"),)
    assert data.features == b""
    assert IcbmIncomingIM.decode(im.encode()) == im


def test_message_data_keeps_several_text_fragments_and_skips_unknown_ones() -> None:
    data = (
        b"\x05\x01\x00\x01\x01"
        + b"\x01\x01\x00\x05\x00\x00\x00\x00a"
        + b"\x07\x01\x00\x02zz"
        + b"\x01\x01\x00\x05\x00\x03\xff\xffb"
    )
    decoded = MessageData.decode(data)
    assert decoded.texts == (TextFragment(0, 0, b"a"), TextFragment(3, 0xFFFF, b"b"))
    with pytest.raises(ProtocolError):
        MessageData.decode(b"\x01\x01\x00\x02\x00\x00")  # text fragment too short for charset


def test_host_ack_and_typing_layouts() -> None:
    ack = IcbmHostAck(b"12345678", 1, "bob")
    assert ack.encode() == b"12345678\x00\x01\x03bob"
    assert IcbmHostAck.decode(ack.encode()) == ack
    typing = IcbmTyping("bob", 2)
    assert typing.encode() == bytes(8) + b"\x00\x01\x03bob\x00\x02"
    assert IcbmTyping.decode(typing.encode()) == typing


def test_every_snac_class_has_its_own_family_and_subgroup() -> None:
    # 25 classes are registered; a duplicate (family, subgroup) would silently shrink the table.
    assert len(SNAC_TYPES) == 25


def test_profile_is_labelled_with_its_charset() -> None:
    ascii_info = LocateSetInfo.profile_text("I am a bot; type help")
    tlvs = Reader(ascii_info.encode()).tlv_rest()
    assert tlvs.get(0x0001) == b'text/aolrtf; charset="us-ascii"'
    assert tlvs.get(0x0002) == b"I am a bot; type help"
    wide = LocateSetInfo.profile_text("café ✓")
    wide_tlvs = Reader(wide.encode()).tlv_rest()
    assert wide_tlvs.get(0x0001) == b'text/aolrtf; charset="utf-8"'
    assert wide_tlvs.get(0x0002) == "café ✓".encode()
    assert LocateSetInfo.decode(wide.encode()).profile == "café ✓"


# -- properties ------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
# Any bytes a server may send as a name: the codec keeps them exactly (Latin-1, see wire.py).
names = st.binary(max_size=40).map(lambda raw: raw.decode("latin-1"))
small = st.binary(max_size=24)
tlvs = st.binary(max_size=60).map(lambda blob: tlvs_from_bytes(blob, 4))
cookies = st.binary(min_size=8, max_size=8)
users = st.builds(UserInfo, names, u16, tlvs)


def _rate_class_from(blob: bytes, extended: bool) -> RateClass:
    class_id, window, clear, alert, limit, disconnect, current, max_level, last_time, dropping = (
        struct.unpack(">H7IIB", blob)
    )
    if not extended:
        last_time = dropping = 0
    return RateClass(
        class_id, window, clear, alert, limit, disconnect, current, max_level, last_time, dropping
    )


def rate_classes(extended: bool) -> st.SearchStrategy[RateClass]:
    # One 35-byte draw instead of ten integer draws keeps the 10,000-example CI run fast.
    return st.binary(min_size=35, max_size=35).map(lambda b: _rate_class_from(b, extended))


def _members_from(blob: bytes) -> tuple[tuple[int, int], ...]:
    usable = len(blob) - len(blob) % 4
    return tuple(struct.unpack(">HH", blob[i : i + 4]) for i in range(0, usable, 4))


def _rate_reply_from(blob: bytes) -> RateParamsReply:
    # Everything from one bytes draw (count, layout, records, groups): cheap at 10,000 examples.
    extended, count = bool(blob[0] & 1), blob[0] % 4
    rest = blob[1:]
    classes = []
    for _ in range(count):
        record, rest = rest[:35].ljust(35, b"\x00"), rest[35:]
        classes.append(_rate_class_from(record, extended))
    groups = []
    for index in range(count):
        header, rest = rest[:3].ljust(3, b"\x00"), rest[3:]
        size = header[2] % 4
        members, rest = rest[: 4 * size].ljust(4 * size, b"\x00"), rest[4 * size :]
        groups.append(RateGroup(int.from_bytes(header[:2], "big") + index, _members_from(members)))
    return RateParamsReply(tuple(classes), tuple(groups), extended)


def rate_replies() -> st.SearchStrategy[RateParamsReply]:
    return st.binary(min_size=1, max_size=160).map(_rate_reply_from)


@st.composite
def rate_notices(draw: st.DrawFn) -> RateParamsChange:
    extended = draw(st.booleans())
    return RateParamsChange(draw(u16), draw(rate_classes(extended)), extended)


message_data = st.builds(
    MessageData, st.lists(st.builds(TextFragment, u16, u16, small), max_size=3).map(tuple), small
)

snac_values = st.one_of(
    st.builds(BucpChallengeRequest, names),
    st.builds(BucpChallenge, small),
    st.builds(
        BucpLoginRequest,
        names,
        st.binary(min_size=16, max_size=16),
        st.booleans(),
        text,
        u16,
        st.tuples(u16, u16, u16, u16),
        u32,
        text,
        text,
        st.one_of(st.none(), u8),
    ),
    st.builds(BucpLoginResponse, st.none() | names, text, st.binary(min_size=1, max_size=20)),
    st.builds(BucpLoginResponse, st.none() | names, st.none() | text, st.none(), u16, text),
    st.builds(SnacError, u16, st.none() | u16),
    st.builds(IcbmError, u16, st.none() | u16),
    st.builds(ClientOnline, st.lists(st.tuples(u16, u16, u16, u16), max_size=3).map(tuple)),
    st.builds(HostOnline, st.lists(u16, max_size=5).map(tuple)),
    st.builds(ClientVersions, st.lists(st.tuples(u16, u16), max_size=4).map(tuple)),
    st.builds(HostVersions, st.lists(st.tuples(u16, u16), max_size=4).map(tuple)),
    st.builds(RateParamsAck, st.lists(u16, max_size=5).map(tuple)),
    rate_notices(),
    st.builds(SelfInfoReply, users, small),
    st.builds(IcbmParamsReply, u16, u32, u16, u16, u16, u32),
    st.builds(IcbmParamsSet, u16, u32, u16, u16, u16, u32),
    st.builds(IcbmSendIM, cookies, u16, names, tlvs),
    st.builds(IcbmIncomingIM, cookies, u16, users, tlvs),
    st.builds(IcbmHostAck, cookies, u16, names),
    st.builds(IcbmTyping, names, u16, u16, cookies),
    st.builds(LocateSetInfo, tlvs),
)


@given(
    st.one_of(
        snac_values,
        st.builds(FlapHello, u32, tlvs),
        st.builds(SignOff, st.none() | u16, st.none() | text),
        message_data,
    )
)
def test_every_snac_and_payload_round_trips(value: Any) -> None:
    cls: Any = type(value)  # each drawn type has its own decode() signature
    assert cls.decode(value.encode()) == value


def _decode_of(cls: Any) -> Callable[[bytes], object]:
    """A SNAC class's decode (the dispatch table types its values as plain `type`)."""
    decode: Callable[[bytes], object] = cls.decode
    return decode


@given(rate_replies())
def test_rate_replies_round_trip(reply: RateParamsReply) -> None:
    assert RateParamsReply.decode(reply.encode(), extended=reply.extended) == reply


DECODERS: list[Callable[[bytes], object]] = [_decode_of(cls) for cls in SNAC_TYPES.values()] + [
    FlapHello.decode,
    SignOff.decode,
    MessageData.decode,
    lambda body: IcbmSendIM.decode(body).message(),
    lambda body: IcbmIncomingIM.decode(body).message(),
    decode_tlvs,
    decode_snac,
    lambda body: Reader(body).tlv_counted(),
    lambda body: Reader(body).tlv_length_prefixed(),
    *(_decode_of(cls) for cls in SERVICE_SNAC_TYPES.values()),
]


@given(st.sampled_from(DECODERS), st.binary(max_size=120))
def test_arbitrary_bytes_into_every_decoder_raise_only_protocol_error(
    decode: Callable[[bytes], object], data: bytes
) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(snac_values, st.integers(0, 400), st.integers(0, 255), st.booleans())
def test_damaged_encodings_raise_only_protocol_error(
    value: Any, position: int, byte: int, truncate: bool
) -> None:
    data = bytearray(value.encode())
    if truncate:
        del data[position % (len(data) + 1) :]
    elif data:
        data[position % len(data)] = byte
    with contextlib.suppress(ProtocolError):
        decoded = type(value).decode(bytes(data))
        if isinstance(decoded, IcbmSendIM | IcbmIncomingIM):
            decoded.message()
