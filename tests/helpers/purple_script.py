"""A scripted AIM client that signs on the way libpurple's oscar code does, step by step.

The order and the request bodies follow libpurple (`libpurple/protocols/oscar/`: oscar.c's
connection callbacks and the family_*.c request builders): nothing after the cookie until 01/03;
01/17 and wait for 01/18; 01/06 and wait for 01/07; then the rate ack, 01/0E, the feedbag
rights and list (13/02, 13/05), the locate, buddy, ICBM and BOS rights (02/02, 03/02, 04/04,
09/02); on those answers 02/04 (profile, capabilities), 04/02 (ICBM parameters), 01/1E (status),
01/11 (idle), 13/07 (activate the list) and 01/02 (client ready), then 04/10 (offline messages).
Not replayed: 01/04 requests for the alert and chat services, which the devserver does not run.

Each request is followed by a 01/0E "barrier": a server handles one connection's SNACs in
order, so once the barrier's 01/0F arrives every answer to the request has arrived too, and a
request that gets no answer is seen to get none without waiting out a timer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aimbot.oscar.snacs import (
    BucpChallenge,
    BucpChallengeRequest,
    BucpLoginRequest,
    BucpLoginResponse,
    FlapHello,
    login_hash,
    parse_bos_address,
)
from aimbot.oscar.snacs_services import FeedbagItem
from aimbot.oscar.wire import (
    Channel,
    Frame,
    SnacHeader,
    TlvBlock,
    decode_snac,
    encode_snac,
    pack_str8,
    pack_u16,
    pack_u32,
)
from tests.helpers.oscar import RawPeer

WAIT = 5.0
SnacType = tuple[int, int]

# libpurple's 01/17 versions (aim_srv_setversions over the families the server offered).
CLIENT_VERSIONS = {0x0001: 3, 0x0013: 4}
# OSCAR_CAPABILITY_TYPING and the ICQ/UTF-8 capability, as libpurple sets them in 02/04.
CAPABILITIES = bytes.fromhex(
    "563fc8090b6f41bd9f79422609dfa2f3" + "0946134e4c7f11d18222444553540000"
)
PROFILE_MIME = b'text/aolrtf; charset="us-ascii"'


def snac_type(header: SnacHeader) -> SnacType:
    return (header.family, header.subgroup)


@dataclass
class Received:
    header: SnacHeader
    body: bytes


@dataclass
class PurpleSession:
    """One BOS connection driven by hand; every SNAC received is kept in `inbox`."""

    peer: RawPeer
    screen_name: str
    inbox: list[Received] = field(default_factory=list)
    next_request: int = 0x100
    signed_off: Frame | None = None
    # The server closed on us with our last request unread: the kernel then resets the
    # connection, and a sign-off frame still in our receive buffer is lost with it.
    reset: bool = False

    def send_frame(self, channel: int, payload: bytes) -> None:
        self.peer.send(channel, payload)

    def send(self, family: int, subgroup: int, body: bytes = b"") -> int:
        request_id = self.next_request
        self.next_request += 1
        self.send_frame(Channel.DATA, encode_snac(family, subgroup, request_id, body))
        return request_id

    async def _frame(self) -> Frame | None:
        try:
            return await self.peer.frame()
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            return None

    async def next_snac(self, timeout: float = WAIT) -> Received:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._frame()
                if frame is None:
                    raise AssertionError(f"{self.screen_name}: connection closed")
                if frame.channel == Channel.SIGNOFF:
                    self.signed_off = frame
                    raise AssertionError(f"{self.screen_name}: signed off {frame.payload!r}")
                if frame.channel != Channel.DATA:
                    continue
                header, body = decode_snac(frame.payload)
                received = Received(header, body)
                self.inbox.append(received)
                return received

    async def wait_for(self, kind: SnacType, timeout: float = WAIT) -> Received:  # noqa: ASYNC109
        """The first SNAC of `kind` in the inbox (already received, or the next to arrive)."""
        for item in self.inbox:
            if snac_type(item.header) == kind:
                self.inbox.remove(item)
                return item
        async with asyncio.timeout(timeout):
            while True:
                item = await self.next_snac(timeout)
                if snac_type(item.header) == kind:
                    self.inbox.remove(item)
                    return item

    async def request(
        self, family: int, subgroup: int, body: bytes = b"", *, queued: SnacType | None = None
    ) -> list[Received]:
        """Send one request, then the 01/0E barrier; the answers that carry the request's id.

        `queued` names an answer a server may send through its per-session queue instead of
        in line (OOS does so for 13/0E): it is awaited even when it comes after the barrier.
        """
        request_id = self.send(family, subgroup, body)
        barrier = self.send(0x0001, 0x000E)
        answers: list[Received] = []
        async with asyncio.timeout(WAIT):
            while True:
                item = await self.next_snac()
                if item.header.request_id == barrier:
                    self.inbox.remove(item)
                    break
                if item.header.request_id == request_id:
                    self.inbox.remove(item)
                    answers.append(item)
            while queued is not None and queued not in [snac_type(a.header) for a in answers]:
                item = await self.next_snac()
                if item.header.request_id == request_id:
                    self.inbox.remove(item)
                    answers.append(item)
        return answers

    async def close(self) -> None:
        await self.peer.close()

    async def closed(self, timeout: float = WAIT) -> Frame | None:  # noqa: ASYNC109
        """Read until EOF; the channel-4 frame seen on the way (None if there was none)."""
        async with asyncio.timeout(timeout):
            while (frame := await self._frame()) is not None:
                if frame.channel == Channel.SIGNOFF:
                    self.signed_off = frame
                elif frame.channel == Channel.DATA:
                    header, body = decode_snac(frame.payload)
                    self.inbox.append(Received(header, body))
        return self.signed_off


async def _open(host: str, port: int, screen_name: str) -> PurpleSession:
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(host, port)
    return PurpleSession(RawPeer(reader, writer), screen_name)


async def bucp_login(
    host: str, port: int, screen_name: str, password: str, *, multi_conn: int | None = None
) -> BucpLoginResponse:
    """MD5 login on the auth connection; the BOS address and cookie (or the error)."""
    auth = await _open(host, port, screen_name)
    try:
        auth.send_frame(Channel.SIGNON, FlapHello().encode())
        auth.send(0x0017, 0x0006, BucpChallengeRequest(screen_name).encode())
        key = BucpChallenge.decode((await auth.wait_for((0x0017, 0x0007))).body).key
        login = BucpLoginRequest(
            screen_name, login_hash(key, password, strong=True), multi_conn=multi_conn
        )
        auth.send(0x0017, 0x0002, login.encode())
        return BucpLoginResponse.decode((await auth.wait_for((0x0017, 0x0003))).body)
    finally:
        await auth.close()


@dataclass
class SignOnTrace:
    """What each server answered to each step: request type → answer types, in order."""

    steps: list[tuple[SnacType, list[SnacType]]] = field(default_factory=list)
    host_online: tuple[int, ...] = ()

    def add(self, request: SnacType, answers: list[Received]) -> list[Received]:
        self.steps.append((request, [snac_type(a.header) for a in answers]))
        return answers


def locate_set_info(profile: str) -> bytes:
    tlvs = TlvBlock.of(
        (0x0001, PROFILE_MIME), (0x0002, profile.encode("ascii")), (0x0005, CAPABILITIES)
    )
    return tlvs.encode()


def icbm_params() -> bytes:
    # channel 0, flags (channel msgs | missed calls | typing), 8000 bytes, 999, 999, 0 ms
    return pack_u16(0) + pack_u32(0x0B) + pack_u16(8000) + pack_u16(999) * 2 + pack_u32(0)


async def purple_sign_on(
    host: str,
    port: int,
    screen_name: str,
    password: str,
    *,
    profile: str = "scripted libpurple session",
    multi_conn: int | None = None,
) -> tuple[PurpleSession, SignOnTrace]:
    """BUCP login, then the BOS sign-on in libpurple's order; returns the session and a trace."""
    login = await bucp_login(host, port, screen_name, password, multi_conn=multi_conn)
    assert login.bos_address is not None and login.cookie is not None, login
    bos_host, bos_port = parse_bos_address(login.bos_address)
    session = await _open(bos_host, bos_port, screen_name)
    trace = SignOnTrace()
    session.send_frame(Channel.SIGNON, FlapHello.with_cookie(login.cookie).encode())
    online = await session.wait_for((0x0001, 0x0003))
    families = tuple(
        int.from_bytes(online.body[i : i + 2], "big") for i in range(0, len(online.body), 2)
    )
    trace.host_online = families
    versions = b"".join(pack_u16(f) + pack_u16(CLIENT_VERSIONS.get(f, 1)) for f in families)
    trace.add((0x0001, 0x0017), await session.request(0x0001, 0x0017, versions))
    trace.add((0x0001, 0x0006), await session.request(0x0001, 0x0006))
    trace.add(
        (0x0001, 0x0008),
        await session.request(0x0001, 0x0008, b"".join(pack_u16(c) for c in range(1, 6))),
    )
    trace.add((0x0001, 0x000E), await session.request(0x0001, 0x000E))
    trace.add((0x0013, 0x0002), await session.request(0x0013, 0x0002))
    trace.add((0x0013, 0x0005), await session.request(0x0013, 0x0005, pack_u32(0) + pack_u16(0)))
    trace.add((0x0002, 0x0002), await session.request(0x0002, 0x0002))
    buddy_rights = TlvBlock.of((0x0005, pack_u16(0x0003))).encode()
    trace.add((0x0003, 0x0002), await session.request(0x0003, 0x0002, buddy_rights))
    trace.add((0x0004, 0x0004), await session.request(0x0004, 0x0004))
    trace.add((0x0009, 0x0002), await session.request(0x0009, 0x0002))
    # On the answers: profile and capabilities, ICBM parameters, status, idle, list, ready.
    trace.add((0x0002, 0x0004), await session.request(0x0002, 0x0004, locate_set_info(profile)))
    trace.add((0x0004, 0x0002), await session.request(0x0004, 0x0002, icbm_params()))
    status = TlvBlock.of((0x0006, pack_u32(0))).encode()
    trace.add((0x0001, 0x001E), await session.request(0x0001, 0x001E, status))
    trace.add((0x0001, 0x0011), await session.request(0x0001, 0x0011, pack_u32(0)))
    trace.add((0x0013, 0x0007), await session.request(0x0013, 0x0007))
    ready = b"".join(
        pack_u16(f) + pack_u16(CLIENT_VERSIONS.get(f, 1)) + pack_u16(0x0110) + pack_u16(0x164F)
        for f in families
    )
    trace.add((0x0001, 0x0002), await session.request(0x0001, 0x0002, ready))
    # Right after 01/02 libpurple asks for messages stored while it was offline.
    trace.add((0x0004, 0x0010), await session.request(0x0004, 0x0010))
    return session, trace


def feedbag_item(name: str, group_id: int, item_id: int, class_id: int) -> bytes:
    """One feedbag item with no attributes (what a client adds for a buddy or a group)."""
    return FeedbagItem(name, group_id, item_id, class_id).encode()


def user_info_query(screen_name: str, kind: int = 0x0001) -> bytes:
    """02/05: u16 request type (1 = profile, 3 = away message), str8 screen name."""
    return pack_u16(kind) + pack_str8(screen_name.encode())
