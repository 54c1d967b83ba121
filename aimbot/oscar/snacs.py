"""The SNAC bodies a bot needs, as frozen dataclasses with encode()/decode()
(docs/oscar-protocol.md §4-§10).

Every class knows its (family, subgroup) so the client and the devserver dispatch on the pair,
never on request ids (docs/oscar-protocol.md §12.11). decode() accepts what real servers send
(extra trailing bytes, integers of any TLV width, either rate-record size) and raises
ProtocolError, and only that, for anything it cannot make sense of.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.ratelimit import RateClass, RateGroup
from aimbot.oscar.wire import (
    Reader,
    TlvBlock,
    decode_screen_name,
    decode_tlvs,
    encode_screen_name,
    encode_snac,
    pack_str8,
    pack_str16,
    pack_u8,
    pack_u16,
    pack_u32,
)

FAMILY_OSERVICE = 0x0001
FAMILY_LOCATE = 0x0002
FAMILY_ICBM = 0x0004
FAMILY_BUCP = 0x0017

SUBGROUP_ERROR = 0x0001

# Login TLVs (docs/oscar-protocol.md §4)
TLV_SCREEN_NAME = 0x0001
TLV_ERROR_URL = 0x0004
TLV_BOS_ADDRESS = 0x0005
TLV_COOKIE = 0x0006
TLV_ERROR_CODE = 0x0008
TLV_PASSWORD_HASH = 0x0025
TLV_STRONG_HASH = 0x004C
TLV_MULTI_CONN = 0x004A
# Multi-connection flags of TLV 0x004A (Open OSCAR Server wire/snacs.go): an old client (short
# sign-off frames), a client that wants several sessions at once, or one session only (a new
# login signs the older one off).
MULTI_CONN_OLD_CLIENT = 0x00
MULTI_CONN_SEVERAL_SESSIONS = 0x01
MULTI_CONN_ONE_SESSION = 0x03
# Locate 02/04 TLVs: profile MIME type, profile, capabilities
TLV_PROFILE_MIME = 0x0001
TLV_PROFILE = 0x0002
TLV_CAPABILITIES = 0x0005
# Sign-off TLVs (docs/oscar-protocol.md §10)
TLV_SIGNOFF_CODE = 0x0009
TLV_SIGNOFF_URL = 0x000B
SIGNOFF_SIGNED_ON_ELSEWHERE = 0x0001
# ICBM TLVs (docs/oscar-protocol.md §7)
TLV_MESSAGE_DATA = 0x0002
TLV_WANT_ACK = 0x0003
TLV_AUTO_RESPONSE = 0x0004
TLV_STORE_OFFLINE = 0x0006
TLV_SUPPORTS_TYPING = 0x000B
TLV_ERROR_SUBCODE = 0x0008
FRAGMENT_FEATURES = 0x05
FRAGMENT_TEXT = 0x01
DEFAULT_FEATURES = b"\x01\x01\x01\x02"

# SNAC error codes (docs/oscar-protocol.md §3)
ERR_INVALID_SNAC = 0x0001
ERR_RATE_TO_HOST = 0x0002
ERR_RATE_TO_CLIENT = 0x0003
ERR_NOT_LOGGED_ON = 0x0004
ERR_SERVICE_UNAVAILABLE = 0x0005

# ICBM parameter flags (docs/oscar-protocol.md §5)
ICBM_FLAG_CHANNEL_MSGS = 0x0001
ICBM_FLAG_MISSED_CALLS = 0x0002
ICBM_FLAG_TYPING = 0x0008

AIM_MD5_SUFFIX = b"AOL Instant Messenger (SM)"

_ERROR_TEXT = {
    0x0001: "invalid SNAC",
    0x0002: "rate limited (to host)",
    0x0003: "rate limited (to client)",
    0x0004: "recipient not logged on",
    0x0005: "service unavailable",
    0x0006: "service not defined",
    0x0007: "obsolete SNAC",
    0x0008: "not supported by host",
    0x0009: "not supported by client",
    0x000A: "refused by client",
    0x000D: "request denied",
    0x000E: "busted SNAC payload",
    0x0010: "in local permit/deny list",
    0x0011: "sender too evil",
    0x0012: "receiver too evil",
    0x0013: "temporarily unavailable",
    0x001C: "general failure",
}


def describe_error(code: int) -> str:
    return _ERROR_TEXT.get(code, f"error 0x{code:04x}")


def normalize_screen_name(screen_name: str) -> str:
    """Identity of a screen name: spaces dropped, lowercase (docs/oscar-protocol.md §11, "Bob
    Smith" = "bobsmith")."""
    return screen_name.replace(" ", "").lower()


class SnacBody(Protocol):
    FAMILY: ClassVar[int]
    SUBGROUP: ClassVar[int]

    def encode(self) -> bytes: ...


class _EmptyBody:
    """A SNAC whose body is empty; trailing bytes from a liberal server are ignored."""

    __slots__ = ()

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls()


def encode_snac_body(body: SnacBody, request_id: int) -> bytes:
    """A complete channel-2 payload (header + body) for a SNAC dataclass."""
    return encode_snac(body.FAMILY, body.SUBGROUP, request_id, body.encode())


def _screen_name_field(screen_name: str, what: str = "screen name") -> bytes:
    return pack_str8(encode_screen_name(screen_name), what)


def _u16_list(reader: Reader, what: str) -> tuple[int, ...]:
    if reader.remaining % 2:
        raise ProtocolError(f"{what}: odd number of bytes ({reader.remaining}) in a u16 list")
    return tuple(reader.u16(what) for _ in range(reader.remaining // 2))


def _pack_u16_list(values: tuple[int, ...], what: str) -> bytes:
    return b"".join(pack_u16(v, what) for v in values)


# -- BUCP login (family 0x17) ----------------------------------------------------------------------


def login_hash(key: bytes, password: str, *, strong: bool) -> bytes:
    """BUCP MD5 (docs/oscar-protocol.md §4): weak = md5(key+pw+SUFFIX), strong =
    md5(key+md5(pw)+SUFFIX)."""
    secret = password.encode("utf-8")
    if strong:
        secret = hashlib.md5(secret).digest()
    return hashlib.md5(key + secret + AIM_MD5_SUFFIX).digest()


@dataclass(frozen=True, slots=True)
class BucpChallengeRequest:
    FAMILY: ClassVar[int] = FAMILY_BUCP
    SUBGROUP: ClassVar[int] = 0x0006

    screen_name: str

    def encode(self) -> bytes:
        return TlvBlock.of((TLV_SCREEN_NAME, encode_screen_name(self.screen_name))).encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        name = decode_tlvs(body, "BUCP challenge request").get_screen_name(TLV_SCREEN_NAME)
        if name is None:
            raise ProtocolError("BUCP challenge request without a screen name (TLV 0x0001)")
        return cls(name)


@dataclass(frozen=True, slots=True)
class BucpChallenge:
    FAMILY: ClassVar[int] = FAMILY_BUCP
    SUBGROUP: ClassVar[int] = 0x0007

    key: bytes

    def encode(self) -> bytes:
        return pack_str16(self.key, "challenge key")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(Reader(body, "BUCP challenge").str16("challenge key"))


@dataclass(frozen=True, slots=True)
class BucpLoginRequest:
    FAMILY: ClassVar[int] = FAMILY_BUCP
    SUBGROUP: ClassVar[int] = 0x0002

    screen_name: str
    password_hash: bytes
    strong_hash: bool = True
    client_name: str = ""
    client_id: int = 0x0109
    version: tuple[int, int, int, int] = (5, 1, 0, 3036)
    distribution: int = 0
    language: str = "en"
    country: str = "us"
    multi_conn: int | None = MULTI_CONN_ONE_SESSION

    def encode(self) -> bytes:
        if len(self.password_hash) != 16:
            raise ProtocolError(f"password hash must be 16 bytes, got {len(self.password_hash)}")
        major, minor, point, build = self.version
        tlvs: list[tuple[int, bytes]] = [
            (TLV_SCREEN_NAME, encode_screen_name(self.screen_name)),
            (TLV_PASSWORD_HASH, self.password_hash),
        ]
        if self.strong_hash:
            tlvs.append((TLV_STRONG_HASH, b""))
        tlvs += [
            (0x0003, self.client_name.encode("utf-8")),
            (0x0016, pack_u16(self.client_id, "client id")),
            (0x0017, pack_u16(major, "major version")),
            (0x0018, pack_u16(minor, "minor version")),
            (0x0019, pack_u16(point, "point version")),
            (0x001A, pack_u16(build, "build number")),
            (0x0014, pack_u32(self.distribution, "distribution")),
            (0x000F, self.language.encode("utf-8")),
            (0x000E, self.country.encode("utf-8")),
        ]
        if self.multi_conn is not None:
            tlvs.append((TLV_MULTI_CONN, pack_u8(self.multi_conn, "multi-conn flag")))
        return TlvBlock.of(*tlvs).encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        tlvs = decode_tlvs(body, "BUCP login request")
        name = tlvs.get_screen_name(TLV_SCREEN_NAME)
        digest = tlvs.get(TLV_PASSWORD_HASH)
        if name is None:
            raise ProtocolError("BUCP login request without a screen name (TLV 0x0001)")
        if digest is None or len(digest) != 16:
            raise ProtocolError("BUCP login request without a 16-byte MD5 hash (TLV 0x0025)")

        def number(tag: int, default: int) -> int:
            value = tlvs.get_int(tag)
            return default if value is None else value

        return cls(
            screen_name=name,
            password_hash=digest,
            strong_hash=tlvs.has(TLV_STRONG_HASH),
            client_name=tlvs.get_text(0x0003) or "",
            client_id=number(0x0016, 0),
            version=(number(0x0017, 0), number(0x0018, 0), number(0x0019, 0), number(0x001A, 0)),
            distribution=number(0x0014, 0),
            language=tlvs.get_text(0x000F) or "",
            country=tlvs.get_text(0x000E) or "",
            multi_conn=tlvs.get_int(TLV_MULTI_CONN),
        )


@dataclass(frozen=True, slots=True)
class BucpLoginResponse:
    """17/03: either a BOS address + cookie, or an error code (then the server closes)."""

    FAMILY: ClassVar[int] = FAMILY_BUCP
    SUBGROUP: ClassVar[int] = 0x0003

    screen_name: str | None = None
    bos_address: str | None = None
    cookie: bytes | None = None
    error_code: int | None = None
    error_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_code is None

    def encode(self) -> bytes:
        tlvs: list[tuple[int, bytes]] = []
        if self.screen_name is not None:
            tlvs.append((TLV_SCREEN_NAME, encode_screen_name(self.screen_name)))
        if self.bos_address is not None:
            tlvs.append((TLV_BOS_ADDRESS, self.bos_address.encode("utf-8")))
        if self.cookie is not None:
            tlvs.append((TLV_COOKIE, self.cookie))
        if self.error_code is not None:
            tlvs.append((TLV_ERROR_CODE, pack_u16(self.error_code, "login error code")))
        if self.error_url is not None:
            tlvs.append((TLV_ERROR_URL, self.error_url.encode("utf-8")))
        return TlvBlock.of(*tlvs).encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        tlvs = decode_tlvs(body, "BUCP login response")
        response = cls(
            screen_name=tlvs.get_screen_name(TLV_SCREEN_NAME),
            bos_address=tlvs.get_text(TLV_BOS_ADDRESS),
            cookie=tlvs.get(TLV_COOKIE),
            error_code=tlvs.get_int(TLV_ERROR_CODE),
            error_url=tlvs.get_text(TLV_ERROR_URL),
        )
        if response.error_code is None and (response.bos_address is None or not response.cookie):
            raise ProtocolError("login response has neither an error code nor address + cookie")
        return response


def parse_bos_address(address: str, default_port: int = 5190) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or a bare host (docs/oscar-protocol.md §4: default port 5190)."""
    text = address.strip()
    if not text:
        raise ProtocolError("empty BOS address in the login response")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ProtocolError(f"malformed BOS address {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ProtocolError(f"malformed BOS address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ProtocolError(f"BOS address {text!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) <= 0xFFFF:
        raise ProtocolError(f"BOS address {text!r} has an invalid port")
    return host, int(port_text)


# -- channel 1 and channel 4 payloads --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlapHello:
    """The channel-1 payload both ends send first: u32 version 1, then TLVs (BOS: cookie)."""

    version: int = 1
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    @classmethod
    def with_cookie(cls, cookie: bytes) -> Self:
        return cls(1, TlvBlock.of((TLV_COOKIE, cookie)))

    @property
    def cookie(self) -> bytes | None:
        return self.tlvs.get(TLV_COOKIE)

    def encode(self) -> bytes:
        return pack_u32(self.version, "FLAP version") + self.tlvs.encode()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        reader = Reader(payload, "sign-on frame")
        version = reader.u32("FLAP version")
        return cls(version, reader.tlv_rest())


@dataclass(frozen=True, slots=True)
class SignOff:
    """A channel-4 payload; empty for a plain sign-off, TLV 0x0009 = 1 for "signed on elsewhere"."""

    error_code: int | None = None
    error_url: str | None = None

    @property
    def signed_on_elsewhere(self) -> bool:
        return self.error_code == SIGNOFF_SIGNED_ON_ELSEWHERE

    def encode(self, *, one_byte_code: bool = True) -> bytes:
        tlvs: list[tuple[int, bytes]] = []
        if self.error_code is not None:
            # RAS writes the code as one byte, LP reads two; both widths decode
            # (docs/oscar-protocol.md §10).
            width_ok = one_byte_code and self.error_code <= 0xFF
            code = pack_u8(self.error_code) if width_ok else pack_u16(self.error_code)
            tlvs.append((TLV_SIGNOFF_CODE, code))
        if self.error_url is not None:
            tlvs.append((TLV_SIGNOFF_URL, self.error_url.encode("utf-8")))
        return TlvBlock.of(*tlvs).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        tlvs = decode_tlvs(payload, "sign-off frame")
        return cls(tlvs.get_int(TLV_SIGNOFF_CODE), tlvs.get_text(TLV_SIGNOFF_URL))


# -- errors (subgroup 0x0001 of any family) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnacError:
    """x/01: u16 code + optional TLVs (0x0008 = subcode)."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = SUBGROUP_ERROR

    code: int
    subcode: int | None = None

    def encode(self) -> bytes:
        tail = b""
        if self.subcode is not None:
            tail = TlvBlock.of((TLV_ERROR_SUBCODE, pack_u16(self.subcode, "subcode"))).encode()
        return pack_u16(self.code, "error code") + tail

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "SNAC error")
        code = reader.u16("error code")
        return cls(code, reader.tlv_rest().get_int(TLV_ERROR_SUBCODE))


@dataclass(frozen=True, slots=True)
class IcbmError(SnacError):
    FAMILY: ClassVar[int] = FAMILY_ICBM


# -- OSERVICE (family 0x01) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientOnline:
    """01/02: (family, version, tool id, tool version) per family; servers ignore the content."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0002

    entries: tuple[tuple[int, int, int, int], ...] = ()

    def encode(self) -> bytes:
        return b"".join(_pack_u16_list(entry, "client online entry") for entry in self.entries)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        if len(body) % 8:
            raise ProtocolError(f"client online: {len(body)} bytes is not a multiple of 8")
        reader = Reader(body, "client online")
        entries = []
        while not reader.at_end():
            family, version = reader.u16("family"), reader.u16("version")
            entries.append((family, version, reader.u16("tool id"), reader.u16("tool version")))
        return cls(tuple(entries))


@dataclass(frozen=True, slots=True)
class HostOnline:
    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0003

    families: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return _pack_u16_list(self.families, "family")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(_u16_list(Reader(body, "host online"), "family"))


@dataclass(frozen=True, slots=True)
class ClientVersions:
    """01/17 (and 01/18 echoed back): (family, version) pairs; odd word counts are an error."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0017

    versions: tuple[tuple[int, int], ...] = ()

    def version_of(self, family: int) -> int | None:
        for fam, version in self.versions:
            if fam == family:
                return version
        return None

    def encode(self) -> bytes:
        return b"".join(_pack_u16_list(pair, "family version") for pair in self.versions)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        if len(body) % 4:
            raise ProtocolError(f"family versions: {len(body)} bytes is not a multiple of 4")
        values = _u16_list(Reader(body, "family versions"), "family version")
        return cls(tuple((values[i], values[i + 1]) for i in range(0, len(values), 2)))


@dataclass(frozen=True, slots=True)
class HostVersions(ClientVersions):
    SUBGROUP: ClassVar[int] = 0x0018


@dataclass(frozen=True, slots=True)
class RateParamsRequest(_EmptyBody):
    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0006


RATE_RECORD_SIZE = 30
RATE_RECORD_SIZE_EXTENDED = 35


def encode_rate_class(rate_class: RateClass, *, extended: bool) -> bytes:
    c = rate_class
    parts = [pack_u16(c.class_id, "rate class id")]
    for value, what in (
        (c.window, "window"),
        (c.clear_level, "clear level"),
        (c.alert_level, "alert level"),
        (c.limit_level, "limit level"),
        (c.disconnect_level, "disconnect level"),
        (c.current_level, "current level"),
        (c.max_level, "max level"),
    ):
        parts.append(pack_u32(value, what))
    if extended:
        parts.append(pack_u32(c.last_time, "last time"))
        parts.append(pack_u8(c.dropping, "dropping flag"))
    return b"".join(parts)


def decode_rate_class(reader: Reader, *, extended: bool) -> RateClass:
    return RateClass(
        class_id=reader.u16("rate class id"),
        window=reader.u32("window"),
        clear_level=reader.u32("clear level"),
        alert_level=reader.u32("alert level"),
        limit_level=reader.u32("limit level"),
        disconnect_level=reader.u32("disconnect level"),
        current_level=reader.u32("current level"),
        max_level=reader.u32("max level"),
        last_time=reader.u32("last time") if extended else 0,
        dropping=reader.u8("dropping flag") if extended else 0,
    )


@dataclass(frozen=True, slots=True)
class RateParamsReply:
    """01/07: N class records (30 B, or 35 B when `extended`), then N groups
    (docs/oscar-protocol.md §5)."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0007

    classes: tuple[RateClass, ...] = ()
    groups: tuple[RateGroup, ...] = ()
    extended: bool = True

    def encode(self) -> bytes:
        if len(self.groups) != len(self.classes):
            raise ProtocolError(
                f"rate parameters need one group per class: {len(self.classes)} classes, "
                f"{len(self.groups)} groups"
            )
        parts = [pack_u16(len(self.classes), "rate class count")]
        parts += [encode_rate_class(c, extended=self.extended) for c in self.classes]
        for group in self.groups:
            parts.append(pack_u16(group.class_id, "rate group id"))
            parts.append(pack_u16(len(group.members), "rate group size"))
            parts += [_pack_u16_list(member, "rate group member") for member in group.members]
        return b"".join(parts)

    @classmethod
    def decode(cls, body: bytes, *, extended: bool | None = None) -> Self:
        """`extended=None` detects the record size: the layout whose groups end exactly wins.

        Servers pick the size from the OService version the client declared, and some ignore
        it; detecting keeps us working with either.
        """
        layouts = (True, False) if extended is None else (extended,)
        problem: ProtocolError | None = None
        for layout in layouts:
            try:
                return cls._decode_layout(body, layout)
            except ProtocolError as e:
                problem = problem or e
        assert problem is not None
        raise problem

    @classmethod
    def _decode_layout(cls, body: bytes, extended: bool) -> Self:
        reader = Reader(body, "rate parameters")
        count = reader.u16("rate class count")
        classes = tuple(decode_rate_class(reader, extended=extended) for _ in range(count))
        groups = []
        for _ in range(count):
            class_id = reader.u16("rate group id")
            size = reader.u16("rate group size")
            members = tuple(
                (reader.u16("group family"), reader.u16("group subgroup")) for _ in range(size)
            )
            groups.append(RateGroup(class_id, members))
        if not reader.at_end():
            raise ProtocolError(f"rate parameters: {reader.remaining} bytes after the last group")
        return cls(classes, tuple(groups), extended)


@dataclass(frozen=True, slots=True)
class RateParamsAck:
    """01/08: the classes we subscribe to 01/0A notices for (LP always sends it)."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0008

    class_ids: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return _pack_u16_list(self.class_ids, "rate class id")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(_u16_list(Reader(body, "rate ack"), "rate class id"))


RATE_CODE_CHANGED = 1
RATE_CODE_ALERT = 2
RATE_CODE_LIMITED = 3
RATE_CODE_CLEARED = 4


@dataclass(frozen=True, slots=True)
class RateParamsChange:
    """01/0A: u16 code (1 changed, 2 alert, 3 limited, 4 cleared) + one class record."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x000A

    code: int
    rate_class: RateClass
    extended: bool = True

    def encode(self) -> bytes:
        record = encode_rate_class(self.rate_class, extended=self.extended)
        return pack_u16(self.code, "rate notice code") + record

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "rate notice")
        code = reader.u16("rate notice code")
        if reader.remaining >= RATE_RECORD_SIZE_EXTENDED:
            extended = True
        elif reader.remaining >= RATE_RECORD_SIZE:
            extended = False
        else:
            raise ProtocolError(f"rate notice: {reader.remaining} bytes cannot hold a class record")
        return cls(code, decode_rate_class(reader, extended=extended), extended)


@dataclass(frozen=True, slots=True)
class SelfInfoRequest(_EmptyBody):
    """01/0E: the keep-alive probe; every server must answer it with 01/0F."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x000E


@dataclass(frozen=True, slots=True)
class NoOp(_EmptyBody):
    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0016


@dataclass(frozen=True, slots=True)
class UserInfo:
    """str8 screen name, u16 warning level, count-prefixed TLVs (flags, sign-on time, ...)."""

    screen_name: str
    warning_level: int = 0
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    def encode(self) -> bytes:
        return (
            _screen_name_field(self.screen_name)
            + pack_u16(self.warning_level, "warning level")
            + self.tlvs.encode_counted()
        )

    @classmethod
    def read(cls, reader: Reader) -> Self:
        name = decode_screen_name(reader.str8("screen name"))
        warning = reader.u16("warning level")
        return cls(name, warning, reader.tlv_counted("user info TLVs"))


@dataclass(frozen=True, slots=True)
class SelfInfoReply:
    """01/0F; servers add a second user-info block for OService >= 4, which we keep as `extra`."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x000F

    user: UserInfo
    extra: bytes = b""

    def encode(self) -> bytes:
        return self.user.encode() + self.extra

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "self info")
        return cls(UserInfo.read(reader), reader.rest())


# -- LOCATE (family 0x02) --------------------------------------------------------------------------


PROFILE_MIME_ASCII = 'text/aolrtf; charset="us-ascii"'
PROFILE_MIME_UTF8 = 'text/aolrtf; charset="utf-8"'


@dataclass(frozen=True, slots=True)
class LocateSetInfo:
    """02/04 set user info: the profile (TLV 0x0001 MIME type + 0x0002 text) and the like.

    No answer comes back; a server shows the profile to anyone who asks for our user info.
    """

    FAMILY: ClassVar[int] = FAMILY_LOCATE
    SUBGROUP: ClassVar[int] = 0x0004

    tlvs: TlvBlock = field(default_factory=TlvBlock)

    @classmethod
    def profile_text(cls, profile: str) -> Self:
        """The profile as us-ascii when it is ASCII, else as UTF-8, labelled accordingly."""
        if profile.isascii():
            mime, data = PROFILE_MIME_ASCII, profile.encode("ascii")
        else:
            mime, data = PROFILE_MIME_UTF8, profile.encode("utf-8", errors="replace")
        return cls(TlvBlock.of((TLV_PROFILE_MIME, mime.encode("ascii")), (TLV_PROFILE, data)))

    @property
    def profile(self) -> str | None:
        data = self.tlvs.get(TLV_PROFILE)
        return None if data is None else data.decode("utf-8", errors="replace")

    def encode(self) -> bytes:
        return self.tlvs.encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(decode_tlvs(body, "set user info"))


# -- ICBM (family 0x04) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IcbmParams:
    """The 16-byte ICBM parameter block of 04/05 (server's) and 04/02 (ours)."""

    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x0005

    channel: int = 0
    flags: int = ICBM_FLAG_CHANNEL_MSGS | ICBM_FLAG_MISSED_CALLS | ICBM_FLAG_TYPING
    max_message_bytes: int = 8000
    max_sender_warning: int = 999
    max_receiver_warning: int = 999
    min_interval_ms: int = 0

    def encode(self) -> bytes:
        return b"".join(
            (
                pack_u16(self.channel, "ICBM channel"),
                pack_u32(self.flags, "ICBM flags"),
                pack_u16(self.max_message_bytes, "max message length"),
                pack_u16(self.max_sender_warning, "max sender warning"),
                pack_u16(self.max_receiver_warning, "max receiver warning"),
                pack_u32(self.min_interval_ms, "min message interval"),
            )
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "ICBM parameters")
        return cls(
            reader.u16("channel"),
            reader.u32("flags"),
            reader.u16("max message length"),
            reader.u16("max sender warning"),
            reader.u16("max receiver warning"),
            reader.u32("min message interval"),
        )


@dataclass(frozen=True, slots=True)
class IcbmParamsReply(IcbmParams):
    SUBGROUP: ClassVar[int] = 0x0005


@dataclass(frozen=True, slots=True)
class IcbmParamsSet(IcbmParams):
    SUBGROUP: ClassVar[int] = 0x0002


@dataclass(frozen=True, slots=True)
class IcbmParamsRequest(_EmptyBody):
    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x0004


@dataclass(frozen=True, slots=True)
class OfflineMessagesRequest(_EmptyBody):
    """04/10: "send me the IMs you kept while I was offline" (as 04/07s, then 04/17).

    Servers keep an IM for an offline screen name when its sender asked for that (ICBM TLV
    0x0006); a client that never asks never gets them, so the people who wrote to the bot while
    it was down would go unanswered (docs/oscar-protocol.md §7).
    """

    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x0010


@dataclass(frozen=True, slots=True)
class TextFragment:
    charset: int
    subset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class MessageData:
    """TLV 0x0002 of a channel-1 IM: a features fragment and one or more text fragments."""

    texts: tuple[TextFragment, ...] = ()
    features: bytes = DEFAULT_FEATURES

    def encode(self) -> bytes:
        parts = [pack_u8(FRAGMENT_FEATURES) + pack_u8(1) + pack_str16(self.features, "IM features")]
        for text in self.texts:
            body = pack_u16(text.charset, "charset") + pack_u16(text.subset, "subset")
            parts.append(
                pack_u8(FRAGMENT_TEXT) + pack_u8(1) + pack_str16(body + text.payload, "IM text")
            )
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        reader = Reader(data, "IM message data")
        features = b""
        texts = []
        while not reader.at_end():
            fragment_id = reader.u8("fragment id")
            reader.u8("fragment version")
            content = reader.str16(f"fragment 0x{fragment_id:02x}")
            if fragment_id == FRAGMENT_FEATURES:
                features = content
            elif fragment_id == FRAGMENT_TEXT:
                text_reader = Reader(content, "IM text fragment")
                charset = text_reader.u16("charset")
                subset = text_reader.u16("subset")
                texts.append(TextFragment(charset, subset, text_reader.rest()))
        return cls(tuple(texts), features)


@dataclass(frozen=True, slots=True)
class IcbmSendIM:
    """04/06: cookie, channel, recipient, then TLVs relayed to the recipient as they are."""

    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x0006

    cookie: bytes
    channel: int
    recipient: str
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    @classmethod
    def text_message(
        cls,
        cookie: bytes,
        recipient: str,
        charset: int,
        payload: bytes,
        *,
        want_ack: bool = False,
        auto_response: bool = False,
    ) -> Self:
        message = MessageData((TextFragment(charset, 0, payload),))
        tlvs: list[tuple[int, bytes]] = [(TLV_MESSAGE_DATA, message.encode())]
        if want_ack:
            tlvs.append((TLV_WANT_ACK, b""))
        if auto_response:
            tlvs.append((TLV_AUTO_RESPONSE, b""))
        # Tells the peer's client we send typing notifications (docs/oscar-protocol.md §8; relayed
        # verbatim).
        tlvs.append((TLV_SUPPORTS_TYPING, b""))
        return cls(cookie, 1, recipient, TlvBlock.of(*tlvs))

    @property
    def want_ack(self) -> bool:
        return self.tlvs.has(TLV_WANT_ACK)

    @property
    def auto_response(self) -> bool:
        return self.tlvs.has(TLV_AUTO_RESPONSE)

    def message(self) -> MessageData | None:
        data = self.tlvs.get(TLV_MESSAGE_DATA)
        return None if data is None else MessageData.decode(data)

    def encode(self) -> bytes:
        return (
            _cookie_field(self.cookie)
            + pack_u16(self.channel, "ICBM channel")
            + _screen_name_field(self.recipient, "recipient")
            + self.tlvs.encode()
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "ICBM send")
        cookie = reader.take(8, "cookie")
        channel = reader.u16("channel")
        recipient = decode_screen_name(reader.str8("recipient"))
        return cls(cookie, channel, recipient, reader.tlv_rest())


def _cookie_field(cookie: bytes) -> bytes:
    if len(cookie) != 8:
        raise ProtocolError(f"ICBM cookie must be 8 bytes, got {len(cookie)}")
    return cookie


@dataclass(frozen=True, slots=True)
class IcbmIncomingIM:
    """04/07: cookie, channel, the sender's user info, then the message TLVs."""

    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x0007

    cookie: bytes
    channel: int
    sender: UserInfo
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    @property
    def auto_response(self) -> bool:
        return self.tlvs.has(TLV_AUTO_RESPONSE)

    def message(self) -> MessageData | None:
        data = self.tlvs.get(TLV_MESSAGE_DATA)
        return None if data is None else MessageData.decode(data)

    def encode(self) -> bytes:
        return (
            _cookie_field(self.cookie)
            + pack_u16(self.channel, "ICBM channel")
            + self.sender.encode()
            + self.tlvs.encode()
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "incoming IM")
        cookie = reader.take(8, "cookie")
        channel = reader.u16("channel")
        sender = UserInfo.read(reader)
        return cls(cookie, channel, sender, reader.tlv_rest())


@dataclass(frozen=True, slots=True)
class IcbmHostAck:
    """04/0C: the server accepted the IM with this cookie (only when 0x0003 was sent)."""

    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x000C

    cookie: bytes
    channel: int
    screen_name: str

    def encode(self) -> bytes:
        return (
            _cookie_field(self.cookie)
            + pack_u16(self.channel, "ICBM channel")
            + _screen_name_field(self.screen_name)
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "host ack")
        cookie = reader.take(8, "cookie")
        channel = reader.u16("channel")
        return cls(cookie, channel, decode_screen_name(reader.str8("screen name")))


@dataclass(frozen=True, slots=True)
class IcbmTyping:
    """04/14 MTN: zero cookie, channel 1, the other user's name, u16 event
    (docs/oscar-protocol.md §8)."""

    FAMILY: ClassVar[int] = FAMILY_ICBM
    SUBGROUP: ClassVar[int] = 0x0014

    screen_name: str
    event: int
    channel: int = 1
    cookie: bytes = bytes(8)

    def encode(self) -> bytes:
        return (
            _cookie_field(self.cookie)
            + pack_u16(self.channel, "ICBM channel")
            + _screen_name_field(self.screen_name)
            + pack_u16(self.event, "typing event")
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "typing notification")
        cookie = reader.take(8, "cookie")
        channel = reader.u16("channel")
        name = decode_screen_name(reader.str8("screen name"))
        return cls(name, reader.u16("typing event"), channel, cookie)


# Every SNAC dataclass, keyed by (family, subgroup): the dispatch table and the fuzz-test list.
SNAC_TYPES: dict[tuple[int, int], type] = {
    (cls.FAMILY, cls.SUBGROUP): cls
    for cls in (
        BucpChallengeRequest,
        BucpChallenge,
        BucpLoginRequest,
        BucpLoginResponse,
        SnacError,
        IcbmError,
        ClientOnline,
        HostOnline,
        ClientVersions,
        HostVersions,
        RateParamsRequest,
        RateParamsReply,
        RateParamsAck,
        RateParamsChange,
        SelfInfoRequest,
        SelfInfoReply,
        NoOp,
        LocateSetInfo,
        IcbmParamsReply,
        IcbmParamsSet,
        IcbmParamsRequest,
        IcbmSendIM,
        IcbmIncomingIM,
        IcbmHostAck,
        IcbmTyping,
    )
}
