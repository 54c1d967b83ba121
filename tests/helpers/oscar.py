"""Shared pieces for the OSCAR tests: a running devserver, signed-on clients, an event log that
tests await (never poll), a fake clock, and a raw scripted OSCAR peer for byte-level checks.

Everything talks to 127.0.0.1 on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import Event, SessionEnded
from aimbot.oscar.snacs import (
    BucpChallenge,
    BucpChallengeRequest,
    BucpLoginRequest,
    BucpLoginResponse,
    ClientOnline,
    ClientVersions,
    FlapHello,
    SnacBody,
    encode_snac_body,
    login_hash,
    parse_bos_address,
)
from aimbot.oscar.wire import (
    Channel,
    Frame,
    FrameBuffer,
    SnacHeader,
    TlvBlock,
    decode_snac,
    encode_frame,
)

HOST = "127.0.0.1"
ACCOUNTS = {"alice": "alice-pw-1", "Bob Smith": "bob-pw-22", "carol": "carol-pw-333"}
PASSWORDS = {"alice": "alice-pw-1", "bobsmith": "bob-pw-22", "carol": "carol-pw-333"}
WAIT = 5.0  # generous upper bound for anything that should happen "now" on loopback

E = TypeVar("E")


def tlvs_from_bytes(blob: bytes, max_items: int = 6) -> TlvBlock:
    """A TLV block carved out of one byte string (tag, size byte, value, ...).

    Property tests draw one bytes value and carve structures out of it: one draw per example
    instead of one per field keeps the 10,000-example CI profile fast.
    """
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 3 <= len(blob) and len(items) < max_items:
        tag, size = int.from_bytes(blob[pos : pos + 2], "big"), blob[pos + 2] % 21
        items.append((tag, blob[pos + 3 : pos + 3 + size]))
        pos += 3 + size
    return TlvBlock.of(*items)


def frames_from_bytes(blob: bytes, max_items: int = 5) -> list[Frame]:
    """FLAP frames carved out of one byte string (channel, sequence, size byte, payload, ...)."""
    frames: list[Frame] = []
    pos = 0
    while pos + 4 <= len(blob) and len(frames) < max_items:
        channel, sequence, size = (
            blob[pos],
            int.from_bytes(blob[pos + 1 : pos + 3], "big"),
            blob[pos + 3] % 41,
        )
        frames.append(Frame(channel, sequence, blob[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return frames


class FakeClock:
    """A monotonic clock that moves only when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class EventLog:
    """Consumes a client's events() from the start, so tests can await specific ones."""

    def __init__(self, client: OscarClient) -> None:
        self.client = client
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._cursor: dict[type, int] = {}
        self.task = asyncio.create_task(self._consume(), name=f"events-{client.screen_name}")

    async def _consume(self) -> None:
        async for event in self.client.events():
            self.events.append(event)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def next(self, kind: type[E], timeout: float = WAIT) -> E:  # noqa: ASYNC109
        """The next event of `kind` not returned before (events of other kinds are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                start = self._cursor.get(kind, 0)
                for index in range(start, len(self.events)):
                    event = self.events[index]
                    if isinstance(event, kind):
                        self._cursor[kind] = index + 1
                        return event
                self._cursor[kind] = len(self.events)
                await self._changed.wait()

    async def ended(self, timeout: float = WAIT) -> SessionEnded:  # noqa: ASYNC109
        return await self.next(SessionEnded, timeout)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]


@dataclass
class Session:
    client: OscarClient
    log: EventLog


@dataclass
class SessionPool:
    """Signs clients on to one server and closes every one of them at the end."""

    server: OscarServer
    sessions: list[Session] = field(default_factory=list)

    def client(self, screen_name: str, password: str | None = None, **kwargs: Any) -> OscarClient:
        key = screen_name.replace(" ", "").lower()
        return OscarClient(
            screen_name,
            password if password is not None else PASSWORDS[key],
            HOST,
            self.server.port,
            **kwargs,
        )

    async def sign_on(
        self, screen_name: str, password: str | None = None, **kwargs: Any
    ) -> Session:
        client = self.client(screen_name, password, **kwargs)
        await client.connect()
        session = Session(client, EventLog(client))
        self.sessions.append(session)
        await self.server.wait_online(screen_name, WAIT)
        return session

    async def close(self) -> None:
        for session in self.sessions:
            await session.client.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT):
                    await session.log.task


@contextlib.asynccontextmanager
async def running_server(**kwargs: Any) -> AsyncIterator[OscarServer]:
    kwargs.setdefault("accounts", ACCOUNTS)
    server = OscarServer(host=HOST, port=0, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def session_pool(**kwargs: Any) -> AsyncIterator[SessionPool]:
    async with running_server(**kwargs) as server:
        pool = SessionPool(server)
        try:
            yield pool
        finally:
            await pool.close()


class RawPeer:
    """A hand-driven OSCAR connection: send exact frames, read exact frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameBuffer()
        self.pending: list[Frame] = []
        self.sequence = 1
        self.next_request = 1

    @classmethod
    async def open(cls, port: int, *, local_addr: str | None = None) -> RawPeer:
        """`local_addr`: the loopback source address to connect from (servers that limit
        logins per address see each peer as its own machine)."""
        source = None if local_addr is None else (local_addr, 0)
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=source)
        return cls(reader, writer)

    def send(self, channel: int, payload: bytes) -> None:
        self.writer.write(encode_frame(channel, self.sequence, payload))
        self.sequence += 1

    def send_snac(self, body: SnacBody, request_id: int | None = None) -> int:
        if request_id is None:
            request_id = self.next_request
            self.next_request += 1
        self.send(Channel.DATA, encode_snac_body(body, request_id))
        return request_id

    async def frame(self, timeout: float | None = WAIT) -> Frame | None:  # noqa: ASYNC109
        """The next frame, or None at EOF (`timeout=None`: however long it takes)."""
        async with asyncio.timeout(timeout):
            while not self.pending:
                self.frames.check()
                data = await self.reader.read(65536)
                if not data:
                    self.pending.extend(self.frames.feed_eof())
                    if not self.pending:
                        return None
                    break
                self.pending.extend(self.frames.feed(data))
        return self.pending.pop(0)

    async def snac(
        self,
        match: Callable[[SnacHeader], bool] | None = None,
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> tuple[SnacHeader, bytes]:
        """The next SNAC (matching `match`), skipping other frames; AssertionError at EOF."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame(timeout)
                assert frame is not None, "connection closed while waiting for a SNAC"
                if frame.channel != Channel.DATA:
                    continue
                header, body = decode_snac(frame.payload)
                if match is None or match(header):
                    return header, body

    async def closed(self, timeout: float = WAIT) -> list[Frame]:  # noqa: ASYNC109
        """Read until EOF; returns the frames seen on the way."""
        seen = []
        async with asyncio.timeout(timeout):
            while (frame := await self.frame(timeout)) is not None:
                seen.append(frame)
        return seen

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    @classmethod
    async def sign_on(
        cls,
        port: int,
        screen_name: str,
        password: str,
        *,
        oservice_version: int = 3,
        multi_conn: int | None = 1,
    ) -> RawPeer:
        """Full BUCP login + BOS sign-on by hand (no rate ack), ready for SNACs."""
        auth = await cls.open(port)
        auth.send(Channel.SIGNON, FlapHello().encode())
        auth.send_snac(BucpChallengeRequest(screen_name))
        _, body = await auth.snac(lambda h: h.subgroup == BucpChallenge.SUBGROUP)
        key = BucpChallenge.decode(body).key
        auth.send_snac(
            BucpLoginRequest(
                screen_name, login_hash(key, password, strong=True), multi_conn=multi_conn
            )
        )
        _, body = await auth.snac(lambda h: h.subgroup == BucpLoginResponse.SUBGROUP)
        await auth.close()
        response = BucpLoginResponse.decode(body)
        assert response.bos_address is not None and response.cookie is not None, response
        host, bos_port = parse_bos_address(response.bos_address)
        assert host == HOST
        bos = await cls.open(bos_port)
        bos.send(Channel.SIGNON, FlapHello.with_cookie(response.cookie).encode())
        bos.send_snac(ClientVersions(((0x0001, oservice_version), (0x0004, 1))))
        bos.send_snac(ClientOnline(((0x0001, oservice_version, 0x0110, 0x164F),)))
        return bos
