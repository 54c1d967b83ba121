"""The devserver's locate, buddy, PD and feedbag services: what a real AIM client asks for while
it signs on, answered as Open OSCAR Server answers (same SNAC types, same rights values).

Handlers take the connection, the request id and the SNAC body; the server-wide parts (who
watches whom, the stored lists) live in OscarServer and FeedbagStore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aimbot.oscar.snacs import ERR_NOT_LOGGED_ON, SnacError
from aimbot.oscar.snacs_services import (
    FAMILY_BUDDY,
    FAMILY_FEEDBAG,
    FAMILY_LOCATE,
    FAMILY_PD,
    FAMILY_STATS,
    INFO_AWAY,
    INFO_PROFILE,
    TLV_AWAY,
    TLV_AWAY_MIME,
    TLV_CAPABILITIES,
    TLV_PROFILE,
    TLV_PROFILE_MIME,
    BuddyRightsReply,
    FeedbagActivate,
    FeedbagDelete,
    FeedbagEndCluster,
    FeedbagInsert,
    FeedbagItem,
    FeedbagNotModified,
    FeedbagQuery,
    FeedbagQueryIfModified,
    FeedbagReply,
    FeedbagRightsReply,
    FeedbagStartCluster,
    FeedbagStatus,
    FeedbagUpdate,
    LocateDirInfoReply,
    LocateRightsReply,
    LocateSetInfo,
    LocateUserInfoQuery,
    LocateUserInfoQuery2,
    LocateUserInfoReply,
    OfflineMessagesDone,
    PdRightsReply,
    StatsReportAck,
)
from aimbot.oscar.wire import TlvBlock, pack_u16

if TYPE_CHECKING:
    from aimbot.devserver.oscar_connection import OscarConnection

log = logging.getLogger(__name__)

MAX_PROFILE_BYTES = 4096  # OOS advertises 1000 and stores more; bound what one session holds
MAX_CAPABILITY_BYTES = 1000
AWAY_MIME = b'text/aolrtf; charset="us-ascii"'


def _u16_rights(*pairs: tuple[int, int]) -> TlvBlock:
    return TlvBlock.of(*((tag, pack_u16(value)) for tag, value in pairs))


# OOS's rights values (foodgroup/locate.go, buddy.go, permit_deny.go, feedbag.go).
LOCATE_RIGHTS = _u16_rights(*((tag, 1000) for tag in range(1, 6)))
BUDDY_RIGHTS = _u16_rights(*((tag, 100) for tag in range(1, 5)))
PD_RIGHTS = _u16_rights((0x0002, 100), (0x0001, 100), (0x0003, 100))
_MAX_ITEMS_BY_CLASS = (
    61,
    61,
    100,
    100,
    1,
    1,
    50,
    0,
    0,
    3,
    0,
    0,
    0,
    128,
    255,
    20,
    200,
    1,
    0,
    1,
    200,
)
FEEDBAG_RIGHTS = TlvBlock.of(
    (0x0003, pack_u16(200)),
    (0x0004, b"".join(pack_u16(n) for n in _MAX_ITEMS_BY_CLASS)),
    *((tag, pack_u16(200)) for tag in (0x0002, 0x0005, 0x0006, 0x0007, 0x0008, 0x0009, 0x000A)),
    (0x000C, pack_u16(200)),
    (0x000D, pack_u16(200)),
    (0x000E, pack_u16(100)),
)


# -- rights ----------------------------------------------------------------------------------------


def locate_rights(conn: OscarConnection, rid: int, body: bytes) -> None:
    conn.send_snac(LocateRightsReply(LOCATE_RIGHTS), rid)


def buddy_rights(conn: OscarConnection, rid: int, body: bytes) -> None:
    conn.send_snac(BuddyRightsReply(BUDDY_RIGHTS), rid)


def pd_rights(conn: OscarConnection, rid: int, body: bytes) -> None:
    conn.send_snac(PdRightsReply(PD_RIGHTS), rid)


def feedbag_rights(conn: OscarConnection, rid: int, body: bytes) -> None:
    conn.send_snac(FeedbagRightsReply(FEEDBAG_RIGHTS), rid)


# -- locate ----------------------------------------------------------------------------------------


def set_info(conn: OscarConnection, rid: int, body: bytes) -> None:
    """02/04: store profile, away message and capabilities for this session (no answer)."""
    tlvs = LocateSetInfo.decode(body).tlvs
    changed = False  # OOS tells watchers when the away message or capabilities are set
    profile = tlvs.get(TLV_PROFILE)
    if profile is not None:
        conn.profile = profile[:MAX_PROFILE_BYTES]
        conn.profile_mime = (tlvs.get(TLV_PROFILE_MIME) or b"")[:200]
    away = tlvs.get(TLV_AWAY)
    if away is not None:
        changed = True
        conn.away = away[:MAX_PROFILE_BYTES]
        conn.away_mime = (tlvs.get(TLV_AWAY_MIME) or b"")[:200]
    caps = tlvs.get(TLV_CAPABILITIES)
    if caps is not None:
        usable = len(caps) - len(caps) % 16
        conn.capabilities = caps[: min(usable, MAX_CAPABILITY_BYTES - MAX_CAPABILITY_BYTES % 16)]
        changed = True
    if changed:
        conn.server.presence_changed(conn)


def _user_info(conn: OscarConnection, rid: int, query: LocateUserInfoQuery) -> None:
    target = conn.server.user_info_of(query.screen_name)
    if target is None:
        conn.send_snac(_LocateError(ERR_NOT_LOGGED_ON), rid)
        return
    parts: list[tuple[int, bytes]] = []
    if query.wants(INFO_PROFILE):
        parts += [(TLV_PROFILE_MIME, target.profile_mime), (TLV_PROFILE, target.profile)]
    if query.wants(INFO_AWAY) and target.away:
        parts += [(TLV_AWAY_MIME, target.away_mime or AWAY_MIME), (TLV_AWAY, target.away)]
    conn.send_snac(LocateUserInfoReply(target.user_info(), TlvBlock.of(*parts)), rid)


def user_info_query(conn: OscarConnection, rid: int, body: bytes) -> None:
    _user_info(conn, rid, LocateUserInfoQuery.decode(body))


def user_info_query2(conn: OscarConnection, rid: int, body: bytes) -> None:
    _user_info(conn, rid, LocateUserInfoQuery2.decode(body))


class _LocateError(SnacError):
    FAMILY = FAMILY_LOCATE


# -- feedbag ---------------------------------------------------------------------------------------


def _reply(conn: OscarConnection) -> FeedbagReply:
    bag = conn.server.feedbags.get(conn.key or "")
    items = tuple(bag.items.values())
    return FeedbagReply(items, bag.last_modified if items else 0)


def feedbag_query(conn: OscarConnection, rid: int, body: bytes) -> None:
    FeedbagQuery.decode(body)
    conn.send_snac(_reply(conn), rid)


def feedbag_query_if_modified(conn: OscarConnection, rid: int, body: bytes) -> None:
    """13/05: 13/0F when the client's copy is newer than the last change, else the list."""
    query = FeedbagQueryIfModified.decode(body)
    bag = conn.server.feedbags.get(conn.key or "")
    if bag.items and bag.last_modified < query.last_update:
        conn.send_snac(FeedbagNotModified(bag.last_modified, len(bag.items)), rid)
        return
    conn.send_snac(_reply(conn), rid)


def feedbag_activate(conn: OscarConnection, rid: int, body: bytes) -> None:
    FeedbagActivate.decode(body)


def feedbag_cluster(conn: OscarConnection, rid: int, body: bytes) -> None:
    FeedbagStartCluster.decode(body)


def feedbag_insert(conn: OscarConnection, rid: int, body: bytes) -> None:
    _edit(conn, rid, FeedbagInsert.decode(body).items, "insert")


def feedbag_update(conn: OscarConnection, rid: int, body: bytes) -> None:
    _edit(conn, rid, FeedbagUpdate.decode(body).items, "update")


def feedbag_delete(conn: OscarConnection, rid: int, body: bytes) -> None:
    _edit(conn, rid, FeedbagDelete.decode(body).items, "delete")


def _edit(conn: OscarConnection, rid: int, items: tuple[FeedbagItem, ...], mode: str) -> None:
    store = conn.server.feedbags
    key = conn.key or ""
    before = store.get(key).buddies()
    apply = {"insert": store.insert, "update": store.update, "delete": store.delete}[mode]
    results = apply(key, items)
    conn.send_snac(FeedbagStatus(results), rid)
    added = store.get(key).buddies() - before
    if added and conn.online:
        # OOS: a buddy added while online is announced at once if it is on.
        conn.server.announce_buddies(conn, added)


def dir_info(conn: OscarConnection, rid: int, body: bytes) -> None:
    """02/0B: directory info of a screen name; we keep none, OOS then answers "found", empty."""
    conn.send_snac(LocateDirInfoReply(), rid)


def offline_messages(conn: OscarConnection, rid: int, body: bytes) -> None:
    """04/10 (libpurple sends it after 01/02): no stored messages here, so done at once."""
    conn.send_snac(OfflineMessagesDone(), rid)


def privacy_flags(conn: OscarConnection, rid: int, body: bytes) -> None:
    """01/14: OOS logs the flags and answers nothing."""


def stats_report(conn: OscarConnection, rid: int, body: bytes) -> None:
    """0B/03: a client's usage report; OOS acknowledges it with an empty 0B/04."""
    conn.send_snac(StatsReportAck(), rid)


SERVICE_HANDLERS: dict[tuple[int, int], Callable[[OscarConnection, int, bytes], None]] = {
    (FAMILY_LOCATE, 0x0002): locate_rights,
    (FAMILY_BUDDY, 0x0002): buddy_rights,
    (FAMILY_PD, 0x0002): pd_rights,
    (FAMILY_FEEDBAG, 0x0002): feedbag_rights,
    (LocateSetInfo.FAMILY, LocateSetInfo.SUBGROUP): set_info,
    (LocateUserInfoQuery.FAMILY, LocateUserInfoQuery.SUBGROUP): user_info_query,
    (LocateUserInfoQuery2.FAMILY, LocateUserInfoQuery2.SUBGROUP): user_info_query2,
    (FeedbagQuery.FAMILY, FeedbagQuery.SUBGROUP): feedbag_query,
    (FeedbagQueryIfModified.FAMILY, FeedbagQueryIfModified.SUBGROUP): feedbag_query_if_modified,
    (FeedbagActivate.FAMILY, FeedbagActivate.SUBGROUP): feedbag_activate,
    (FeedbagInsert.FAMILY, FeedbagInsert.SUBGROUP): feedbag_insert,
    (FeedbagUpdate.FAMILY, FeedbagUpdate.SUBGROUP): feedbag_update,
    (FeedbagDelete.FAMILY, FeedbagDelete.SUBGROUP): feedbag_delete,
    (FeedbagStartCluster.FAMILY, FeedbagStartCluster.SUBGROUP): feedbag_cluster,
    (FeedbagEndCluster.FAMILY, FeedbagEndCluster.SUBGROUP): feedbag_cluster,
    (FAMILY_STATS, 0x0003): stats_report,
    (FAMILY_LOCATE, 0x000B): dir_info,
    (OfflineMessagesDone.FAMILY, 0x0010): offline_messages,
    (0x0001, 0x0014): privacy_flags,
}
