"""A person at an AIM client, for the interop suite: an independent, conventional OSCAR client.

The bot's own `OscarClient` is the code under test, so the people who talk to it through a real
server use this separate client instead: it signs on the way real clients do (one step per server
answer: cookie → 01/03, 01/17 → 01/18, 01/06 → 01/07, rate ack, ICBM parameters, 01/02 last),
binds each connection to its own loopback source address (a real server limits logins per source
IP), and records every IM exactly as it arrived, with the byte size of its text on the wire.

Built only from the codec (`aimbot.oscar.snacs` / `wire`): pure functions over bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aimbot.oscar.imtext import CHARSET_ASCII, CHARSET_LATIN1, CHARSET_UCS2BE
from aimbot.oscar.snacs import (
    FAMILY_ICBM,
    FAMILY_OSERVICE,
    TLV_STORE_OFFLINE,
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
    RateParamsAck,
    RateParamsChange,
    RateParamsReply,
    RateParamsRequest,
    SignOff,
    SnacBody,
    login_hash,
    normalize_screen_name,
    parse_bos_address,
)
from aimbot.oscar.wire import Channel, TlvBlock, decode_snac
from tests.helpers.oscar import HOST, RawPeer

WAIT = 20.0  # upper bound for one expected event on a loaded 2-core machine
MULTI_CONN_ONE_SESSION = 0x03


@dataclass(frozen=True)
class ReceivedIM:
    """One IM as it arrived: who sent it, its text, and the text's size in bytes on the wire."""

    sender: str
    markup: str
    wire_bytes: int
    charset: int
    auto_response: bool
    at: float = field(default_factory=time.monotonic)
    cookie: bytes = b""  # the ICBM cookie: a resend of one message repeats it

    @property
    def text(self) -> str:
        """The markup without tags and entities: what the person reads."""
        return html.unescape(re.sub(r"<[^>]*>", "", re.sub(r"(?i)<br\s*/?>", "\n", self.markup)))


def _decode_text(charset: int, payload: bytes) -> str:
    if charset == CHARSET_UCS2BE:
        return payload.decode("utf-16-be", errors="surrogatepass")
    if charset == CHARSET_LATIN1:
        return payload.decode("latin-1")
    if charset == CHARSET_ASCII:
        return payload.decode("ascii", errors="replace")
    return payload.decode("utf-8", errors="replace")


async def _answer(conn: RawPeer, kind: type[SnacBody]) -> bytes:
    """The body of the server's next SNAC of this kind, skipping others (sign-on is one step
    per answer)."""
    family, subgroup = kind.FAMILY, kind.SUBGROUP
    _, body = await conn.snac(lambda h: (h.family, h.subgroup) == (family, subgroup), WAIT)
    return body


def _encode_text(text: str) -> tuple[int, bytes]:
    if text.isascii():
        return CHARSET_ASCII, text.encode("ascii")
    return CHARSET_UCS2BE, text.encode("utf-16-be")


@dataclass
class AimUser:
    """A person: signs on, sends IMs, keeps everything that arrives in arrival order."""

    screen_name: str
    password: str
    host: str
    port: int
    local_addr: str
    received: list[ReceivedIM] = field(default_factory=list)
    typing: list[tuple[str, int]] = field(default_factory=list)
    im_errors: list[int] = field(default_factory=list)
    rate_notices: list[int] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    max_message_bytes: int | None = None
    signed_off: SignOff | None = None
    _conn: RawPeer | None = None
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def sign_on(self, *, multi_conn: int | None = MULTI_CONN_ONE_SESSION) -> None:
        cookie, bos_address = await self._login(multi_conn)
        host, port = parse_bos_address(bos_address)
        assert host == self.host, f"the server sent us to {host}"
        conn = await RawPeer.open(port, local_addr=self.local_addr)
        self._conn = conn
        conn.send(Channel.SIGNON, FlapHello.with_cookie(cookie).encode())
        await _answer(conn, HostOnline)
        conn.send_snac(ClientVersions(((FAMILY_OSERVICE, 4), (FAMILY_ICBM, 1))))
        await _answer(conn, HostVersions)
        conn.send_snac(RateParamsRequest())
        rates = RateParamsReply.decode(await _answer(conn, RateParamsReply))
        conn.send_snac(RateParamsAck(tuple(c.class_id for c in rates.classes)))
        conn.send_snac(IcbmParamsRequest())
        params = IcbmParamsReply.decode(await _answer(conn, IcbmParamsReply))
        self.max_message_bytes = params.max_message_bytes
        conn.send_snac(IcbmParamsSet())
        conn.send_snac(
            ClientOnline(
                (
                    (FAMILY_OSERVICE, 4, 0x0110, 0x164F),
                    (FAMILY_ICBM, 1, 0x0110, 0x164F),
                )
            )
        )
        self._reader = asyncio.create_task(self._read(conn), name=f"aim-user-{self.screen_name}")

    async def _login(self, multi_conn: int | None) -> tuple[bytes, str]:
        assert self.host == HOST, "people connect to the loopback server"
        auth = await RawPeer.open(self.port, local_addr=self.local_addr)
        try:
            auth.send(Channel.SIGNON, FlapHello().encode())
            auth.send_snac(BucpChallengeRequest(self.screen_name))
            key = BucpChallenge.decode(await _answer(auth, BucpChallenge)).key
            auth.send_snac(
                BucpLoginRequest(
                    self.screen_name,
                    login_hash(key, self.password, strong=True),
                    client_name="interop test user",
                    multi_conn=multi_conn,
                )
            )
            response = BucpLoginResponse.decode(await _answer(auth, BucpLoginResponse))
        finally:
            await auth.close()
        assert response.error_code is None, f"{self.screen_name}: login error {response}"
        assert response.cookie is not None and response.bos_address is not None
        return response.cookie, response.bos_address

    async def _read(self, conn: RawPeer) -> None:
        try:
            while (frame := await conn.frame(timeout=None)) is not None:
                if frame.channel == Channel.SIGNOFF:
                    self.signed_off = SignOff.decode(frame.payload) if frame.payload else SignOff()
                    break
                if frame.channel == Channel.DATA:
                    header, body = decode_snac(frame.payload)
                    self._on_snac(header.family, header.subgroup, body)
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            if self.signed_off is None:
                self.signed_off = SignOff()
            async with self._changed:
                self._changed.notify_all()

    def _on_snac(self, family: int, subgroup: int, body: bytes) -> None:
        if (family, subgroup) == (FAMILY_ICBM, IcbmIncomingIM.SUBGROUP):
            im = IcbmIncomingIM.decode(body)
            message = im.message()
            if im.channel != 1 or message is None:
                return
            for fragment in message.texts:
                self.received.append(
                    ReceivedIM(
                        sender=im.sender.screen_name,
                        markup=_decode_text(fragment.charset, fragment.payload),
                        wire_bytes=len(fragment.payload),
                        charset=fragment.charset,
                        auto_response=im.auto_response,
                        cookie=im.cookie,
                    )
                )
        elif (family, subgroup) == (FAMILY_ICBM, IcbmTyping.SUBGROUP):
            typing = IcbmTyping.decode(body)
            self.typing.append((normalize_screen_name(typing.screen_name), typing.event))
        elif (family, subgroup) == (FAMILY_ICBM, IcbmHostAck.SUBGROUP):
            self.acks.append(IcbmHostAck.decode(body).cookie)
        elif (family, subgroup) == (FAMILY_ICBM, 0x0001):
            self.im_errors.append(IcbmError.decode(body).code)
        elif (family, subgroup) == (FAMILY_OSERVICE, RateParamsChange.SUBGROUP):
            self.rate_notices.append(RateParamsChange.decode(body).code)

    # -- talking ---------------------------------------------------------------------------------

    async def say(
        self, to: str, text: str, *, store_offline: bool = False, want_ack: bool = False
    ) -> bytes:
        """Send one IM (asking the server to keep it if `to` is offline, and to ack it);
        returns its cookie."""
        assert self._conn is not None, "not signed on"
        cookie = secrets.token_bytes(8)
        charset, payload = _encode_text(text)
        im = IcbmSendIM.text_message(cookie, to, charset, payload, want_ack=want_ack)
        if store_offline:
            extra = TlvBlock.of((TLV_STORE_OFFLINE, b""))
            im = IcbmSendIM(cookie, im.channel, to, TlvBlock(im.tlvs.tlvs + extra.tlvs))
        self._conn.send_snac(im)
        await self._conn.writer.drain()
        return cookie

    async def wait_for(
        self,
        condition: Callable[[AimUser], bool],
        what: str,
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> None:
        """Until `condition(self)` holds (checked whenever something arrives), else fail."""
        try:
            async with self._changed:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: condition(self))
        except TimeoutError:
            texts = [im.text[:120] for im in self.received]
            raise AssertionError(
                f"{self.screen_name}: no {what} within {timeout:g} s; received {texts}"
            ) from None

    def from_(self, sender: str) -> list[ReceivedIM]:
        key = normalize_screen_name(sender)
        return [im for im in self.received if normalize_screen_name(im.sender) == key]

    async def replies(self, sender: str, n: int, timeout: float = WAIT) -> list[ReceivedIM]:  # noqa: ASYNC109
        """The first `n` IMs from `sender`, once they have all arrived."""
        await self.wait_for(lambda u: len(u.from_(sender)) >= n, f"{n} IMs from {sender}", timeout)
        return self.from_(sender)[:n]

    async def sign_off(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self._reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(WAIT):
                    await self._reader
