"""FLAP framing, SNAC headers and TLV blocks (docs/oscar-protocol.md §1-§3): exact bytes, limits,
and fuzzing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.wire import (
    Channel,
    Frame,
    FrameBuffer,
    Reader,
    SequenceCounter,
    Tlv,
    TlvBlock,
    decode_snac,
    decode_tlvs,
    encode_frame,
    encode_snac,
    pack_str8,
    pack_u8,
    pack_u16,
    pack_u32,
)
from tests.helpers.oscar import frames_from_bytes, tlvs_from_bytes

RAS_HELLO = bytes.fromhex("2a01006400040000 0001".replace(" ", ""))


def test_decodes_the_ras_hello_frame() -> None:
    frames = FrameBuffer().feed(RAS_HELLO)
    assert frames == [Frame(Channel.SIGNON, 100, b"\x00\x00\x00\x01")]


def test_encode_frame_layout() -> None:
    assert encode_frame(Channel.SIGNON, 100, b"\x00\x00\x00\x01") == RAS_HELLO
    assert encode_frame(Channel.KEEPALIVE, 0xFFFF, b"") == bytes.fromhex("2a05ffff0000")


def test_frames_fed_one_byte_at_a_time() -> None:
    stream = encode_frame(2, 7, b"abc") + encode_frame(5, 8, b"") + encode_frame(4, 9, b"xy")
    buffer = FrameBuffer()
    frames = []
    for byte in stream:
        frames += buffer.feed(bytes([byte]))
    assert frames == [Frame(2, 7, b"abc"), Frame(5, 8, b""), Frame(4, 9, b"xy")]
    assert buffer.buffered == 0
    assert buffer.feed_eof() == []


def test_partial_frame_waits_for_the_rest() -> None:
    frame = encode_frame(2, 1, b"hello world")
    buffer = FrameBuffer()
    assert buffer.feed(frame[:8]) == []
    assert buffer.buffered == 8
    assert buffer.feed(frame[8:]) == [Frame(2, 1, b"hello world")]


def test_short_signoff_without_length_is_accepted_at_eof() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(encode_frame(2, 1, b"x") + bytes.fromhex("2a040065")) == [Frame(2, 1, b"x")]
    assert buffer.feed_eof() == [Frame(Channel.SIGNOFF, 0x65, b"")]


def test_eof_in_the_middle_of_a_frame_is_a_protocol_error() -> None:
    buffer = FrameBuffer()
    buffer.feed(encode_frame(2, 1, b"hello")[:7])
    with pytest.raises(ProtocolError, match="middle of a frame"):
        buffer.feed_eof()


def test_four_bytes_on_another_channel_at_eof_are_not_a_signoff() -> None:
    buffer = FrameBuffer()
    buffer.feed(bytes.fromhex("2a020001"))
    with pytest.raises(ProtocolError):
        buffer.feed_eof()


def test_bad_start_byte_is_rejected_and_the_buffer_stays_failed() -> None:
    buffer = FrameBuffer()
    with pytest.raises(ProtocolError, match="start byte 0x00"):
        buffer.feed(b"\x00\x02\x00\x01\x00\x00")
    assert buffer.error is not None
    with pytest.raises(ProtocolError, match="start byte 0x00"):
        buffer.feed(encode_frame(2, 1, b""))
    with pytest.raises(ProtocolError, match="start byte 0x00"):
        buffer.feed_eof()
    with pytest.raises(ProtocolError):
        buffer.check()


def test_junk_between_frames_is_skipped_where_the_next_frame_proves_the_resumption() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(encode_frame(2, 7, b"ok") + b"\x00\x02\x00\x01\x00\x00G*") == [
        Frame(2, 7, b"ok")
    ]
    assert buffer.error is None  # nothing proves a fault yet: the next frame may resume it
    assert buffer.feed(encode_frame(2, 8, b"after") + encode_frame(2, 9, b"more")) == [
        Frame(2, 8, b"after"),
        Frame(2, 9, b"more"),
    ]
    assert (buffer.skipped_bytes, buffer.resyncs) == (8, 1)


def test_a_0x2a_inside_junk_does_not_fake_a_frame() -> None:
    buffer = FrameBuffer()
    buffer.feed(encode_frame(2, 100, b"ok"))
    # '*' followed by a header with the wrong sequence number, then the real next frame.
    junk = b"garbage*" + encode_frame(2, 5000, b"not me")
    assert buffer.feed(junk + encode_frame(2, 101, b"me")) == [Frame(2, 101, b"me")]


def test_a_frame_swallowed_by_junk_costs_only_that_frame() -> None:
    buffer = FrameBuffer()
    buffer.feed(encode_frame(2, 0x7FFF, b"ok"))
    # Sequence 0x8000 (or 0, where the server wraps) was lost in the junk; 1 resumes.
    assert buffer.feed(b"\xff\xff" + encode_frame(2, 1, b"next")) == [Frame(2, 1, b"next")]


def test_junk_with_no_resumption_in_sight_fails_after_a_frame_s_worth() -> None:
    buffer = FrameBuffer(max_payload=100)
    buffer.feed(encode_frame(2, 1, b"ok"))
    assert buffer.feed(b"\x00" * 100) == []
    with pytest.raises(ProtocolError, match="junk in the FLAP stream"):
        buffer.feed(b"\x00" * 10)
    with pytest.raises(ProtocolError):
        buffer.check()


def test_good_frames_before_a_fatal_fault_are_returned_and_the_error_kept() -> None:
    buffer = FrameBuffer(max_payload=100)
    oversized = encode_frame(2, 2, bytes(101))[:6]
    assert buffer.feed(encode_frame(2, 1, b"ok") + oversized) == [Frame(2, 1, b"ok")]
    assert buffer.error is not None
    with pytest.raises(ProtocolError, match="at most 100"):
        buffer.check()
    with pytest.raises(ProtocolError, match="at most 100"):
        buffer.feed(b"")


def test_a_healthy_buffer_checks_clean() -> None:
    buffer = FrameBuffer()
    buffer.feed(encode_frame(2, 1, b"ok"))
    buffer.check()
    assert buffer.error is None


def test_oversized_frame_is_refused_before_its_body_is_buffered() -> None:
    buffer = FrameBuffer(max_payload=100)
    header = encode_frame(2, 1, bytes(101))[:6]
    with pytest.raises(ProtocolError, match="at most 100"):
        buffer.feed(header)
    assert buffer.buffered == 0


def test_frame_at_the_payload_cap_is_accepted() -> None:
    buffer = FrameBuffer(max_payload=100)
    assert buffer.feed(encode_frame(2, 1, bytes(100))) == [Frame(2, 1, bytes(100))]


def test_buffered_bytes_never_exceed_header_plus_cap() -> None:
    buffer = FrameBuffer(max_payload=1000)
    partial = encode_frame(2, 1, bytes(1000))[:-1]
    for byte in partial:
        buffer.feed(bytes([byte]))
        assert buffer.buffered <= 6 + 1000


def test_frame_buffer_rejects_an_impossible_cap() -> None:
    with pytest.raises(ValueError):
        FrameBuffer(max_payload=70_000)


@pytest.mark.parametrize(
    ("channel", "sequence", "payload"),
    [(256, 0, b""), (-1, 0, b""), (2, 0x10000, b""), (2, 0, bytes(0x10000))],
)
def test_encode_frame_rejects_out_of_range_fields(
    channel: int, sequence: int, payload: bytes
) -> None:
    with pytest.raises(ProtocolError):
        encode_frame(channel, sequence, payload)


def test_sequence_counter_wraps_at_0x8000() -> None:
    counter = SequenceCounter(0x7FFE)
    assert [counter.next() for _ in range(4)] == [0x7FFE, 0x7FFF, 0, 1]
    assert 0 <= SequenceCounter().next() < 0x8000


def test_snac_header_round_trip() -> None:
    payload = encode_snac(0x0004, 0x0006, 0x12345678, b"body")
    assert payload == bytes.fromhex("0004 0006 0000 12345678".replace(" ", "")) + b"body"
    header, body = decode_snac(payload)
    assert (header.family, header.subgroup, header.flags, header.request_id) == (
        4,
        6,
        0,
        0x12345678,
    )
    assert body == b"body"


def test_snac_with_0x8000_flag_skips_the_length_prefixed_prefix() -> None:
    payload = encode_snac(1, 3, 9, b"\x00\x03abc" + b"real", flags=0x8000)
    header, body = decode_snac(payload)
    assert header.flags == 0x8000
    assert body == b"real"


def test_snac_with_truncated_0x8000_prefix_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="prefix"):
        decode_snac(encode_snac(1, 3, 9, b"\x00\x09abc", flags=0x8000))


def test_snac_shorter_than_its_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="too short"):
        decode_snac(b"\x00\x04\x00\x06")


def test_tlv_rest_block_layout_and_first_match_wins() -> None:
    block = TlvBlock.of((1, b"a"), (2, b""), (1, b"second"))
    data = block.encode()
    assert data == bytes.fromhex("00010001 61 00020000 00010006".replace(" ", "")) + b"second"
    decoded = decode_tlvs(data)
    assert decoded == block
    assert decoded.get(1) == b"a"
    assert decoded.has(2) and not decoded.has(3)
    assert decoded.get(3) is None
    assert decoded.without(1) == TlvBlock.of((2, b""))


def test_counted_and_length_prefixed_blocks() -> None:
    block = TlvBlock.of((0x0001, b"\x00\x10"), (0x0003, b"\x00\x00\x00\x05"))
    counted = block.encode_counted()
    assert counted[:2] == b"\x00\x02"
    reader = Reader(counted + b"tail")
    assert reader.tlv_counted() == block
    assert reader.rest() == b"tail"
    prefixed = block.encode_length_prefixed()
    assert prefixed[:2] == len(block.encode()).to_bytes(2, "big")
    reader = Reader(prefixed + b"tail")
    assert reader.tlv_length_prefixed() == block
    assert reader.rest() == b"tail"


@pytest.mark.parametrize(
    ("raw", "value"), [(b"\x01", 1), (b"\x00\x01", 1), (b"\x00\x00\x01\x00", 256)]
)
def test_tlv_integers_are_decoded_by_their_width(raw: bytes, value: int) -> None:
    assert TlvBlock.of((9, raw)).get_int(9) == value


def test_tlv_integer_of_odd_width_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="3 bytes"):
        TlvBlock.of((9, b"\x00\x00\x01")).get_int(9)


def test_truncated_tlv_is_a_protocol_error_naming_the_tag() -> None:
    with pytest.raises(ProtocolError, match="0x0005 claims 9 bytes"):
        decode_tlvs(b"\x00\x05\x00\x09abc")
    with pytest.raises(ProtocolError, match="stray bytes"):
        decode_tlvs(b"\x00\x05\x00\x00\x01")


def test_counted_block_with_fewer_tlvs_than_announced_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Reader(b"\x00\x02" + Tlv(1, b"x").encode()).tlv_counted()


@pytest.mark.parametrize(
    ("tlv", "message"),
    [
        (Tlv(0x10000, b""), "TLV tag out of range for two bytes: 65536"),
        (Tlv(5, bytes(0x10000)), "TLV 0x0005 is 65536 bytes; a u16-prefixed string holds 65535"),
        (Tlv(-1, bytes(0x10000)), "TLV tag out of range for two bytes: -1"),
    ],
)
def test_a_tlv_that_does_not_fit_its_header_is_refused_saying_why(tlv: Tlv, message: str) -> None:
    with pytest.raises(ProtocolError, match=f"^{message}$"):
        tlv.encode()


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (1, "user info tag needs 2 bytes, 1 left"),
        (3, "user info value 0x0007 length needs 2 bytes, 1 left"),
        (5, "user info value 0x0007 needs 3 bytes, 1 left"),
    ],
)
def test_a_counted_block_cut_short_says_which_part_of_which_tlv_is_missing(
    cut: int, message: str
) -> None:
    second = Tlv(7, b"abc").encode()
    body = b"\x00\x02" + Tlv(1, b"x").encode() + second[:cut]
    with pytest.raises(ProtocolError, match=f"^truncated sender: {message}$"):
        Reader(body, "sender").tlv_counted("user info")


def test_reader_errors_say_what_was_being_read() -> None:
    reader = Reader(b"\x00", "incoming IM")
    with pytest.raises(ProtocolError, match="truncated incoming IM: channel needs 2 bytes, 1 left"):
        reader.u16("channel")
    with pytest.raises(ProtocolError):
        Reader(b"\x05ab").str8("screen name")


def test_packers_check_their_ranges() -> None:
    assert pack_u8(255) == b"\xff" and pack_u16(65535) == b"\xff\xff"
    assert pack_u32(2**32 - 1) == b"\xff" * 4
    bad_packs: list[Callable[[], bytes]] = [
        lambda: pack_u8(256),
        lambda: pack_u16(-1),
        lambda: pack_u32(2**32),
    ]
    for bad in bad_packs:
        with pytest.raises(ProtocolError):
            bad()
    with pytest.raises(ProtocolError, match="255"):
        pack_str8(bytes(256), "screen name")


# -- properties ------------------------------------------------------------------------------------

frames_strategy = st.binary(max_size=200).map(frames_from_bytes)


@given(frames_strategy, st.binary(min_size=1, max_size=6))
def test_any_frames_survive_any_chunking(frames: list[Frame], cut_bytes: bytes) -> None:
    cuts = [byte % 64 + 1 for byte in cut_bytes]
    stream = b"".join(encode_frame(f.channel, f.sequence, f.payload) for f in frames)
    buffer = FrameBuffer()
    got: list[Frame] = []
    pos = 0
    index = 0
    while pos < len(stream):
        size = cuts[index % len(cuts)]
        got += buffer.feed(stream[pos : pos + size])
        pos += size
        index += 1
    assert got == frames
    assert buffer.feed_eof() == []


@given(st.binary(max_size=300), st.binary(min_size=1, max_size=6), st.booleans())
def test_arbitrary_bytes_into_the_frame_buffer_raise_only_protocol_error(
    data: bytes, cut_bytes: bytes, eof: bool
) -> None:
    buffer = FrameBuffer(max_payload=64)
    cuts = [byte % 80 + 1 for byte in cut_bytes]
    pos = 0
    index = 0
    with contextlib.suppress(ProtocolError):
        while pos < len(data):
            size = cuts[index % len(cuts)]
            for frame in buffer.feed(data[pos : pos + size]):
                assert len(frame.payload) <= 64
            pos += size
            index += 1
        if eof:
            buffer.feed_eof()


tlv_blocks = st.binary(max_size=120).map(tlvs_from_bytes)


@given(tlv_blocks)
def test_tlv_blocks_round_trip_in_all_three_forms(block: TlvBlock) -> None:
    assert decode_tlvs(block.encode()) == block
    assert Reader(block.encode_counted()).tlv_counted() == block
    assert Reader(block.encode_length_prefixed()).tlv_length_prefixed() == block
