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

from aimbot.devserver.bos_services import SERVICE_HANDLERS
from aimbot.devserver.system_notices import SERVER_REQUEST_ID
from aimbot.oscar.errors import ProtocolError
from aimbot.oscar.ratelimit import RateStatus, RateTable, unlimited
from aimbot.oscar.snacs import (
    FAMILY_BUCP,
    RATE_CODE_ALERT,
    RATE_CODE_CLEARED,
    RATE_CODE_LIMITED,
    SIGNOFF_SIGNED_ON_ELSEWHERE,
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
from aimbot.oscar.snacs_services import (
    TLV_USER_STATUS,
    IdleNotification,
    MessageOfTheDay,
    ServiceRequest,
    SetUserInfoFields,
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
from aimbot.utils.tasks import cancel_and_wait

if TYPE_CHECKING:
    from aimbot.devserver.oscar_server import Account, OscarServer

log = logging.getLogger(__name__)

READ_CHUNK = 65536
RATE_WATCH_INTERVAL = 1.0  # seconds between OOS's looks at a session's rate classes
MAX_AUTH_FRAMES = 10  # RAS: auth must finish in <= 10 frames (docs/oscar-protocol.md §4)
SERVER_SEQUENCE_START = 100  # RAS starts at 100 (docs/oscar-protocol.md §1)
# OOS's BOS families, in its order: alert, BART, buddy, feedbag, ICBM, ICQ, locate, OService,
# PD, user lookup, invite, popup, stats. We answer the ones an AIM client signs on with; any
# other SNAC gets "invalid SNAC" back, as from OOS.
BOS_FAMILIES = (0x18, 0x10, 0x03, 0x13, 0x04, 0x15, 0x02, 0x01, 0x09, 0x0A, 0x06, 0x08, 0x0B)
USER_FLAG_UNCONFIRMED = 0x0001
USER_CLASS_AIM = 0x0010
USER_FLAG_AWAY = 0x0020
USER_CLASS_BOT = 0x0400
MULTI_CONN_SEVERAL = 0x01  # login TLV 0x004A: "I support several sessions"
SIGNOFF_URL = "http://localhost/signed-on-elsewhere"
MOTD = MessageOfTheDay(0x0004, TlvBlock.of((0x000B, b"Welcome to the aimbot OSCAR devserver")))
ERR_INVALID_SNAC = 0x0001
ERR_SERVICE_UNAVAILABLE = 0x0005
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
        self.multi_conn = 0  # login TLV 0x004A as sent; 0 when absent ("old client")
        self.profile = b""
        self.profile_mime = b""
        self.away = b""
        self.away_mime = b""
        self.capabilities = b""
        self.status_bits = 0
        self.idle_since_ms: int | None = None
        self.signon_time = int(time.time())
        self._oservice_version = 1
        self._subscribed: set[int] = set()
        self._rates: RateTable | None = None
        self._rate_status: dict[int, RateStatus] = {}
        self._rate_watch: asyncio.Task[None] | None = None
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
            await self._stop_rate_watch()
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
        """Server shutdown: an empty channel-4 frame, then close (docs/oscar-protocol.md §10)."""
        if not self._closing:
            self.write_raw(encode_frame(Channel.SIGNOFF, self._sequence.next(), b""))
        self._close_transport()

    def kick(self, signoff: SignOff | None, *, why: str, short: bool | None = None) -> None:
        """End the session with a channel-4 frame, then close.

        Like OOS: clients that sent login TLV 0x004A get the TLVs, old clients (no 0x004A) the
        4-byte frame with no length; `short` forces either form.
        """
        if self._closing:
            return
        log.info("signing off %s: %s", self.label, why)
        if short is None:
            short = signoff is not None and self.multi_conn == 0
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
        cookie = self.server.issue_cookie(account, multi_conn=login.multi_conn or 0)
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
        self.send_snac(MOTD, SERVER_REQUEST_ID)
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
        """Count the SNAC against its class; False if it must be dropped
        (docs/oscar-protocol.md §6)."""
        if self._rates is None or not self._rates_enforced():
            return True
        class_id, status = self._rates.record(header.family, header.subgroup, self.server.now_ms())
        if class_id is None:
            return True
        previous = self._rate_status.get(class_id, RateStatus.CLEAR)
        self._rate_status[class_id] = status
        key = self.key or ""
        if status is RateStatus.DISCONNECT:
            # OOS ends the session as it ends one replaced by a new login.
            self.server.stats.rate_disconnects[key] += 1
            self.kick(
                SignOff(SIGNOFF_SIGNED_ON_ELSEWHERE, SIGNOFF_URL),
                why=f"rate class {class_id} fell below its disconnect level",
            )
            raise _Closed
        if status is not previous:
            self._rate_notice(class_id, status)
        if status is not RateStatus.CLEAR:
            self._watch_rates()
        if status is RateStatus.LIMITED:
            # Dropped silently, as by OOS: no error, no host ack.
            self.server.stats.rate_limited[key] += 1
            return False
        return True

    def _rate_notice(self, class_id: int, status: RateStatus) -> None:
        if class_id in self._subscribed and self._rates is not None:
            notice = RateParamsChange(
                _RATE_NOTICE[status],
                self._rates.snapshot(class_id),
                extended=self._oservice_version > 1,
            )
            self.send_snac(notice, SERVER_REQUEST_ID)

    def _watch_rates(self) -> None:
        """While a class is not clear, look at it once a second, as OOS does, so that a client
        that stopped sending still hears when its level has recovered (the "cleared" notice)."""
        if self._rate_watch is None or self._rate_watch.done():
            self._rate_watch = asyncio.create_task(
                self._rate_watch_loop(), name=f"devserver-rates-{self.label}"
            )

    async def _rate_watch_loop(self) -> None:
        rates = self._rates
        assert rates is not None
        while not self.closing and any(
            status is not RateStatus.CLEAR for status in self._rate_status.values()
        ):
            await asyncio.sleep(RATE_WATCH_INTERVAL)  # OOS's once-a-second look, not a sync
            now = self.server.now_ms()
            for class_id, previous in list(self._rate_status.items()):
                meter = rates.meter(class_id)
                if meter is None:
                    continue
                _, status = meter.peek(now)
                if status is not previous and status in _RATE_NOTICE:
                    self._rate_status[class_id] = status
                    self._rate_notice(class_id, status)

    async def _stop_rate_watch(self) -> None:
        task, self._rate_watch = self._rate_watch, None
        if task is not None:
            await cancel_and_wait(task)

    def _rates_enforced(self) -> bool:
        account = self.account
        return self.server.enforce_rate_limits and account is not None and not account.is_bot

    @property
    def active(self) -> bool:
        """Neither away nor idle: OOS relays typing notifications only to such sessions."""
        return not self.away and self.idle_since_ms is None

    def user_info(self) -> UserInfo:
        """The user info block, with OOS's TLVs in OOS's order."""
        account = self.account
        assert account is not None
        flags = USER_CLASS_AIM | USER_FLAG_UNCONFIRMED
        flags |= USER_CLASS_BOT if account.is_bot else 0
        flags |= USER_FLAG_AWAY if self.away else 0
        tlvs: list[tuple[int, bytes]] = [
            (0x0003, pack_u32(self.signon_time)),
            (0x0001, pack_u16(flags)),
            (0x0006, pack_u32(self.status_bits)),
        ]
        if self.idle_since_ms is not None:
            minutes = max(0, self.server.now_ms() - self.idle_since_ms) // 60_000
            tlvs.append((0x0004, pack_u16(min(minutes, 0xFFFF))))
        tlvs += [(0x000D, self.capabilities), (0x001E, pack_u32(0))]
        return UserInfo(account.screen_name, 0, TlvBlock.of(*tlvs))

    # SNAC handlers (dispatched by (family, subgroup) in _BOS_HANDLERS)

    def _client_versions(self, rid: int, body: bytes) -> None:
        versions = ClientVersions.decode(body)
        self._oservice_version = versions.version_of(0x0001) or 1
        self.send_snac(HostVersions(versions.versions), rid)

    def _rate_request(self, rid: int, body: bytes) -> None:
        RateParamsRequest.decode(body)
        assert self._rates is not None
        classes = tuple(self._rates.snapshot(c.class_id) for c in self.server.rate_classes)
        if not self.server.enforce_rate_limits:
            # A server without limits (devserver only) says so; exempt (is_bot) accounts get
            # the ordinary classes, as from OOS, and learn they are exempt from the silence.
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

    def _set_user_info_fields(self, rid: int, body: bytes) -> None:
        status = SetUserInfoFields.decode(body).tlvs.get_int(TLV_USER_STATUS)
        if status is not None:
            self.status_bits = status & 0xFFFFFFFF
            self.server.presence_changed(self)
        self.send_snac(SelfInfoReply(self.user_info()), rid)

    def _idle(self, rid: int, body: bytes) -> None:
        seconds = IdleNotification.decode(body).idle_seconds
        self.idle_since_ms = None if seconds == 0 else self.server.now_ms() - seconds * 1000
        self.server.presence_changed(self)

    def _service_request(self, rid: int, body: bytes) -> None:
        # Only the BOS services live here; OOS would point to its alert/chat services.
        ServiceRequest.decode(body)
        self.send_error(0x0001, ERR_SERVICE_UNAVAILABLE, rid)

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
    (SetUserInfoFields.FAMILY, SetUserInfoFields.SUBGROUP): OscarConnection._set_user_info_fields,
    (IdleNotification.FAMILY, IdleNotification.SUBGROUP): OscarConnection._idle,
    (ServiceRequest.FAMILY, ServiceRequest.SUBGROUP): OscarConnection._service_request,
    (NoOp.FAMILY, NoOp.SUBGROUP): OscarConnection._noop,
    (IcbmParamsRequest.FAMILY, IcbmParamsRequest.SUBGROUP): OscarConnection._icbm_params_request,
    (IcbmParamsSet.FAMILY, IcbmParamsSet.SUBGROUP): OscarConnection._icbm_params_set,
    (IcbmSendIM.FAMILY, IcbmSendIM.SUBGROUP): OscarConnection._send_im,
    (IcbmTyping.FAMILY, IcbmTyping.SUBGROUP): OscarConnection._typing,
    **SERVICE_HANDLERS,
}


def departure_info(conn: OscarConnection) -> UserInfo:
    """03/0C's user info: the name, the warning level and a zero flags TLV, nothing else (OOS)."""
    account = conn.account
    assert account is not None
    return UserInfo(account.screen_name, 0, TlvBlock.of((0x0001, pack_u16(0))))
