"""OscarClient: one signed-on OSCAR session over asyncio streams.

This is the only module of the protocol layer that does I/O. It logs in (BUCP MD5, strong hash
first, weak hash as fallback), signs on to BOS by moving bytes between the socket and the sign-on
state machine of session.py (one step per server answer, never pipelined), and then turns every
inbound frame into an event on one ordered queue. Everything that can
end a session (EOF, a sign-off frame, silence past the keep-alive probe, bytes that make no
sense, a socket that stops taking data, close()) ends it the same way: one SessionEnded event,
always the last, so the session layer above has exactly one place to decide about reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aimbot.oscar.errors import (
    ConnectError,
    CookieError,
    LoginError,
    MessageTooLong,
    NotConnected,
    OscarError,
    ProtocolError,
    ScreenNameError,
    SendError,
)
from aimbot.oscar.events import (
    DisconnectReason,
    Event,
    HostAck,
    IMError,
    RateChange,
    SessionEnded,
    TypingNotification,
    TypingState,
)
from aimbot.oscar.imtext import encode_im_text, plain_to_html
from aimbot.oscar.intake import DroppedIM, incoming_im
from aimbot.oscar.ratelimit import RateClass, RateMeter, RateStatus, RateTable, paced_target
from aimbot.oscar.session import FALLBACK_MAX_MESSAGE_BYTES, Outgoing, SignOn
from aimbot.oscar.snacs import (
    FAMILY_BUCP,
    MULTI_CONN_ONE_SESSION,
    RATE_CODE_CLEARED,
    RATE_CODE_LIMITED,
    SUBGROUP_ERROR,
    BucpChallenge,
    BucpChallengeRequest,
    BucpLoginRequest,
    BucpLoginResponse,
    FlapHello,
    IcbmError,
    IcbmHostAck,
    IcbmIncomingIM,
    IcbmParams,
    IcbmParamsReply,
    IcbmSendIM,
    IcbmTyping,
    RateParamsChange,
    RateParamsReply,
    SelfInfoRequest,
    SignOff,
    SnacBody,
    SnacError,
    describe_error,
    encode_snac_body,
    login_hash,
    parse_bos_address,
)
from aimbot.oscar.throttle import ThrottleLearner
from aimbot.oscar.wire import (
    Channel,
    Frame,
    FrameBuffer,
    SequenceCounter,
    SnacHeader,
    decode_snac,
    encode_frame,
    printable,
    screen_name_problem,
)
from aimbot.utils.secret import Secret
from aimbot.utils.tasks import cancel_and_wait

log = logging.getLogger(__name__)

READ_CHUNK = 65536
# Doc §3 "keep SNACs < 8 KB": the text plus ~100 bytes of ICBM framing must stay below that.
HARD_MAX_IM_BYTES = 8000
MIN_IM_BYTES = 64  # the smallest advertised IM size we accept (a reply part needs room)
# Events waiting for the consumer; past this the read loop stops reading the socket until the
# consumer catches up, so the server's TCP window (not our memory) holds what comes next.
EVENT_QUEUE_LIMIT = 1000
DEFAULT_BOS_PORT = 5190
CLOSE_FLUSH_TIMEOUT = 1.0
REMEMBERED_REQUESTS = 4096
# Error codes after 17/02 that may mean "this server only takes the other MD5 hash"
# (docs/oscar-protocol.md §4).
WEAK_HASH_RETRY_CODES = frozenset({0x0001, 0x0004, 0x0005})
UNROUTABLE_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
# A sign-off this soon after a SNAC took us over a rate limit is the server's rate disconnect.
RATE_DISCONNECT_WINDOW_MS = 5000


Sleep = Callable[[float], Awaitable[object]]

_NEW, _CONNECTING, _ONLINE, _ENDED = "new", "connecting", "online", "ended"


class _Link:
    """One TCP connection with FLAP framing; write() is the one path every frame goes out by."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str):
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.frames = FrameBuffer()
        self.pending: deque[Frame] = deque()
        self._sequence = SequenceCounter()
        self.last_write = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int, within: float) -> _Link:
        peer = f"{host}:{port}"
        try:
            async with asyncio.timeout(within):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError as e:
            raise ConnectError(f"connecting to {peer} timed out after {within:g} s") from e
        except OSError as e:
            raise ConnectError(f"cannot connect to {peer}: {e.strerror or e}") from e
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, peer)

    def write(self, frames: Iterable[tuple[int, bytes]]) -> None:
        # Sequence numbers are assigned and the bytes handed to the transport in one
        # synchronous step, so concurrent senders can never interleave or reorder them.
        data = b"".join(
            encode_frame(channel, self._sequence.next(), payload) for channel, payload in frames
        )
        self.writer.write(data)
        self.last_write = time.monotonic()

    async def read_frame(self, what: str, deadline: float, budget: float) -> Frame:
        """Sign-on phase only: the next frame before `deadline` (loop time), else ConnectError.

        One deadline per exchange, so frames we skip cannot stretch the wait beyond `budget`.
        """
        try:
            async with asyncio.timeout_at(deadline):
                while not self.pending:
                    self.frames.check()
                    data = await self.reader.read(READ_CHUNK)
                    if not data:
                        self.pending.extend(self.frames.feed_eof())
                        if not self.pending:
                            raise ConnectError(
                                f"{self.peer} closed the connection while we waited for {what}"
                            )
                        break
                    self.pending.extend(self.frames.feed(data))
        except TimeoutError as e:
            raise ConnectError(f"{self.peer} did not send {what} within {budget:g} s") from e
        except OSError as e:
            raise ConnectError(f"connection to {self.peer} failed: {e.strerror or e}") from e
        return self.pending.popleft()

    def close(self) -> None:
        self.writer.close()

    async def wait_closed(self, within: float) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(within):
                await self.writer.wait_closed()


@dataclass(frozen=True, slots=True)
class OutgoingIM:
    """One IM for send_ims(); the arguments of send_im(), with the cookie chosen up front."""

    recipient: str
    text: str
    cookie: bytes
    html: bool = False
    auto_response: bool = False
    request_ack: bool = False


class OscarClient:
    """One OSCAR session: connect() signs on, events() reports, send_*() talks, close() ends.

    An OscarClient is good for one session; after SessionEnded, make a new one to reconnect.
    """

    def __init__(
        self,
        screen_name: str,
        password: str,
        host: str,
        port: int = 5190,
        *,
        keepalive_interval: float = 30.0,
        read_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        throttle: bool | Literal["auto"] = True,
        client_name: str = "aimbot",
        profile: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        problem = screen_name_problem(screen_name)
        if problem is not None:
            raise ScreenNameError(f"screen name {printable(screen_name)} {problem}")
        if not password:
            raise ValueError(f"password for {screen_name} is empty")
        for name, value in (
            ("keepalive_interval", keepalive_interval),
            ("read_timeout", read_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value}")
        self._screen_name = screen_name
        self._password = Secret(password)
        self._host = host
        self._port = port
        self._keepalive_interval = keepalive_interval
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._throttle = throttle
        # "auto": pace only the classes the server turns out to enforce (oscar/throttle.py).
        self._learner = ThrottleLearner() if throttle == "auto" else None
        self._client_name = client_name
        self._profile = profile
        self._clock = clock
        self._sleep = sleep

        self._state = _NEW
        self._link: _Link | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._final: SessionEnded | None = None
        self._final_delivered = False
        self._ended = asyncio.Event()
        self._room = asyncio.Event()  # set whenever the consumer takes an event
        self._paused = asyncio.Event()  # set while the read loop waits for room
        self._send_lock = asyncio.Lock()
        self._next_request = secrets.randbelow(0x7FFFFFFE) + 1
        self._requests: OrderedDict[int, tuple[bytes | None, str]] = OrderedDict()
        self._rates: RateTable | None = None
        self._rate_reply: RateParamsReply | None = None
        self._icbm_params: IcbmParams | None = None
        self._max_message_bytes = FALLBACK_MAX_MESSAGE_BYTES
        self._limited_classes: set[int] = set()  # classes the server said we are limited on

    def __repr__(self) -> str:
        return f"<OscarClient {self._screen_name!r} {self._host}:{self._port} {self._state}>"

    # -- public state ------------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._state == _ONLINE

    @property
    def screen_name(self) -> str:
        return self._screen_name

    @property
    def queued_events(self) -> int:
        """Events read from the server and not yet taken by events() (at most 1000 + the end)."""
        return self._events.qsize()

    @property
    def profile(self) -> str | None:
        """The HTML profile this session sets at sign-on (02/04), if any."""
        return self._profile

    @property
    def ended(self) -> SessionEnded | None:
        """How the session ended, once it has (the same object events() yields last)."""
        return self._final

    async def wait_ended(self) -> SessionEnded:
        """Wait for the end of the session without consuming events()."""
        await self._ended.wait()
        assert self._final is not None
        return self._final

    @property
    def max_message_bytes(self) -> int:
        """The server's advertised IM size (04/05) within 64..8000, or 512 if it advertised none."""
        return self._max_message_bytes

    def _adopt_icbm_params(self, params: IcbmParams) -> None:
        """Take the server's ICBM parameters; an IM size outside 64..8000 is clamped, loudly.

        A size under 64 leaves no room to split a reply; one over 8000 makes IMs that no SNAC
        can carry. Either is a server bug, and trusting it would stop delivery.
        """
        self._icbm_params = params
        advertised = params.max_message_bytes
        if advertised == 0:
            self._max_message_bytes = FALLBACK_MAX_MESSAGE_BYTES
            return
        clamped = min(max(advertised, MIN_IM_BYTES), HARD_MAX_IM_BYTES)
        if clamped != advertised:
            log.warning(
                "server advertises a maximum IM size of %d bytes; using %d (the sane range is "
                "%d to %d)",
                advertised,
                clamped,
                MIN_IM_BYTES,
                HARD_MAX_IM_BYTES,
            )
        self._max_message_bytes = clamped

    @property
    def rate_classes(self) -> Mapping[int, RateClass]:
        return {} if self._rates is None else self._rates.classes

    def send_delay(self, family: int, subgroup: int) -> float:
        """Seconds until a SNAC of this kind can go out without leaving the clear zone."""
        if self._rates is None or not self._throttle:
            return 0.0
        meter = self._rates.meter_for(family, subgroup)
        if meter is None:
            return 0.0
        now = self._now_ms()
        return meter.wait_ms(now, self._throttle_target(meter, now)) / 1000

    def _throttle_target(self, meter: RateMeter, now_ms: int) -> int | None:
        """The level AIM_THROTTLE paces this class to (None: not paced)."""
        if self._learner is not None:
            return self._learner.target(meter, now_ms)
        return paced_target(meter.rate_class)

    def send_budget(
        self, family: int, subgroup: int, most: int, *, server_model: bool = False
    ) -> int:
        """How many SNACs of this kind can go out now, back to back, without pacing (at most
        `most`; 0 when even the first must wait): the size of the next send_ims() batch.

        By the throttle in force; with `server_model`, also by the server's own rate model
        whatever AIM_THROTTLE says (see rate_delay).
        """
        if most <= 0 or self._rates is None:
            return max(most, 0)
        meter = self._rates.meter_for(family, subgroup)
        if meter is None:
            return most
        now = self._now_ms()
        budget = most
        if self._throttle:
            budget = meter.burst(now, self._throttle_target(meter, now), budget)
        if server_model:
            budget = meter.burst(now, paced_target(meter.rate_class), budget)
        return budget

    def rate_delay(self, family: int, subgroup: int) -> float:
        """Seconds until a SNAC of this kind keeps the class clear by the server's own rate
        model, whatever AIM_THROTTLE says: the pace to keep once the server has shown that it
        drops what goes over its limit."""
        if self._rates is None:
            return 0.0
        return self._rates.delay_ms(family, subgroup, self._now_ms()) / 1000

    def rate_class_of(self, family: int, subgroup: int) -> int | None:
        """The rate class SNACs of this kind count against (None before the rate reply)."""
        return None if self._rates is None else self._rates.class_for(family, subgroup)

    def over_rate_limit(self, family: int, subgroup: int) -> bool:
        """Whether the last SNAC of this kind went out over the server's limit: the server said
        its class is limited (01/0A, not cleared since) or our copy of the server's rate model
        says that SNAC took it to "limited" or beyond. The server drops such a SNAC silently."""
        if self._rates is None:
            return False
        class_id = self._rates.class_for(family, subgroup)
        if class_id is None:
            return False
        if class_id in self._limited_classes:
            return True
        meter = self._rates.meter(class_id)
        return meter is not None and meter.status in (RateStatus.LIMITED, RateStatus.DISCONNECT)

    # -- connect -----------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Log in and sign on; returns once the server treats us as online."""
        if self._state != _NEW:
            raise OscarError("an OscarClient signs on once; create a new one to reconnect")
        self._state = _CONNECTING
        try:
            response = await self._login()
            await self._sign_on(response)
        except ProtocolError as e:
            error = ConnectError(
                f"{self._host}:{self._port} sent malformed data during sign-on: {e}"
            )
            self._fail_connect(error, DisconnectReason.PROTOCOL_ERROR)
            raise error from e
        except LoginError as e:
            self._fail_connect(e, DisconnectReason.SIGNED_OFF)
            raise
        except ConnectError as e:
            timed_out = isinstance(e.__cause__, TimeoutError)
            reason = DisconnectReason.TIMEOUT if timed_out else DisconnectReason.EOF
            self._fail_connect(e, reason)
            raise
        except BaseException as e:
            self._fail_connect(e, DisconnectReason.CLOSED)
            raise
        if self._final is not None:
            raise ConnectError(
                f"session with {self._host}:{self._port} closed during sign-on: "
                f"{self._final.detail}"
            )
        self._state = _ONLINE
        link = self._link
        assert link is not None
        self._read_task = asyncio.create_task(
            self._read_loop(link), name=f"oscar-read-{self._screen_name}"
        )
        log.info(
            "signed on as %s at %s (max IM %d bytes, %d rate classes)",
            self._screen_name,
            link.peer,
            self.max_message_bytes,
            len(self.rate_classes),
        )

    def _fail_connect(self, error: BaseException, reason: DisconnectReason) -> None:
        self._end(reason, f"sign-on failed: {error}")

    async def _login(self) -> BucpLoginResponse:
        response = await self._bucp_attempt(strong=True)
        if response.error_code in WEAK_HASH_RETRY_CODES:
            log.info(
                "server refused the strong MD5 hash for %s (code 0x%04x); trying the weak one",
                self._screen_name,
                response.error_code,
            )
            response = await self._bucp_attempt(strong=False)
        if response.error_code is not None:
            raise LoginError.from_code(response.error_code)
        return response

    async def _bucp_attempt(self, *, strong: bool) -> BucpLoginResponse:
        link = await _Link.open(self._host, self._port, self._connect_timeout)
        try:
            link.write(
                [
                    (Channel.SIGNON, FlapHello().encode()),
                    (Channel.DATA, self._snac(BucpChallengeRequest(self._screen_name))),
                ]
            )
            reply = await self._await_login_snac(link, "the login challenge")
            if isinstance(reply, BucpLoginResponse):
                if reply.error_code is None:
                    raise ConnectError(f"{link.peer} answered the challenge request oddly")
                raise LoginError.from_code(reply.error_code, at_challenge=True)
            request = BucpLoginRequest(
                screen_name=self._screen_name,
                password_hash=login_hash(reply.key, self._password.get(), strong=strong),
                strong_hash=strong,
                client_name=self._client_name,
                multi_conn=MULTI_CONN_ONE_SESSION,
            )
            link.write([(Channel.DATA, self._snac(request))])
            result = await self._await_login_snac(link, "the login result")
            if isinstance(result, BucpChallenge):
                raise ConnectError(f"{link.peer} sent a second challenge instead of a result")
            return result
        finally:
            link.close()
            await link.wait_closed(CLOSE_FLUSH_TIMEOUT)

    async def _await_login_snac(self, link: _Link, what: str) -> BucpChallenge | BucpLoginResponse:
        deadline = self._deadline()
        while True:
            frame = await link.read_frame(what, deadline, self._connect_timeout)
            if frame.channel == Channel.SIGNOFF:
                raise self._signoff_during_login(link, frame)
            if frame.channel != Channel.DATA:
                continue
            header, body = decode_snac(frame.payload)
            if header.family != FAMILY_BUCP:
                log.debug("ignoring %s during login", _snac_name(header))
                continue
            if header.subgroup == BucpChallenge.SUBGROUP:
                return BucpChallenge.decode(body)
            if header.subgroup == BucpLoginResponse.SUBGROUP:
                return BucpLoginResponse.decode(body)
            if header.subgroup == SUBGROUP_ERROR:
                error = SnacError.decode(body)
                raise ConnectError(
                    f"{link.peer} refused the login request: {describe_error(error.code)}"
                )

    def _signoff_during_login(self, link: _Link, frame: Frame) -> OscarError:
        # Channel-1 style servers put the 17/03 TLVs into a ch-4 frame (docs/oscar-protocol.md §4).
        try:
            response = BucpLoginResponse.decode(frame.payload)
        except ProtocolError:
            return ConnectError(f"{link.peer} signed us off during login")
        if response.error_code is not None:
            return LoginError.from_code(response.error_code)
        return ConnectError(f"{link.peer} signed us off during login")

    async def _sign_on(self, login: BucpLoginResponse) -> None:
        """Move bytes between the BOS socket and the sign-on state machine (session.py)."""
        assert login.bos_address is not None and login.cookie is not None
        host, port = parse_bos_address(login.bos_address, DEFAULT_BOS_PORT)
        if host in UNROUTABLE_HOSTS:
            host = self._host  # a server bound to all interfaces advertises 0.0.0.0
        link = await _Link.open(host, port, self._connect_timeout)
        self._link = link
        machine = SignOn(login.cookie, self._allocate_request_id, profile=self._profile)
        self._write_out(machine.start())
        deadline = self._deadline()
        while not machine.done:
            frame = await link.read_frame(machine.awaiting, deadline, self._connect_timeout)
            result = machine.receive(frame)
            if machine.rate_reply is not None and self._rates is None:
                rates = machine.rate_reply
                self._rates = RateTable(rates.classes, rates.groups, self._now_ms())
            if machine.icbm_params is not None and self._icbm_params is None:
                self._adopt_icbm_params(machine.icbm_params)
            if result.unhandled is not None:
                ended = self._handle_frame(result.unhandled)
                if ended is not None:
                    raise ConnectError(
                        f"{link.peer} ended the session during sign-on: {ended.detail}"
                    )
            if result.send:
                self._write_out(result.send)
        if machine.signoff_payload is not None:
            ended = self._signoff_event(machine.signoff_payload)
            raise ConnectError(f"{link.peer} ended the session during sign-on: {ended.detail}")
        await self._drain(link)

    def _write_out(self, out: Sequence[Outgoing]) -> None:
        """One write for the frames of one sign-on step; SNACs count against their rate class."""
        link = self._link
        assert link is not None
        link.write([(o.channel, o.payload) for o in out])
        if self._rates is not None:
            now = self._now_ms()
            for o in out:
                if o.snac is not None:
                    self._rates.record(o.snac[0], o.snac[1], now)

    # -- events ------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Events in arrival order; SessionEnded is the last one, then the iterator stops."""
        while not (self._final_delivered and self._events.empty()):
            event = await self._events.get()
            self._room.set()
            if isinstance(event, SessionEnded):
                self._final_delivered = True
                yield event
                return
            yield event

    def _emit(self, event: Event) -> None:
        # Unbounded by design: the read loop waits for room (_wait_for_room) before it handles
        # a frame, and SessionEnded must always fit.
        self._events.put_nowait(event)

    async def _wait_for_room(self) -> None:
        """Backpressure: hold the read loop while the consumer has EVENT_QUEUE_LIMIT unread."""
        if self._events.qsize() < EVENT_QUEUE_LIMIT or self._final is not None:
            return
        log.info(
            "%d events of %s wait for the consumer; reading from the server pauses until it "
            "catches up",
            self._events.qsize(),
            self._screen_name,
        )
        self._paused.set()
        try:
            while self._events.qsize() >= EVENT_QUEUE_LIMIT and self._final is None:
                self._room.clear()
                await self._room.wait()
        finally:
            self._paused.clear()

    async def wait_paused(self) -> None:
        """Wait until the read loop is held back by unread events (backpressure is on)."""
        await self._paused.wait()

    def _end(self, reason: DisconnectReason, detail: str) -> None:
        """Finish the session once: close the socket and queue SessionEnded as the last event."""
        if self._final is not None:
            return
        self._state = _ENDED
        self._final = SessionEnded(reason, detail)
        level = logging.INFO if reason is DisconnectReason.CLOSED else logging.WARNING
        log.log(level, "session of %s ended (%s): %s", self._screen_name, reason.value, detail)
        self._ended.set()
        self._room.set()  # a read loop held back by backpressure sees the end at once
        if self._link is not None:
            self._link.close()
        self._emit(self._final)

    # -- read loop ---------------------------------------------------------------------------------

    async def _read_loop(self, link: _Link) -> None:
        try:
            await self._pump(link)
        except ProtocolError as e:
            self._end(DisconnectReason.PROTOCOL_ERROR, f"malformed data from the server: {e}")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("OSCAR read loop of %s crashed", self._screen_name)
            self._end(DisconnectReason.PROTOCOL_ERROR, f"internal error in the read loop: {e!r}")

    async def _handle_pending(self, link: _Link) -> bool:
        """Handle the frames read so far, one at a time as the consumer makes room; True once
        the session has ended."""
        while link.pending:
            await self._wait_for_room()
            if self._final is not None:
                return True
            ended = self._handle_frame(link.pending.popleft())
            if ended is not None:
                self._end(ended.reason, ended.detail)
                return True
        return self._final is not None

    async def _pump(self, link: _Link) -> None:
        while True:
            if await self._handle_pending(link):
                return
            link.frames.check()  # bad bytes after the frames just handled end the session now
            data = await self._read_or_probe(link)
            if data is None:
                return
            if not data:
                link.pending.extend(link.frames.feed_eof())
                if await self._handle_pending(link):
                    return
                over = self._over_rate_limit()
                if over is not None:
                    self._end(
                        DisconnectReason.RATE_LIMITED,
                        f"the server closed the connection right after we went over its rate "
                        f"limit (class {over})",
                    )
                else:
                    self._end(DisconnectReason.EOF, "the server closed the connection")
                return
            skipped = link.frames.skipped_bytes
            link.pending.extend(link.frames.feed(data))
            if link.frames.skipped_bytes != skipped:
                log.warning(
                    "skipped %d bytes of malformed data from the server; reading on at the "
                    "next valid frame",
                    link.frames.skipped_bytes - skipped,
                )
            if time.monotonic() - link.last_write >= self._keepalive_interval:
                link.write([(Channel.KEEPALIVE, b"")])

    async def _read_or_probe(self, link: _Link) -> bytes | None:
        """Bytes from the server, b"" at EOF, None once the session has been ended here.

        Servers may stay silent for hours (RAS sends no keep-alives), so silence alone proves
        nothing: after keepalive_interval of it we send a keep-alive plus a request the server
        must answer, and only if nothing at all arrives within read_timeout is the link dead.
        """
        try:
            async with asyncio.timeout(self._keepalive_interval):
                return await link.reader.read(READ_CHUNK)
        except TimeoutError:
            pass
        except OSError as e:
            self._end(DisconnectReason.EOF, f"connection lost: {e.strerror or e}")
            return None
        link.write([(Channel.KEEPALIVE, b"")])
        self._write_snacs([(SelfInfoRequest(), self._allocate_request_id())])
        try:
            async with asyncio.timeout(self._read_timeout):
                return await link.reader.read(READ_CHUNK)
        except TimeoutError:
            silent = self._keepalive_interval + self._read_timeout
            self._end(
                DisconnectReason.TIMEOUT,
                f"no data from the server for {silent:g} s; the keep-alive probe went unanswered",
            )
        except OSError as e:
            self._end(DisconnectReason.EOF, f"connection lost: {e.strerror or e}")
        return None

    def _handle_frame(self, frame: Frame) -> SessionEnded | None:
        """Dispatch one frame; returns the SessionEnded it implies, if it ends the session."""
        if frame.channel == Channel.DATA:
            # The frame stream is still in sync, so one bad SNAC costs only itself.
            try:
                header, body = decode_snac(frame.payload)
            except ProtocolError as e:
                log.warning("ignoring a malformed SNAC from the server: %s", e)
                return None
            try:
                self._handle_snac(header, body)
            except ProtocolError as e:
                log.warning("ignoring malformed %s from the server: %s", _snac_name(header), e)
            return None
        if frame.channel == Channel.SIGNOFF:
            return self._signoff_event(frame.payload)
        if frame.channel == Channel.ERROR:
            log.warning("server sent a FLAP error frame (%d bytes)", len(frame.payload))
        elif frame.channel not in (Channel.KEEPALIVE, Channel.SIGNON):
            log.debug("ignoring a frame on unknown channel %d", frame.channel)
        return None

    def _signoff_event(self, payload: bytes) -> SessionEnded:
        over = self._over_rate_limit()
        if over is not None:
            # Open OSCAR Server signs a session off past the disconnect level with the very
            # code it uses for "signed on elsewhere" (0x0001); our own rate bookkeeping is what
            # tells the two apart.
            return SessionEnded(
                DisconnectReason.RATE_LIMITED,
                f"the server signed us off right after we went over its rate limit "
                f"(class {over}); this is a rate-limit disconnect, not another login",
            )
        try:
            signoff = SignOff.decode(payload)
        except ProtocolError as e:
            return SessionEnded(DisconnectReason.SIGNED_OFF, f"the server signed us off ({e})")
        if signoff.signed_on_elsewhere:
            return SessionEnded(
                DisconnectReason.SIGNED_ON_ELSEWHERE,
                "the server signed us off: this screen name signed on from another location",
            )
        if signoff.error_code is not None:
            return SessionEnded(
                DisconnectReason.SIGNED_OFF,
                f"the server signed us off (code 0x{signoff.error_code:04x})",
            )
        return SessionEnded(DisconnectReason.SIGNED_OFF, "the server signed us off")

    def _over_rate_limit(self) -> int | None:
        """The rate class we were over the limit of just now, by the server's word or ours."""
        if self._limited_classes:
            return min(self._limited_classes)
        if self._rates is None:
            return None
        return self._rates.over_limit_since(self._now_ms() - RATE_DISCONNECT_WINDOW_MS)

    def _handle_snac(self, header: SnacHeader, body: bytes) -> None:
        key = (header.family, header.subgroup)
        if key == (IcbmIncomingIM.FAMILY, IcbmIncomingIM.SUBGROUP):
            self._on_incoming_im(IcbmIncomingIM.decode(body))
        elif key == (IcbmTyping.FAMILY, IcbmTyping.SUBGROUP):
            self._on_typing(IcbmTyping.decode(body))
        elif key == (IcbmError.FAMILY, IcbmError.SUBGROUP):
            self._on_icbm_error(header.request_id, IcbmError.decode(body))
        elif key == (IcbmHostAck.FAMILY, IcbmHostAck.SUBGROUP):
            ack = IcbmHostAck.decode(body)
            self._requests.pop(header.request_id, None)
            self._emit(HostAck(ack.cookie, ack.screen_name))
        elif key == (RateParamsChange.FAMILY, RateParamsChange.SUBGROUP):
            self._on_rate_change(RateParamsChange.decode(body))
        elif key == (RateParamsReply.FAMILY, RateParamsReply.SUBGROUP):
            self._rate_reply = RateParamsReply.decode(body)
            if self._rates is not None:
                reply = self._rate_reply
                self._rates = RateTable(reply.classes, reply.groups, self._now_ms())
        elif key == (IcbmParamsReply.FAMILY, IcbmParamsReply.SUBGROUP):
            self._adopt_icbm_params(IcbmParamsReply.decode(body))
        elif header.subgroup == SUBGROUP_ERROR:
            self._on_other_error(header, SnacError.decode(body))
        else:
            log.debug("ignoring %s", _snac_name(header))

    def _on_incoming_im(self, snac: IcbmIncomingIM) -> None:
        result = incoming_im(snac)
        if isinstance(result, DroppedIM):
            level = logging.INFO if result.routine else logging.WARNING
            log.log(level, "dropping an IM from %s: %s", printable(result.sender), result.reason)
            return
        self._emit(result)

    def _on_typing(self, snac: IcbmTyping) -> None:
        sender = snac.screen_name
        try:
            state = TypingState(snac.event)
        except ValueError:
            log.debug("ignoring typing event %d from %s", snac.event, printable(sender))
            return
        problem = screen_name_problem(sender)
        if problem is not None:
            log.debug("ignoring a typing notification from %s: %s", printable(sender), problem)
            return
        self._emit(TypingNotification(sender, state))

    def _on_icbm_error(self, request_id: int, error: IcbmError) -> None:
        cookie, recipient = self._requests.pop(request_id, (None, None))
        self._emit(IMError(error.code, cookie, recipient))

    def _on_rate_change(self, notice: RateParamsChange) -> None:
        class_id = notice.rate_class.class_id
        if notice.code == RATE_CODE_LIMITED:
            self._limited_classes.add(class_id)
        elif notice.code == RATE_CODE_CLEARED:
            self._limited_classes.discard(class_id)
        if self._rates is not None:
            self._rates.adopt(notice.rate_class, self._now_ms())
        if self._learner is not None:
            self._learner.notice(notice.rate_class.class_id, notice.code)
        self._emit(RateChange(notice.code, notice.rate_class.class_id))

    def _on_other_error(self, header: SnacHeader, error: SnacError) -> None:
        log.warning(
            "server error for request %d (family 0x%04x): %s",
            header.request_id,
            header.family,
            describe_error(error.code),
        )

    # -- sending -----------------------------------------------------------------------------------

    async def send_im(
        self,
        recipient: str,
        text: str,
        *,
        html: bool = False,
        auto_response: bool = False,
        request_ack: bool = False,
        cookie: bytes | None = None,
    ) -> bytes:
        """Send one IM and return its cookie (HostAck/IMError events carry it back).

        Pass `cookie` (8 bytes) to know it before the send: the server's ack can arrive before
        this coroutine returns.

        html=False escapes the text and turns newlines into <br>; html=True sends it as given.
        Raises only OscarError: ScreenNameError for a recipient nobody can be sent to,
        CookieError, MessageTooLong above 8000 encoded bytes, NotConnected without a session.
        """
        im = OutgoingIM(
            recipient,
            text,
            new_cookie() if cookie is None else cookie,
            html=html,
            auto_response=auto_response,
            request_ack=request_ack,
        )
        snac = _encode_im(im)
        await self._send_guarded(
            [(snac, (im.cookie, recipient))], f"sending an IM to {printable(recipient)}"
        )
        return im.cookie

    async def send_ims(self, ims: Sequence[OutgoingIM]) -> list[OscarError | None]:
        """Send several IMs in one write: one system call and one drain for all of them.

        Each IM is checked and encoded on its own. One that cannot be sent (a recipient nobody
        can be sent to, a bad cookie, a text too long) gets its error at its place in the
        result, and the others still go; None means written. Only a fault of the session
        raises (NotConnected), for all of them. Pacing waits before the first IM only: size the
        batch with send_budget().
        """
        results, batch = self._encode_ims(ims)
        if batch:
            await self._send_guarded(batch, f"sending {len(batch)} IMs")
        return results

    @staticmethod
    def _encode_ims(
        ims: Sequence[OutgoingIM],
    ) -> tuple[list[OscarError | None], list[tuple[SnacBody, tuple[bytes | None, str]]]]:
        """Each IM's error (None if it encoded) in order, and the SNACs of those that did."""
        results: list[OscarError | None] = []
        batch: list[tuple[SnacBody, tuple[bytes | None, str]]] = []
        for im in ims:
            try:
                batch.append((_encode_im(im), (im.cookie, im.recipient)))
            except OscarError as e:
                results.append(e)
            else:
                results.append(None)
        return results, batch

    async def _send_guarded(
        self, snacs: Sequence[tuple[SnacBody, tuple[bytes | None, str]]], doing: str
    ) -> None:
        """_send, raising only OscarError."""
        try:
            await self._send(snacs)
        except OscarError:
            raise
        except Exception as e:
            raise _unforeseen(e, doing) from e

    async def send_typing(self, recipient: str, state: TypingState) -> None:
        """Send a typing notification; raises only OscarError (as send_im)."""
        try:
            _check_recipient(recipient)
            self._require_online()
            await self._send([(IcbmTyping(recipient, int(state)), (None, recipient))])
        except OscarError:
            raise
        except Exception as e:
            raise _unforeseen(e, f"sending a typing notification to {printable(recipient)}") from e

    def ready_to_send(self, family: int, subgroup: int) -> bool:
        """Whether send_ims_now() may write a SNAC of this kind right now: online, no send in
        progress, no pacing delay due, and nothing of ours still waiting in the socket's buffer
        (which only an awaited send may wait out)."""
        link = self._link
        return (
            self._state == _ONLINE
            and link is not None
            and not self._send_lock.locked()
            and link.writer.transport.get_write_buffer_size() == 0
            and (not self._throttle or self.send_delay(family, subgroup) <= 0)
        )

    def send_ims_now(self, ims: Sequence[OutgoingIM]) -> list[OscarError | None]:
        """send_ims() without waiting: the write happens in this call, a loop turn sooner than
        a task woken to do it. It checks ready_to_send() itself, so a caller need not.

        Results as send_ims(); raises NotConnected when not ready (nothing is written then).
        """
        if not self.ready_to_send(IcbmSendIM.FAMILY, IcbmSendIM.SUBGROUP):
            raise NotConnected(f"{self._screen_name} cannot send without waiting now")
        results, batch = self._encode_ims(ims)
        if batch:
            try:
                self._write_numbered(batch)
            except Exception as e:
                raise _unforeseen(e, f"sending {len(batch)} IMs") from e
        return results

    async def _send(self, snacs: Sequence[tuple[SnacBody, tuple[bytes | None, str]]]) -> None:
        """Write SNACs (each with the cookie and recipient an error about it refers to) in one
        go; pacing waits before the first one only."""
        async with self._send_lock:
            if self._throttle:
                await self._wait_for_rate(snacs[0][0].FAMILY, snacs[0][0].SUBGROUP)
            self._require_online()
            link = self._link
            assert link is not None
            self._write_numbered(snacs)
            await self._drain(link)

    def _write_numbered(self, snacs: Sequence[tuple[SnacBody, tuple[bytes | None, str]]]) -> None:
        """Give each SNAC a request id, remembered with what an error about it refers to, and
        write them all in one go."""
        numbered = []
        for snac, about in snacs:
            request_id = self._allocate_request_id()
            self._requests[request_id] = about
            numbered.append((snac, request_id))
        while len(self._requests) > REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)
        self._write_snacs(numbered)

    async def _wait_for_rate(self, family: int, subgroup: int) -> None:
        delay = self.send_delay(family, subgroup)
        if delay <= 0:
            return
        log.debug(
            "pacing %04x/%04x by %.2f s to stay clear of the rate limit", family, subgroup, delay
        )
        sleeper = asyncio.ensure_future(self._sleep(delay))
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({sleeper, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, ended):
                task.cancel()
            await asyncio.gather(sleeper, ended, return_exceptions=True)

    def _write_snacs(self, snacs: Sequence[tuple[SnacBody, int]]) -> None:
        link = self._link
        assert link is not None
        link.write([(Channel.DATA, encode_snac_body(snac, rid)) for snac, rid in snacs])
        if self._rates is not None:
            now = self._now_ms()
            for snac, _ in snacs:
                class_id, status = self._rates.record(snac.FAMILY, snac.SUBGROUP, now)
                if self._learner is not None:
                    self._learner.sent(class_id, status, now)

    async def _drain(self, link: _Link) -> None:
        """Wait for the kernel to take our bytes; a server that stops reading ends the session."""
        try:
            async with asyncio.timeout(self._read_timeout):
                await link.writer.drain()
        except TimeoutError as e:
            detail = f"the server stopped accepting data for {self._read_timeout:g} s"
            self._end(DisconnectReason.WRITE_ERROR, detail)
            raise NotConnected(detail) from e
        except (OSError, RuntimeError) as e:
            detail = f"write to {link.peer} failed: {e}"
            over = self._over_rate_limit()
            if over is None:
                self._end(DisconnectReason.WRITE_ERROR, detail)
            else:
                # The server cut the connection while we wrote, right after we went over its
                # limit: its rate-limit disconnect, met on the write side first.
                self._end(
                    DisconnectReason.RATE_LIMITED,
                    f"{detail}, right after we went over the server's rate limit (class {over})",
                )
            raise NotConnected(detail) from e

    def _require_online(self) -> None:
        if self._state != _ONLINE:
            why = self._final.detail if self._final is not None else f"session is {self._state}"
            raise NotConnected(f"{self._screen_name} is not signed on ({why})")

    def _snac(self, body: SnacBody) -> bytes:
        return encode_snac_body(body, self._allocate_request_id())

    def _allocate_request_id(self) -> int:
        # Unique ids in 1..0x7FFFFFFF; servers use 0 and 0x80000000+ for their own SNACs
        # (docs/oscar-protocol.md §3).
        value = self._next_request
        self._next_request = value + 1 if value < 0x7FFFFFFF else 1
        return value

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._connect_timeout

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- close -------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Sign off (empty channel-4 frame) and close the socket; safe to call at any time."""
        link = self._link
        if self._state == _ONLINE and link is not None:
            with contextlib.suppress(Exception):
                link.write([(Channel.SIGNOFF, b"")])
                async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                    await link.writer.drain()
        self._end(DisconnectReason.CLOSED, "closed by us")
        task = self._read_task
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait(task)
        if link is not None:
            await link.wait_closed(CLOSE_FLUSH_TIMEOUT)


def new_cookie() -> bytes:
    """A fresh ICBM cookie (random, so cookies never repeat within a session)."""
    return secrets.token_bytes(8)


def _unforeseen(error: Exception, doing: str) -> SendError:
    # A bug, not a network fault: keep the traceback in the log, give the caller an OscarError
    # so that one reply is dropped instead of a session worker crashing.
    log.error("%s failed unexpectedly", doing, exc_info=error)
    return SendError(f"{doing} failed: {error!r}")


def _encode_im(im: OutgoingIM) -> IcbmSendIM:
    """The SNAC for one IM; raises only OscarError (see send_im)."""
    try:
        _check_recipient(im.recipient)
        if len(im.cookie) != 8:
            raise CookieError(f"an ICBM cookie is 8 bytes, got {len(im.cookie)}")
        charset, payload = encode_im_text(im.text if im.html else plain_to_html(im.text))
        if len(payload) > HARD_MAX_IM_BYTES:
            raise MessageTooLong(len(payload), HARD_MAX_IM_BYTES)
        return IcbmSendIM.text_message(
            im.cookie,
            im.recipient,
            charset,
            payload,
            want_ack=im.request_ack,
            auto_response=im.auto_response,
        )
    except OscarError:
        raise
    except Exception as e:
        raise _unforeseen(e, f"sending an IM to {printable(im.recipient)}") from e


def _check_recipient(recipient: str) -> None:
    problem = screen_name_problem(recipient)
    if problem is not None:
        raise ScreenNameError(f"cannot send to {printable(recipient)}: the screen name {problem}")


def _snac_name(header: SnacHeader) -> str:
    return f"SNAC {header.family:02x}/{header.subgroup:02x}"
