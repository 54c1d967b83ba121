"""SNAC bodies of the services a full AIM client signs on with: locate (0x02), buddy (0x03),
permit/deny (0x09), feedbag (0x13, the server-stored buddy list), and the OService extras that
come with them (status, idle, message of the day, stats interval).

The bot itself needs only a few of these; the devserver needs all of them to let a real client
such as Pidgin sign on. Like snacs.py: frozen dataclasses keyed by (family, subgroup), decode()
raises ProtocolError and only that, and accepts the trailing bytes real clients send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Self

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.snacs import FAMILY_OSERVICE, UserInfo, _EmptyBody
from aimbot.oscar.wire import (
    Reader,
    TlvBlock,
    decode_screen_name,
    decode_tlvs,
    encode_screen_name,
    pack_str8,
    pack_str16,
    pack_u8,
    pack_u16,
    pack_u32,
)

FAMILY_LOCATE = 0x0002
FAMILY_BUDDY = 0x0003
FAMILY_PD = 0x0009
FAMILY_STATS = 0x000B
FAMILY_FEEDBAG = 0x0013

# Locate TLVs (02/04 set info, 02/06 user info reply)
TLV_PROFILE_MIME = 0x0001
TLV_PROFILE = 0x0002
TLV_AWAY_MIME = 0x0003
TLV_AWAY = 0x0004
TLV_CAPABILITIES = 0x0005
# 02/05 request type and 02/15 request flags: which parts of the user info to send
INFO_PROFILE = 0x0001
INFO_AWAY = 0x0002
# OService 01/1E TLV: the user's status bits (0x0100 = invisible)
TLV_USER_STATUS = 0x0006
# Feedbag item classes
FEEDBAG_BUDDY = 0x0000
FEEDBAG_GROUP = 0x0001
FEEDBAG_PERMIT = 0x0002
FEEDBAG_DENY = 0x0003
FEEDBAG_PD_INFO = 0x0004
FEEDBAG_BUDDY_PREFS = 0x0005
MAX_FEEDBAG_NAME = 0xFFFF


class _TlvBody:
    """A SNAC whose body is a TLV list to the end (rights replies, 02/04, 01/1E)."""

    __slots__ = ()
    tlvs: TlvBlock

    def encode(self) -> bytes:
        return self.tlvs.encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(decode_tlvs(body, cls.__name__))  # type: ignore[call-arg]


# -- OService extras (family 0x01) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    """01/04: the client asks where another service (alert, chat nav, ...) lives."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0004

    family: int

    def encode(self) -> bytes:
        return pack_u16(self.family, "service family")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(Reader(body, "service request").u16("service family"))


@dataclass(frozen=True, slots=True)
class IdleNotification:
    """01/11: seconds the user has been idle (0 = active again)."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0011

    idle_seconds: int

    def encode(self) -> bytes:
        return pack_u32(self.idle_seconds, "idle time")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(Reader(body, "idle notification").u32("idle time"))


@dataclass(frozen=True, slots=True)
class MessageOfTheDay:
    """01/13: u16 type, then TLVs (0x000B = text); servers send it once after 01/03."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x0013

    kind: int
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    def encode(self) -> bytes:
        return pack_u16(self.kind, "MOTD type") + self.tlvs.encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "message of the day")
        return cls(reader.u16("MOTD type"), reader.tlv_rest())


@dataclass(frozen=True, slots=True)
class SetUserInfoFields(_TlvBody):
    """01/1E: status TLVs (0x0006 = status bits); answered with 01/0F."""

    FAMILY: ClassVar[int] = FAMILY_OSERVICE
    SUBGROUP: ClassVar[int] = 0x001E

    tlvs: TlvBlock = field(default_factory=TlvBlock)


@dataclass(frozen=True, slots=True)
class StatsReportInterval:
    """0B/02: the minimum report interval (hours) the server wants; sent after 01/02."""

    FAMILY: ClassVar[int] = FAMILY_STATS
    SUBGROUP: ClassVar[int] = 0x0002

    hours: int

    def encode(self) -> bytes:
        return pack_u16(self.hours, "report interval")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(Reader(body, "stats interval").u16("report interval"))


@dataclass(frozen=True, slots=True)
class StatsReportAck(_EmptyBody):
    """0B/04: the server took the client's usage report (0B/03); empty."""

    FAMILY: ClassVar[int] = FAMILY_STATS
    SUBGROUP: ClassVar[int] = 0x0004


# -- rights replies (x/03 to the x/02 queries of locate, buddy, PD and feedbag) --------------------


@dataclass(frozen=True, slots=True)
class LocateRightsReply(_TlvBody):
    FAMILY: ClassVar[int] = FAMILY_LOCATE
    SUBGROUP: ClassVar[int] = 0x0003

    tlvs: TlvBlock = field(default_factory=TlvBlock)


@dataclass(frozen=True, slots=True)
class BuddyRightsReply(_TlvBody):
    FAMILY: ClassVar[int] = FAMILY_BUDDY
    SUBGROUP: ClassVar[int] = 0x0003

    tlvs: TlvBlock = field(default_factory=TlvBlock)


@dataclass(frozen=True, slots=True)
class PdRightsReply(_TlvBody):
    FAMILY: ClassVar[int] = FAMILY_PD
    SUBGROUP: ClassVar[int] = 0x0003

    tlvs: TlvBlock = field(default_factory=TlvBlock)


@dataclass(frozen=True, slots=True)
class FeedbagRightsReply(_TlvBody):
    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0003

    tlvs: TlvBlock = field(default_factory=TlvBlock)


# -- locate (family 0x02) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocateSetInfo(_TlvBody):
    """02/04: profile (0x0001 MIME, 0x0002 text), away (0x0003, 0x0004), capabilities (0x0005).

    A TLV that is absent leaves that part as it was; an empty away text means "back"."""

    FAMILY: ClassVar[int] = FAMILY_LOCATE
    SUBGROUP: ClassVar[int] = 0x0004

    tlvs: TlvBlock = field(default_factory=TlvBlock)


@dataclass(frozen=True, slots=True)
class LocateUserInfoQuery:
    """02/05 (u16 type) or 02/15 (u32 flags): which parts of whose user info to send."""

    FAMILY: ClassVar[int] = FAMILY_LOCATE
    SUBGROUP: ClassVar[int] = 0x0005

    kind: int
    screen_name: str

    def wants(self, part: int) -> bool:
        return bool(self.kind & part)

    def encode(self) -> bytes:
        return pack_u16(self.kind, "info type") + pack_str8(encode_screen_name(self.screen_name))

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "user info query")
        kind = reader.u16("info type")
        return cls(kind, decode_screen_name(reader.str8("screen name")))


@dataclass(frozen=True, slots=True)
class LocateUserInfoQuery2(LocateUserInfoQuery):
    SUBGROUP: ClassVar[int] = 0x0015

    def encode(self) -> bytes:
        return pack_u32(self.kind, "info flags") + pack_str8(encode_screen_name(self.screen_name))

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "user info query")
        kind = reader.u32("info flags")
        return cls(kind, decode_screen_name(reader.str8("screen name")))


@dataclass(frozen=True, slots=True)
class LocateUserInfoReply:
    """02/06: the user's info block, then the requested profile / away TLVs."""

    FAMILY: ClassVar[int] = FAMILY_LOCATE
    SUBGROUP: ClassVar[int] = 0x0006

    user: UserInfo
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    def encode(self) -> bytes:
        return self.user.encode() + self.tlvs.encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "user info reply")
        return cls(UserInfo.read(reader), reader.tlv_rest())


@dataclass(frozen=True, slots=True)
class LocateDirInfoReply:
    """02/0C: u16 status (1 = found) and a counted TLV block of directory fields."""

    FAMILY: ClassVar[int] = FAMILY_LOCATE
    SUBGROUP: ClassVar[int] = 0x000C

    status: int = 0x0001
    tlvs: TlvBlock = field(default_factory=TlvBlock)

    def encode(self) -> bytes:
        return pack_u16(self.status, "directory status") + self.tlvs.encode_counted()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "directory info")
        return cls(reader.u16("directory status"), reader.tlv_counted("directory fields"))


# -- ICBM extras (family 0x04) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfflineMessagesDone(_EmptyBody):
    """04/17: the answer to 04/10 "send my offline messages" once all (here: none) are sent."""

    FAMILY: ClassVar[int] = 0x0004
    SUBGROUP: ClassVar[int] = 0x0017


# -- buddy (family 0x03) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuddyArrived:
    """03/0B: a buddy is online, or its info (away, idle, capabilities) changed."""

    FAMILY: ClassVar[int] = FAMILY_BUDDY
    SUBGROUP: ClassVar[int] = 0x000B

    user: UserInfo

    def encode(self) -> bytes:
        return self.user.encode()

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(UserInfo.read(Reader(body, "buddy arrived")))


@dataclass(frozen=True, slots=True)
class BuddyDeparted(BuddyArrived):
    """03/0C: a buddy went offline (name, warning level, flags TLV only)."""

    SUBGROUP: ClassVar[int] = 0x000C


# -- feedbag (family 0x13) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedbagItem:
    """str16 name, u16 group id, u16 item id, u16 class id, length-prefixed attribute TLVs."""

    name: str
    group_id: int
    item_id: int
    class_id: int
    attributes: TlvBlock = field(default_factory=TlvBlock)

    @property
    def key(self) -> tuple[int, int]:
        return (self.group_id, self.item_id)

    def encode(self) -> bytes:
        return b"".join(
            (
                pack_str16(self.name.encode("utf-8", errors="replace"), "feedbag item name"),
                pack_u16(self.group_id, "group id"),
                pack_u16(self.item_id, "item id"),
                pack_u16(self.class_id, "class id"),
                self.attributes.encode_length_prefixed(),
            )
        )

    @classmethod
    def read(cls, reader: Reader) -> Self:
        name = decode_screen_name(reader.str16("feedbag item name"))
        group_id = reader.u16("group id")
        item_id = reader.u16("item id")
        class_id = reader.u16("class id")
        return cls(name, group_id, item_id, class_id, reader.tlv_length_prefixed("attributes"))


def _read_items(reader: Reader) -> tuple[FeedbagItem, ...]:
    items = []
    while not reader.at_end():
        items.append(FeedbagItem.read(reader))
    return tuple(items)


@dataclass(frozen=True, slots=True)
class FeedbagQuery(_EmptyBody):
    """13/04: the whole list, unconditionally."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0004


@dataclass(frozen=True, slots=True)
class FeedbagQueryIfModified:
    """13/05: u32 time of the client's copy, then its item count (u8; libpurple sends u16)."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0005

    last_update: int
    count: int = 0

    def encode(self) -> bytes:
        return pack_u32(self.last_update, "feedbag time") + pack_u16(self.count, "item count")

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "feedbag query")
        last_update = reader.u32("feedbag time")
        count = reader.u8("item count") if not reader.at_end() else 0
        return cls(last_update, count)


@dataclass(frozen=True, slots=True)
class FeedbagReply:
    """13/06: u8 version, u16 count, the items, u32 time of the last change."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0006

    items: tuple[FeedbagItem, ...] = ()
    last_update: int = 0
    version: int = 0

    def encode(self) -> bytes:
        return b"".join(
            (
                pack_u8(self.version, "feedbag version"),
                pack_u16(len(self.items), "feedbag item count"),
                *(item.encode() for item in self.items),
                pack_u32(self.last_update, "feedbag time"),
            )
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "feedbag reply")
        version = reader.u8("feedbag version")
        count = reader.u16("feedbag item count")
        items = tuple(FeedbagItem.read(reader) for _ in range(count))
        return cls(items, reader.u32("feedbag time"), version)


@dataclass(frozen=True, slots=True)
class FeedbagActivate(_EmptyBody):
    """13/07: the client has its list and starts using it (no answer)."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0007


@dataclass(frozen=True, slots=True)
class FeedbagInsert:
    """13/08 insert, 13/09 update, 13/0A delete: items back to back; answered with 13/0E."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0008

    items: tuple[FeedbagItem, ...] = ()

    def encode(self) -> bytes:
        return b"".join(item.encode() for item in self.items)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return cls(_read_items(Reader(body, "feedbag items")))


@dataclass(frozen=True, slots=True)
class FeedbagUpdate(FeedbagInsert):
    SUBGROUP: ClassVar[int] = 0x0009


@dataclass(frozen=True, slots=True)
class FeedbagDelete(FeedbagInsert):
    SUBGROUP: ClassVar[int] = 0x000A


@dataclass(frozen=True, slots=True)
class FeedbagStatus:
    """13/0E: one u16 result per item of the request (0 = done)."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x000E

    results: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return b"".join(pack_u16(r, "feedbag result") for r in self.results)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        if len(body) % 2:
            raise ProtocolError(f"feedbag status: odd length {len(body)}")
        reader = Reader(body, "feedbag status")
        return cls(tuple(reader.u16("feedbag result") for _ in range(len(body) // 2)))


@dataclass(frozen=True, slots=True)
class FeedbagNotModified:
    """13/0F: the client's copy is current (u32 time of the last change, u8 item count)."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x000F

    last_update: int
    count: int

    def encode(self) -> bytes:
        return pack_u32(self.last_update, "feedbag time") + pack_u8(
            min(self.count, 0xFF), "item count"
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        reader = Reader(body, "feedbag not modified")
        return cls(reader.u32("feedbag time"), reader.u8("item count"))


@dataclass(frozen=True, slots=True)
class FeedbagStartCluster(_EmptyBody):
    """13/11: a batch of edits begins (optional TLVs; no answer)."""

    FAMILY: ClassVar[int] = FAMILY_FEEDBAG
    SUBGROUP: ClassVar[int] = 0x0011


@dataclass(frozen=True, slots=True)
class FeedbagEndCluster(FeedbagStartCluster):
    """13/12: the batch of edits ends (no answer)."""

    SUBGROUP: ClassVar[int] = 0x0012


SERVICE_SNAC_TYPES: dict[tuple[int, int], type] = {
    (cls.FAMILY, cls.SUBGROUP): cls
    for cls in (
        ServiceRequest,
        IdleNotification,
        MessageOfTheDay,
        SetUserInfoFields,
        StatsReportInterval,
        StatsReportAck,
        LocateRightsReply,
        BuddyRightsReply,
        PdRightsReply,
        FeedbagRightsReply,
        LocateSetInfo,
        LocateUserInfoQuery,
        LocateUserInfoQuery2,
        LocateUserInfoReply,
        LocateDirInfoReply,
        OfflineMessagesDone,
        BuddyArrived,
        BuddyDeparted,
        FeedbagQuery,
        FeedbagQueryIfModified,
        FeedbagReply,
        FeedbagActivate,
        FeedbagInsert,
        FeedbagUpdate,
        FeedbagDelete,
        FeedbagStatus,
        FeedbagNotModified,
        FeedbagStartCluster,
        FeedbagEndCluster,
    )
}
