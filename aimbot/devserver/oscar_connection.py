"""One client connection to the devserver: BUCP login or a BOS session, like Open OSCAR Server.

Each connection runs in its own task and only ever hurts itself: malformed frames, a missed
auth deadline or a client that stops reading close that connection with a log line, never the
server. The server-wide parts (accounts, cookies, who is online, relaying) live in OscarServer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.ratelimit import RateStatus, RateTable, unlimited
from aimbot.oscar.snacs import (
    FAMILY_BUCP,
    RATE_CODE_ALERT,
    RATE_CODE_CLEARED,
    RATE_CODE_LIMITED,
    SUBGROUP_ERROR,
    BucpChallenge,
    BucpChallengeRequest,
    BucpLoginRequest,
    BucpLoginResponse,
    ClientOnline,
    ClientVersions,
    FlapHello,
    HostOnline,
    HostVersions,
    IcbmParamsReply,
    IcbmParamsRequest,
    IcbmParamsSet,
    IcbmSendIM,
    IcbmTyping,
    NoOp,
    RateParamsAck,
    RateParamsChange,
    RateParamsReply,
    RateParamsRequest,
    SelfInfoReply,
    SelfInfoRequest,
    SignOff,
    SnacBody,
    SnacError,
    UserInfo,
    normalize_screen_name,
)
from aimbot.oscar.wire import (
    Channel,
    Frame,
    FrameBuffer,
    SequenceCounter,
    SnacHeader,
    TlvBlock,
    decode_snac,
    encode_frame,
    encode_snac,
    pack_u16,
    pack_u32,
)

if TYPE_CHECKING:
    from aimbot.devserver.oscar_server import Account, OscarServer

log = logging.getLogger(__name__)

READ_CHUNK = 65536
MAX_AUTH_FRAMES = 10  # RAS: auth must finish in <= 10 frames (doc §4)
SERVER_SEQUENCE_START = 100  # RAS starts at 100 (doc §1)
# Families we answer on BOS; anything else gets "invalid SNAC" back, as from RAS.
BOS_FAMILIES = (0x0001, 0x0004)
USER_CLASS_AIM = 0x0010
USER_CLASS_BOT = 0x0400
ERR_INVALID_SNAC = 0x0001
ERR_RATE_TO_HOST = 0x0002
_RATE_NOTICE = {
    RateStatus.ALERT: RATE_CODE_ALERT,
    RateStatus.LIMITED: RATE_CODE_LIMITED,
    RateStatus.CLEAR: RATE_CODE_CLEARED,
}


class _Closed(Exception):
    """Ends this connection's loop quietly (the reason was already logged)."""


class OscarConnection:
    def __init__(
        self, server: OscarServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._frames = FrameBuffer(max_payload=server.max_frame_payload)
        self._pending: deque[Frame] = deque()
        self._sequence = SequenceCounter(SERVER_SEQUENCE_START)
        self._running = asyncio.Event()  # cleared while stalled by a test hook
        self._running.set()
        self._held: list[bytes] = []
        self._closing = False
        self.done = asyncio.Event()
        self.account: Account | None = None
        self.online = False
        self.multi_conn = False
        self.signon_time = int(time.time())
        self._oservice_version = 1
        self._subscribed: set[int] = set()
        self._rates: RateTable | None = None
        self._rate_status: dict[int, RateStatus] = {}
        self._auth_deadline = 0.0
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def label(self) -> str:
        name = self.account.screen_name if self.account is not None else "?"
        return f"{name}@{self.peer}"

    @property
    def key(self) -> str | None:
        return None if self.account is None else normalize_screen_name(self.account.screen_name)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self.send_frames([(Channel.SIGNON, FlapHello().encode())])
            self._auth_deadline = asyncio.get_running_loop().time() + self.server.auth_timeout
            async with asyncio.timeout_at(self._auth_deadline):
                first = await self._next_frame()
            if first.channel != Channel.SIGNON:
                raise ProtocolError(f"expected a sign-on frame first, got channel {first.channel}")
            hello = FlapHello.decode(first.payload)
            if hello.cookie is not None:
                await self._run_bos(hello.cookie)
            elif hello.tlvs.has(0x0001):
                log.warning("%s: channel-1 (roasted password) login is not supported", self.peer)
            else:
                await self._run_bucp()
        except ProtocolError as e:
            log.warning("closing %s: malformed data from the client: %s", self.label, e)
        except TimeoutError:
            log.warning(
                "closing %s: login not finished within %gs", self.label, self.server.auth_timeout
            )
        except _Closed:
            pass
        except (ConnectionError, OSError) as e:
            log.info("connection %s lost: %s", self.label, e)
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            log.exception("devserver connection %s crashed; closing it", self.label)
        finally:
            self._close_transport()
            self.done.set()
            self.server.connection_done(self)

    @property
    def closing(self) -> bool:
        """The connection is going (closed here, or the peer reset or closed it), even if the
        task that serves it has not finished: nothing written to it now will be read."""
        return self._closing or self._writer.is_closing()

    def _close_transport(self) -> None:
        self._closing = True
        self._running.set()  # wake a stalled reader so that its loop can end
        self._writer.close()

    def abort(self) -> None:
        """Close abruptly: no sign-off frame, unsent bytes discarded."""
        self._closing = True
        self._running.set()
        self._writer.transport.abort()

    def close_gracefully(self) -> None:
        """Server shutdown: an empty channel-4 frame, then close (doc §10)."""
        if not self._closing:
            self.write_raw(encode_frame(Channel.SIGNOFF, self._sequence.next(), b""))
        self._close_transport()

    def kick(self, signoff: SignOff | None, *, why: str, short: bool | None = None) -> None:
        """End the session with a channel-4 frame, then close.

        Like RAS (doc §10): with a reason to give, clients that sent login TLV 0x004A get the
        TLVs and others the 4-byte frame with no length; `short` forces either form.
        """
        if self._closing:
            return
        log.info("signing off %s: %s", self.label, why)
        if short is None:
            short = signoff is not None and not self.multi_conn
        if short:
            frame = bytes([0x2A, Channel.SIGNOFF]) + pack_u16(self._sequence.next())
        else:
            payload = b"" if signoff is None else signoff.encode()
            frame = encode_frame(Channel.SIGNOFF, self._sequence.next(), payload)
        self.write_raw(frame)
        self._close_transport()

    def stall(self, stalled: bool) -> None:
        if stalled:
            self._running.clear()
            return
        self._running.set()
        held, self._held = self._held, []
        for data in held:
            self.write_raw(data)

    # -- I/O ---------------------------------------------------------------------------------------

    async def _next_frame(self) -> Frame:
        while not self._pending:
            self._frames.check()
            await self._running.wait()
            if self._closing:
                raise _Closed
            data = await self._reader.read(READ_CHUNK)
            if not self._running.is_set():
                # Stalled while this read was in flight: hold the data until released.
                await self._running.wait()
            if not data:
                self._pending.extend(self._frames.feed_eof())
                if not self._pending:
                    log.info("%s closed the connection", self.label)
                    raise _Closed
                break
            self._pending.extend(self._frames.feed(data))
        return self._pending.popleft()

    def write_raw(self, data: bytes) -> None:
        """Bypasses the stall hook: for sign-offs and malformed frames injected by tests."""
        if self._writer.is_closing():
            return
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > self.server.max_outbound_bytes:
            log.warning("closing %s: it stopped reading (outbound buffer full)", self.label)
            self.abort()

    def send_frames(self, frames: Iterable[tuple[int, bytes]]) -> None:
        if self._closing:
            return
        data = b"".join(encode_frame(ch, self._sequence.next(), payload) for ch, payload in frames)
        if not self._running.is_set():
            self._held.append(data)
            return
        self.write_raw(data)

    def send_snac(self, body: SnacBody, request_id: int) -> None:
        self.send_frames(
            [(Channel.DATA, encode_snac(body.FAMILY, body.SUBGROUP, request_id, body.encode()))]
        )

    def send_error(self, family: int, code: int, request_id: int) -> None:
        payload = encode_snac(family, SUBGROUP_ERROR, request_id, SnacError(code).encode())
        self.send_frames([(Channel.DATA, payload)])

    # -- BUCP login --------------------------------------------------------------------------------

    async def _run_bucp(self) -> None:
        key: bytes | None = None
        account: Account | None = None
        async with asyncio.timeout_at(self._auth_deadline):
            for _ in range(MAX_AUTH_FRAMES):
                frame = await self._next_frame()
                if frame.channel == Channel.SIGNOFF:
                    return
                if frame.channel != Channel.DATA:
                    continue
                header, body = decode_snac(frame.payload)
                if header.family != FAMILY_BUCP:
                    self.send_error(header.family, ERR_INVALID_SNAC, header.request_id)
                elif header.subgroup == BucpChallengeRequest.SUBGROUP:
                    request = BucpChallengeRequest.decode(body)
                    account = self.server.find_account(request.screen_name)
                    if account is None:
                        log.info("login for unknown screen name %r refused", request.screen_name)
                        self._login_result(header, request.screen_name, error=0x0001)
                        return
                    key = str(secrets.randbelow(10**10)).zfill(10).encode()
                    self.send_snac(BucpChallenge(key), header.request_id)
                elif header.subgroup == BucpLoginRequest.SUBGROUP:
                    login = BucpLoginRequest.decode(body)
                    self._finish_login(header, login, account, key)
                    return
                else:
                    self.send_error(FAMILY_BUCP, ERR_INVALID_SNAC, header.request_id)
        log.warning("closing %s: login took more than %d frames", self.peer, MAX_AUTH_FRAMES)

    def _finish_login(
        self,
        header: SnacHeader,
        login: BucpLoginRequest,
        account: Account | None,
        key: bytes | None,
    ) -> None:
        if (
            account is None
            or key is None
            or normalize_screen_name(login.screen_name)
            != normalize_screen_name(account.screen_name)
        ):
            self._login_result(header, login.screen_name, error=0x0001)
            return
        error = self.server.check_login(account, key, login.password_hash)
        if error is not None:
            log.info("login for %s refused with code 0x%04x", account.screen_name, error)
            self._login_result(header, account.screen_name, error=error)
            return
        cookie = self.server.issue_cookie(account, multi_conn=bool(login.multi_conn))
        self.send_snac(
            BucpLoginResponse(
                screen_name=account.screen_name,
                bos_address=self.server.bos_address,
                cookie=cookie,
            ),
            header.request_id,
        )

    def _login_result(self, header: SnacHeader, screen_name: str, *, error: int) -> None:
        response = BucpLoginResponse(
            screen_name=screen_name, error_code=error, error_url="http://localhost/login-help"
        )
        self.send_snac(response, header.request_id)

    # -- BOS ---------------------------------------------------------------------------------------

    async def _run_bos(self, cookie: bytes) -> None:
        grant = self.server.redeem_cookie(cookie)
        if grant is None:
            log.warning("closing %s: unknown or expired login cookie", self.peer)
            return
        self.account, self.multi_conn = grant
        now_ms = self.server.now_ms()
        self._rates = RateTable(self.server.rate_classes, self.server.rate_groups, now_ms)
        self.server.bos_signed_on(self)
        self.send_snac(HostOnline(BOS_FAMILIES), 0)
        while True:
            frame = await self._next_frame()
            if frame.channel == Channel.DATA:
                self._on_snac(frame.payload)
            elif frame.channel == Channel.SIGNOFF:
                log.info("%s signed off", self.label)
                return

    def _on_snac(self, payload: bytes) -> None:
        header, body = decode_snac(payload)
        if not self._within_rate(header):
            return
        key = (header.family, header.subgroup)
        rid = header.request_id
        handler = _BOS_HANDLERS.get(key)
        if handler is None:
            self.send_error(header.family, ERR_INVALID_SNAC, rid)
            return
        handler(self, rid, body)

    def _within_rate(self, header: SnacHeader) -> bool:
        """Count the SNAC against its class; False if it must be dropped (doc §6)."""
        if self._rates is None or not self._rates_enforced():
            return True
        class_id, status = self._rates.record(header.family, header.subgroup, self.server.now_ms())
        if class_id is None:
            return True
        previous = self._rate_status.get(class_id, RateStatus.CLEAR)
        self._rate_status[class_id] = status
        key = self.key or ""
        if status is RateStatus.DISCONNECT:
            self.server.stats.rate_disconnects[key] += 1
            self.kick(None, why=f"rate class {class_id} fell below its disconnect level")
            raise _Closed
        if status is not previous and class_id in self._subscribed:
            notice = RateParamsChange(
                _RATE_NOTICE[status],
                self._rates.snapshot(class_id),
                extended=self._oservice_version > 1,
            )
            self.send_snac(notice, 0)
        if status is RateStatus.LIMITED:
            # RAS drops silently; we answer with "rate to host" so that the sender can tell
            # (documented in OscarServer).
            self.server.stats.rate_limited[key] += 1
            self.send_error(header.family, ERR_RATE_TO_HOST, header.request_id)
            return False
        return True

    def _rates_enforced(self) -> bool:
        account = self.account
        return self.server.enforce_rate_limits and account is not None and not account.is_bot

    def user_info(self) -> UserInfo:
        account = self.account
        assert account is not None
        user_class = USER_CLASS_AIM | (USER_CLASS_BOT if account.is_bot else 0)
        tlvs = TlvBlock.of((0x0001, pack_u16(user_class)), (0x0003, pack_u32(self.signon_time)))
        return UserInfo(account.screen_name, 0, tlvs)

    # SNAC handlers (dispatched by (family, subgroup) in _BOS_HANDLERS)

    def _client_versions(self, rid: int, body: bytes) -> None:
        versions = ClientVersions.decode(body)
        self._oservice_version = versions.version_of(0x0001) or 1
        self.send_snac(HostVersions(versions.versions), rid)

    def _rate_request(self, rid: int, body: bytes) -> None:
        RateParamsRequest.decode(body)
        assert self._rates is not None
        classes = tuple(self._rates.snapshot(c.class_id) for c in self.server.rate_classes)
        if not self._rates_enforced():
            # Advertise what is enforced: exempt sessions must not pace themselves for nothing.
            classes = tuple(unlimited(c) for c in classes)
        reply = RateParamsReply(classes, self.server.rate_groups, self._oservice_version > 1)
        self.send_snac(reply, rid)

    def _rate_ack(self, rid: int, body: bytes) -> None:
        self._subscribed.update(RateParamsAck.decode(body).class_ids)

    def _self_info(self, rid: int, body: bytes) -> None:
        SelfInfoRequest.decode(body)
        self.send_snac(SelfInfoReply(self.user_info()), rid)

    def _client_online(self, rid: int, body: bytes) -> None:
        ClientOnline.decode(body)
        if not self.online:
            self.online = True
            self.server.came_online(self)

    def _noop(self, rid: int, body: bytes) -> None:
        NoOp.decode(body)

    def _icbm_params_request(self, rid: int, body: bytes) -> None:
        IcbmParamsRequest.decode(body)
        reply = IcbmParamsReply(max_message_bytes=self.server.max_message_bytes)
        self.send_snac(reply, rid)

    def _icbm_params_set(self, rid: int, body: bytes) -> None:
        IcbmParamsSet.decode(body)  # RAS ignores the content but drops short bodies

    def _send_im(self, rid: int, body: bytes) -> None:
        self.server.relay_im(self, IcbmSendIM.decode(body), rid)

    def _typing(self, rid: int, body: bytes) -> None:
        self.server.relay_typing(self, IcbmTyping.decode(body), rid)


_BOS_HANDLERS = {
    (ClientVersions.FAMILY, ClientVersions.SUBGROUP): OscarConnection._client_versions,
    (RateParamsRequest.FAMILY, RateParamsRequest.SUBGROUP): OscarConnection._rate_request,
    (RateParamsAck.FAMILY, RateParamsAck.SUBGROUP): OscarConnection._rate_ack,
    (SelfInfoRequest.FAMILY, SelfInfoRequest.SUBGROUP): OscarConnection._self_info,
    (ClientOnline.FAMILY, ClientOnline.SUBGROUP): OscarConnection._client_online,
    (NoOp.FAMILY, NoOp.SUBGROUP): OscarConnection._noop,
    (IcbmParamsRequest.FAMILY, IcbmParamsRequest.SUBGROUP): OscarConnection._icbm_params_request,
    (IcbmParamsSet.FAMILY, IcbmParamsSet.SUBGROUP): OscarConnection._icbm_params_set,
    (IcbmSendIM.FAMILY, IcbmSendIM.SUBGROUP): OscarConnection._send_im,
    (IcbmTyping.FAMILY, IcbmTyping.SUBGROUP): OscarConnection._typing,
}
