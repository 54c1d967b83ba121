"""A tiny scripted OSCAR server for byte-level sign-on and intake tests, on loopback.

It handles only the first frame of each read and throws the rest of that read away, for every
step a client has to wait on (the cookie, 01/17, 01/06, 04/04), as some real servers do during
sign-on; after that it reads normally. After the client's 01/02 it sends the scripted IMs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from aimbot.oscar.imtext import CHARSET_ASCII
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS
from aimbot.oscar.snacs import (
    BucpChallenge,
    BucpLoginResponse,
    FlapHello,
    HostOnline,
    HostVersions,
    IcbmParamsReply,
    IcbmSendIM,
    LocateSetInfo,
    MessageData,
    RateParamsReply,
    SnacBody,
    TextFragment,
    encode_snac_body,
)
from aimbot.oscar.wire import (
    Channel,
    Frame,
    FrameBuffer,
    SequenceCounter,
    TlvBlock,
    decode_snac,
    encode_screen_name,
    encode_snac,
    pack_u16,
)
from aimbot.oscar.wire import encode_frame as flap
from tests.helpers.oscar import HOST, WAIT

COOKIE = b"strict-cookie-1"
# What a conventional client sends, in order: each awaited request alone, 01/02 last.
CONVENTIONAL_ORDER = [
    "cookie",
    "01/17",
    "01/06",
    "04/04",
    "01/08",
    "04/02",
    "02/04",
    "01/02",
    "04/10",
]
ANSWERS: dict[tuple[int, int], SnacBody] = {
    (0x0001, 0x0017): HostVersions(((0x0001, 3), (0x0002, 1), (0x0004, 1))),
    (0x0001, 0x0006): RateParamsReply(DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS),
    (0x0004, 0x0004): IcbmParamsReply(max_message_bytes=2544),
}


@dataclass
class StrictServer:
    port: int = 0
    frames_per_strict_read: list[int] = field(default_factory=list)
    handled: list[str] = field(default_factory=list)
    profile: str | None = None
    online: asyncio.Event = field(default_factory=asyncio.Event)
    # (sender bytes, text bytes) of the IMs sent after 01/02; silent: never answer the cookie
    ims: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(b"alice", b"hello bot")])
    silent: bool = False
    recipients: list[bytes] = field(default_factory=list)  # of the client's 04/06, as sent
    got_im: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        sequence = SequenceCounter()

        def send(channel: int, payload: bytes) -> None:
            writer.write(flap(channel, sequence.next(), payload))

        send(Channel.SIGNON, FlapHello().encode())
        with contextlib.suppress(ConnectionError):
            data = await reader.read(65536)
            buffer = FrameBuffer()
            first = buffer.feed(data)
            if first and FlapHello.decode(first[0].payload).cookie == COOKIE:
                self.frames_per_strict_read.append(len(first))
                if self.silent:
                    await reader.read()  # until the client gives up and closes
                else:
                    await self._bos(reader, send)
            else:
                await self._auth(reader, send, buffer, first)
        writer.close()

    async def _strict_read(self, reader: asyncio.StreamReader) -> list[Frame]:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("client closed")
        frames = FrameBuffer().feed(data)
        self.frames_per_strict_read.append(len(frames))
        return frames[:1]  # the rest of this read is lost, as on the servers it mimics

    async def _auth(
        self,
        reader: asyncio.StreamReader,
        send: _Send,
        buffer: FrameBuffer,
        frames: list[Frame],
    ) -> None:
        while True:
            for frame in frames:
                if frame.channel != Channel.DATA:
                    continue
                header, _ = decode_snac(frame.payload)
                if (header.family, header.subgroup) == (0x0017, 0x0006):
                    reply: SnacBody = BucpChallenge(b"key")
                elif (header.family, header.subgroup) == (0x0017, 0x0002):
                    reply = BucpLoginResponse("bot", f"{HOST}:{self.port}", COOKIE)
                else:
                    continue
                send(Channel.DATA, encode_snac_body(reply, header.request_id))
            data = await reader.read(65536)
            if not data:
                return
            frames = buffer.feed(data)

    async def _bos(self, reader: asyncio.StreamReader, send: _Send) -> None:
        self.handled.append("cookie")
        send(Channel.DATA, encode_snac_body(HostOnline((0x0001, 0x0002, 0x0004)), 0))
        strict = True
        buffer = FrameBuffer()
        while True:
            if strict:
                frames = await self._strict_read(reader)
            else:
                data = await reader.read(65536)
                if not data:
                    return
                frames = buffer.feed(data)
            for frame in frames:
                if frame.channel == Channel.SIGNOFF:
                    return
                if frame.channel != Channel.DATA:
                    continue
                header, body = decode_snac(frame.payload)
                key = (header.family, header.subgroup)
                self.handled.append(f"{key[0]:02x}/{key[1]:02x}")
                if key in ANSWERS:
                    send(Channel.DATA, encode_snac_body(ANSWERS[key], header.request_id))
                if key == (0x0004, 0x0004):
                    strict = False  # past the steps a client waits on
                if key == (0x0004, 0x0006):
                    self.recipients.append(encode_screen_name(IcbmSendIM.decode(body).recipient))
                    self.got_im.set()
                if key == (0x0002, 0x0004):
                    self.profile = LocateSetInfo.decode(body).profile
                if key == (0x0001, 0x0002):
                    self.online.set()
                    for sender, text in self.ims:
                        send(Channel.DATA, incoming_im_payload(sender, text))


class _Send(Protocol):
    def __call__(self, channel: int, payload: bytes) -> None: ...


@contextlib.asynccontextmanager
async def strict_server() -> AsyncIterator[StrictServer]:
    state = StrictServer()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await state.serve(reader, writer)
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(handle, HOST, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        if tasks:  # the client has closed its sockets: every handler ends at EOF
            await asyncio.wait(set(tasks), timeout=WAIT)
        for writer in state.writers:
            writer.close()
        await server.wait_closed()


def incoming_im_payload(sender: bytes, text: bytes) -> bytes:
    """A 04/07 from `sender` exactly as given (any bytes), charset 0."""
    message = MessageData((TextFragment(CHARSET_ASCII, 0, text),)).encode()
    body = (
        b"8bytes!!"
        + pack_u16(1)
        + bytes([len(sender)])
        + sender
        + pack_u16(0)
        + pack_u16(0)
        + TlvBlock.of((2, message)).encode()
    )
    return encode_snac(0x0004, 0x0007, 0, body)
