"""FLAP frames, SNAC headers and TLVs: the byte layer of OSCAR, as pure functions.

No sockets and no asyncio here, so the client, the devserver and the fuzz tests share one codec,
and every malformed input surfaces as the one exception type (ProtocolError) that the I/O layer
turns into a clean disconnect instead of a crash. All lengths are byte counts
(docs/oscar-protocol.md §12.1).

Screen names are kept as the exact bytes the server sent. They are decoded and encoded as
Latin-1, the one text codec that maps every byte string to a str and back unchanged, so a reply
goes to exactly the name an IM came from: a Latin-1 "Jérôme" (4a e9 72 f4 6d 65) is answered at
those six bytes, and a UTF-8 name at its UTF-8 bytes. The price is display only: a non-ASCII
UTF-8 name reads as mojibake ("JÃ©rÃ´me") in logs and as the Dify user. Real screen names are
ASCII (letters, digits, spaces), where both readings agree; any rule that showed UTF-8 names
nicely would have to map two different byte strings (c3 a9 and e9) to the same "é", and could
then answer one of them at the wrong address. A str with a character above U+00FF has no
one-byte form and is not a screen name we can send to (ScreenNameError).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from aimbot.oscar.errors import ProtocolError

FLAP_START = 0x2A
FLAP_HEADER_SIZE = 6
MAX_FLAP_PAYLOAD = 0xFFFF
SNAC_HEADER_SIZE = 10
SNAC_FLAG_MORE_REPLIES = 0x0001
SNAC_FLAG_HAS_PREFIX = 0x8000
# Doc §1: random start below 0x8000 and wrap there; servers differ, and none check inbound values.
SEQUENCE_WRAP = 0x8000
SHORT_SIGNOFF_SIZE = 4

_FLAP_HEADER = struct.Struct(">BBHH")
_SNAC_HEADER = struct.Struct(">HHHI")
_TLV_HEADER = struct.Struct(">HH")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Channel(IntEnum):
    SIGNON = 1
    DATA = 2
    ERROR = 3
    SIGNOFF = 4
    KEEPALIVE = 5


# -- integers and strings --------------------------------------------------------------------------


def pack_u8(value: int, what: str = "u8") -> bytes:
    if not 0 <= value <= 0xFF:
        raise ProtocolError(f"{what} out of range for one byte: {value}")
    return _U8.pack(value)


def pack_u16(value: int, what: str = "u16") -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ProtocolError(f"{what} out of range for two bytes: {value}")
    return _U16.pack(value)


def pack_u32(value: int, what: str = "u32") -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ProtocolError(f"{what} out of range for four bytes: {value}")
    return _U32.pack(value)


def pack_str8(value: bytes, what: str = "string") -> bytes:
    if len(value) > 0xFF:
        raise ProtocolError(f"{what} is {len(value)} bytes; a u8-prefixed string holds 255")
    return _U8.pack(len(value)) + value


def pack_str16(value: bytes, what: str = "string") -> bytes:
    if len(value) > 0xFFFF:
        raise ProtocolError(f"{what} is {len(value)} bytes; a u16-prefixed string holds 65535")
    return _U16.pack(len(value)) + value


# AOL's longest screen names (name@domain) are 97 bytes; a str8 field could carry 255.
MAX_SCREEN_NAME_BYTES = 97
_NAME_CONTROL = frozenset(range(0x20)) | {0x7F}


def encode_screen_name(screen_name: str) -> bytes:
    """The wire bytes of a screen name (Latin-1, see above); ProtocolError if it has none."""
    try:
        return screen_name.encode("latin-1")
    except UnicodeEncodeError as e:
        raise ProtocolError(
            f"screen name {printable(screen_name)} has characters that have no one-byte form"
        ) from e


def decode_screen_name(raw: bytes) -> str:
    """A screen name as the str whose encode_screen_name() gives back exactly `raw`."""
    return raw.decode("latin-1")


def screen_name_problem(screen_name: str) -> str | None:
    """Why nobody could answer (or be sent to) this name, or None if it is a usable name."""
    try:
        raw = screen_name.encode("latin-1")
    except UnicodeEncodeError:
        return "has characters that have no one-byte form"
    if not raw.strip(b" "):
        return "is empty" if not raw else "is blank"
    if len(raw) > MAX_SCREEN_NAME_BYTES:
        return f"is {len(raw)} bytes long; screen names have at most {MAX_SCREEN_NAME_BYTES}"
    if any(byte in _NAME_CONTROL for byte in raw):
        return "contains control characters"
    return None


def decode_text(raw: bytes) -> str:
    """Free text in a TLV (addresses, URLs, client names): UTF-8, else Latin-1; never fails."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


LOG_TEXT_LIMIT = 200


def printable(text: str, limit: int = LOG_TEXT_LIMIT) -> str:
    """User data made safe for one log line: quoted, control characters as escapes, bounded.

    A screen name or IM with a newline cannot forge a log line: the newline logs as "\\n".
    """
    cut = text[:limit]
    body = "".join(ch if ch.isprintable() and ch != "\\" else repr(ch)[1:-1] for ch in cut)
    more = "…" if len(text) > limit else ""
    return f"'{body}{more}'"


class Reader:
    """A bounds-checked cursor over one buffer; running past the end is a ProtocolError."""

    __slots__ = ("_context", "_data", "_pos")

    def __init__(self, data: bytes, context: str = "data") -> None:
        self._data = data
        self._pos = 0
        self._context = context

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def _need(self, count: int, what: str) -> int:
        start = self._pos
        if count > len(self._data) - start:
            raise ProtocolError(
                f"truncated {self._context}: {what} needs {count} bytes, "
                f"{len(self._data) - start} left"
            )
        self._pos = start + count
        return start

    def u8(self, what: str = "u8") -> int:
        start = self._need(1, what)
        return self._data[start]

    def u16(self, what: str = "u16") -> int:
        start = self._need(2, what)
        value: int = _U16.unpack_from(self._data, start)[0]
        return value

    def u32(self, what: str = "u32") -> int:
        start = self._need(4, what)
        value: int = _U32.unpack_from(self._data, start)[0]
        return value

    def take(self, count: int, what: str = "bytes") -> bytes:
        start = self._need(count, what)
        return self._data[start : start + count]

    def str8(self, what: str = "string") -> bytes:
        return self.take(self.u8(f"{what} length"), what)

    def str16(self, what: str = "string") -> bytes:
        return self.take(self.u16(f"{what} length"), what)

    def rest(self) -> bytes:
        data = self._data[self._pos :]
        self._pos = len(self._data)
        return data

    def tlv_rest(self) -> TlvBlock:
        return decode_tlvs(self.rest(), self._context)

    def tlv_counted(self, what: str = "TLV block") -> TlvBlock:
        """u16 TLV count, then that many TLVs (RAS TLVBlock: user info).

        Every IM received carries one (its sender's user info), so the TLVs are read in one
        loop over the buffer, and an error's wording is built only when there is an error.
        """
        data = self._data
        pos = self._pos
        end = len(data)
        if end - pos < 2:
            self.u16(f"{what} count")  # raises
        (count,) = _U16.unpack_from(data, pos)
        pos += 2
        tlvs = []
        for _ in range(count):
            if end - pos < 4:
                self._pos = pos
                tag = self.u16(f"{what} tag")  # raises, saying which half is missing
                self.u16(f"{what} value 0x{tag:04x} length")
            tag, length = _TLV_HEADER.unpack_from(data, pos)
            pos += 4
            if length > end - pos:
                self._pos = pos
                self.take(length, f"{what} value 0x{tag:04x}")  # raises
            tlvs.append(Tlv(tag, data[pos : pos + length]))
            pos += length
        self._pos = pos
        return TlvBlock(tuple(tlvs))

    def tlv_length_prefixed(self, what: str = "TLV block") -> TlvBlock:
        """u16 byte length, then TLVs filling exactly that many bytes (RAS TLVLBlock)."""
        return decode_tlvs(self.str16(what), what)


# -- TLVs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes

    def encode(self) -> bytes:
        tag, value = self.tag, self.value
        if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
            # Raised with the wording of the checks that apply; built only when one fails, as
            # every IM sent and relayed encodes several TLVs.
            pack_u16(tag, "TLV tag")
            pack_str16(value, f"TLV 0x{tag:04x}")
        return _TLV_HEADER.pack(tag, len(value)) + value


def _int_from_width(value: bytes, what: str) -> int:
    # RAS writes one-byte values as one-byte TLVs (docs/oscar-protocol.md §2): the width is the TLV
    # length.
    if len(value) in (1, 2, 4):
        return int.from_bytes(value, "big")
    raise ProtocolError(f"{what} has {len(value)} bytes; expected an integer of 1, 2 or 4 bytes")


@dataclass(frozen=True, slots=True)
class TlvBlock:
    """An ordered TLV list; lookups return the FIRST match, as servers and LP do
    (docs/oscar-protocol.md §2)."""

    tlvs: tuple[Tlv, ...] = ()

    @classmethod
    def of(cls, *pairs: tuple[int, bytes]) -> TlvBlock:
        return cls(tuple(Tlv(tag, value) for tag, value in pairs))

    def get(self, tag: int) -> bytes | None:
        for tlv in self.tlvs:
            if tlv.tag == tag:
                return tlv.value
        return None

    def has(self, tag: int) -> bool:
        return any(tlv.tag == tag for tlv in self.tlvs)

    def get_int(self, tag: int) -> int | None:
        value = self.get(tag)
        return None if value is None else _int_from_width(value, f"TLV 0x{tag:04x}")

    def get_text(self, tag: int) -> str | None:
        value = self.get(tag)
        return None if value is None else decode_text(value)

    def get_screen_name(self, tag: int) -> str | None:
        value = self.get(tag)
        return None if value is None else decode_screen_name(value)

    def without(self, *tags: int) -> TlvBlock:
        return TlvBlock(tuple(tlv for tlv in self.tlvs if tlv.tag not in tags))

    def encode(self) -> bytes:
        """The "rest" form: TLVs back to back, to the end of the enclosing buffer."""
        return b"".join(tlv.encode() for tlv in self.tlvs)

    def encode_counted(self) -> bytes:
        return pack_u16(len(self.tlvs), "TLV count") + self.encode()

    def encode_length_prefixed(self) -> bytes:
        return pack_str16(self.encode(), "TLV block")


def decode_tlvs(data: bytes, context: str = "TLV block") -> TlvBlock:
    """TLVs filling all of `data`; a TLV running past the end is a ProtocolError."""
    tlvs = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 4:
            raise ProtocolError(f"truncated {context}: {end - pos} stray bytes after the last TLV")
        tag, length = _TLV_HEADER.unpack_from(data, pos)
        pos += 4
        if length > end - pos:
            raise ProtocolError(
                f"truncated {context}: TLV 0x{tag:04x} claims {length} bytes, {end - pos} left"
            )
        tlvs.append(Tlv(tag, data[pos : pos + length]))
        pos += length
    return TlvBlock(tuple(tlvs))


def encode_tlvs(tlvs: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(Tlv(tag, value).encode() for tag, value in tlvs)


# -- FLAP ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    channel: int
    sequence: int
    payload: bytes


def encode_frame(channel: int, sequence: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FLAP_PAYLOAD:
        raise ProtocolError(f"FLAP payload is {len(payload)} bytes; the limit is 65535")
    if not 0 <= channel <= 0xFF:
        raise ProtocolError(f"FLAP channel out of range: {channel}")
    if not 0 <= sequence <= 0xFFFF:
        raise ProtocolError(f"FLAP sequence number out of range: {sequence}")
    return _FLAP_HEADER.pack(FLAP_START, channel, sequence, len(payload)) + payload


class SequenceCounter:
    """One per connection and direction, +1 for every frame on every channel
    (docs/oscar-protocol.md §1, §12.5)."""

    __slots__ = ("_next",)

    def __init__(self, start: int | None = None) -> None:
        self._next = secrets.randbelow(SEQUENCE_WRAP) if start is None else start % SEQUENCE_WRAP

    def next(self) -> int:
        value = self._next
        self._next = (value + 1) % SEQUENCE_WRAP
        return value


class FrameBuffer:
    """Incremental FLAP parser: feed it whatever the socket returned, get complete frames.

    Buffered bytes are capped: a frame header announcing more than `max_payload` bytes is
    rejected before its body is buffered, so a hostile peer cannot make us hold more than
    header + max_payload bytes of an unfinished frame.

    Bad bytes between frames (anything not starting with 0x2A) are skipped when the stream
    proves where it resumes: a 0x2A followed by a valid channel, the next sequence number (or
    the one after, had the junk swallowed a frame) and a length within the cap. Frames after
    the junk then arrive as usual, so one corrupt write does not cost the IMs queued behind it.
    Junk before the first frame (nothing to check a sequence against), a resumption that does
    not come within `max_payload` bytes of junk, or an oversized frame put the stream out of
    sync for good: feed() returns the good frames before the fault (they were sent and must not
    be lost) and keeps the error, which check() or the next feed() raises.
    """

    def __init__(self, *, max_payload: int = MAX_FLAP_PAYLOAD) -> None:
        if not 0 <= max_payload <= MAX_FLAP_PAYLOAD:
            raise ValueError(f"max_payload must be within 0..65535, got {max_payload}")
        self._buf = bytearray()
        self._max_payload = max_payload
        self._failed: ProtocolError | None = None
        self._last_sequence: int | None = None
        self._junk = 0  # bytes skipped since the last good frame
        self.skipped_bytes = 0  # in all, for the caller to report
        self.resyncs = 0  # times the stream resumed after junk

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held right now."""
        return len(self._buf)

    @property
    def error(self) -> ProtocolError | None:
        """The error that put the stream out of sync, if any."""
        return self._failed

    def check(self) -> None:
        """Raise the stored error, if the stream is out of sync."""
        if self._failed is not None:
            raise ProtocolError(str(self._failed))

    def _fail(self, message: str) -> ProtocolError:
        self._failed = ProtocolError(message)
        self._buf.clear()
        return self._failed

    def _resumes_at(self, view: memoryview, at: int, end: int) -> bool | None:
        """Whether a frame plausibly starts at `at` (None: too few bytes yet to tell)."""
        if end - at < FLAP_HEADER_SIZE:
            return None
        start, channel, sequence, length = _FLAP_HEADER.unpack_from(view, at)
        last = self._last_sequence
        assert last is not None
        expected = {(last + step) % wrap for step in (1, 2) for wrap in (SEQUENCE_WRAP, 0x10000)}
        return (
            start == FLAP_START
            and Channel.SIGNON <= channel <= Channel.KEEPALIVE
            and sequence in expected
            and length <= self._max_payload
        )

    def _skip_junk(self, view: memoryview, pos: int, end: int) -> int:
        """Where the stream resumes after junk at `pos`, or `end` when it has not yet."""
        at = pos + 1
        while at < end:
            at = self._buf.find(FLAP_START, at, end)
            if at < 0:
                return end
            if self._resumes_at(view, at, end) is not False:
                return at  # a frame, or a 0x2A too close to the end to judge: keep it
            at += 1
        return end

    def feed(self, data: bytes) -> list[Frame]:
        self.check()
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        problem: str | None = None
        pos = 0
        end = len(buf)
        # A memoryview slice copies each payload once; the view must be released before the
        # bytearray is resized below.
        with memoryview(buf) as view:
            while pos < end:
                starts = buf[pos] == FLAP_START
                if starts and self._junk:
                    # After junk, a 0x2A must prove itself before it is taken as a frame.
                    proven = self._resumes_at(view, pos, end)
                    if proven is None:
                        break  # wait for the rest of its header
                    starts = proven
                if not starts:
                    if self._last_sequence is None:
                        problem = f"bad FLAP start byte 0x{buf[pos]:02x} (expected 0x2a)"
                        break
                    resume = self._skip_junk(view, pos, end)
                    self._junk += resume - pos
                    self.skipped_bytes += resume - pos
                    pos = resume
                    if self._junk > self._max_payload + FLAP_HEADER_SIZE:
                        problem = (
                            f"{self._junk} bytes of junk in the FLAP stream (first one 0x"
                            f"{view[pos - 1]:02x}) and no frame to resume at"
                        )
                        break
                    continue
                if end - pos < FLAP_HEADER_SIZE:
                    break
                _, channel, sequence, length = _FLAP_HEADER.unpack_from(view, pos)
                if length > self._max_payload:
                    problem = (
                        f"FLAP frame announces {length} bytes; this connection accepts at most "
                        f"{self._max_payload}"
                    )
                    break
                body = pos + FLAP_HEADER_SIZE
                if end - body < length:
                    break
                frames.append(Frame(channel, sequence, bytes(view[body : body + length])))
                if self._junk:
                    self.resyncs += 1
                    self._junk = 0
                self._last_sequence = sequence
                pos = body + length
        if problem is not None:
            error = self._fail(problem)
            if not frames:
                raise error
            return frames
        if pos:
            del buf[:pos]
        return frames

    def feed_eof(self) -> list[Frame]:
        """The peer closed: accept the 4-byte sign-off (`2A 04 ss ss`, no length,
        docs/oscar-protocol.md §10)."""
        self.check()
        buf = self._buf
        if not buf:
            return []
        if len(buf) == SHORT_SIGNOFF_SIZE and buf[1] == Channel.SIGNOFF:
            sequence = int.from_bytes(buf[2:4], "big")
            buf.clear()
            return [Frame(Channel.SIGNOFF, sequence, b"")]
        raise self._fail(f"connection closed in the middle of a frame ({len(buf)} bytes pending)")


# -- SNAC ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnacHeader:
    family: int
    subgroup: int
    flags: int
    request_id: int


def encode_snac(family: int, subgroup: int, request_id: int, body: bytes, flags: int = 0) -> bytes:
    if not (0 <= family <= 0xFFFF and 0 <= subgroup <= 0xFFFF and 0 <= flags <= 0xFFFF):
        raise ProtocolError(f"SNAC header field out of range: {family}/{subgroup}/{flags}")
    if not 0 <= request_id <= 0xFFFFFFFF:
        raise ProtocolError(f"SNAC request id out of range: {request_id}")
    return _SNAC_HEADER.pack(family, subgroup, flags, request_id) + body


def decode_snac(payload: bytes) -> tuple[SnacHeader, bytes]:
    """Split a channel-2 payload into header and body, skipping the optional 0x8000 prefix."""
    if len(payload) < SNAC_HEADER_SIZE:
        raise ProtocolError(f"SNAC too short: {len(payload)} bytes, the header alone is 10")
    family, subgroup, flags, request_id = _SNAC_HEADER.unpack_from(payload, 0)
    body = payload[SNAC_HEADER_SIZE:]
    if flags & SNAC_FLAG_HAS_PREFIX:
        reader = Reader(body, f"SNAC {family:02x}/{subgroup:02x} prefix")
        reader.str16("optional prefix")
        body = reader.rest()
    return SnacHeader(family, subgroup, flags, request_id), body
