"""A local OSCAR server for the demo, the tests and the benchmarks.

It follows Open OSCAR Server (OOS, formerly RAS) where a client can tell the difference, so that
a real AIM client (libpurple/Pidgin) signs on to it as to OOS: auth and BOS on one port, BUCP
MD5 with either hash; the BOS families OOS advertises, with locate (profile, away message, user
info), buddy (arrival and departure notices), PD rights and feedbag (the server-stored buddy
list, kept per account for the life of the process); channel-1 IMs relayed byte-exact, typing
relayed to active sessions, error 0x0004 for offline recipients; several sessions of one screen
name only when every login asked for them (TLV 0x004A = 0x01), else the new login wins, and a
notice IM from "OOS System Msg" when a second session joins; OOS's rate classes advertised to
every account and enforced on all but is_bot accounts: SNACs over the limited level dropped
silently, 01/0A notices (2 alert, 3 limited, 4 cleared) for subscribed classes, and past the
disconnect level the same sign-off as for a new login; the advertised max IM size (512) not
enforced. Unknown SNACs get error 0x0001 and the session goes on.

Deliberate differences from OOS:
- rate notices go out at once when a SNAC changes a class's status (OOS reports only what it
  sees at its once-a-second look); the recovery to "cleared" without further SNACs is found by
  the same once-a-second look as on OOS;
- `enforce_rate_limits=False` (no OOS equivalent: a server without limits for benchmarks and
  tests) advertises classes without thresholds, so that a pacing client does not slow down;
- feedbag edits are validated and bounded per account (OOS answers 0 to every item);
- only AIM's BOS services: 01/04 requests for other services get error 0x0005.

Fault hooks let tests drop, stall and confuse sessions and restart the listener on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aimbot.devserver.feedbag import FeedbagStore
from aimbot.devserver.oscar_connection import (
    MULTI_CONN_SEVERAL,
    SIGNOFF_URL,
    OscarConnection,
    departure_info,
)
from aimbot.devserver.system_notices import (
    MULTI_LOGIN_NOTICE,
    SERVER_REQUEST_ID,
    STATUS_INVISIBLE,
    system_message,
)
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS, RateClass, RateGroup
from aimbot.oscar.snacs import (
    ERR_NOT_LOGGED_ON,
    SIGNOFF_SIGNED_ON_ELSEWHERE,
    TLV_WANT_ACK,
    IcbmError,
    IcbmHostAck,
    IcbmIncomingIM,
    IcbmSendIM,
    IcbmTyping,
    SignOff,
    login_hash,
    normalize_screen_name,
)
from aimbot.oscar.snacs_services import BuddyArrived, BuddyDeparted, StatsReportInterval

log = logging.getLogger(__name__)

LOGIN_SUSPENDED = 0x0011
LOGIN_BAD_PASSWORD = 0x0005
STOP_TIMEOUT = 5.0


@dataclass
class Account:
    screen_name: str  # display form, as configured
    password: str = field(repr=False)
    is_bot: bool = False  # RAS's flag: exempt from rate limits
    suspended: bool = False


@dataclass
class OscarServerStats:
    """Counters per normalised screen name (the sender, for relays)."""

    logins: Counter[str] = field(default_factory=Counter)
    ims_relayed: Counter[str] = field(default_factory=Counter)
    typing_relayed: Counter[str] = field(default_factory=Counter)
    offline_errors: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    rate_disconnects: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _CookieGrant:
    account_key: str
    issued_at: float
    multi_conn: int  # login TLV 0x004A; 0 when absent (an "old client")


class OscarServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Mapping[str, str] | None = None,
        enforce_rate_limits: bool = True,
        max_message_bytes: int = 512,
        rate_classes: Sequence[RateClass] | None = None,
        rate_groups: Sequence[RateGroup] | None = None,
        accepted_hashes: frozenset[str] = frozenset({"strong", "weak"}),
        advertised_host: str | None = None,
        auth_timeout: float = 30.0,
        cookie_ttl: float = 60.0,
        max_frame_payload: int = 16 * 1024,
        max_outbound_bytes: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`accepted_hashes` ⊆ {"strong", "weak"} emulates servers that take only one
        (docs/oscar-protocol.md §4); `clock` drives the rate model, so tests can replay exact
        timings without sleeping."""
        unknown = set(accepted_hashes) - {"strong", "weak"}
        if unknown or not accepted_hashes:
            raise ValueError(
                f"accepted_hashes must be a non-empty subset of strong/weak: {unknown}"
            )
        self.host = host
        self.port = port
        self.enforce_rate_limits = enforce_rate_limits
        self.max_message_bytes = max_message_bytes
        self.rate_classes: tuple[RateClass, ...] = tuple(rate_classes or DEFAULT_RATE_CLASSES)
        self.rate_groups: tuple[RateGroup, ...] = tuple(
            rate_groups if rate_groups is not None else DEFAULT_RATE_GROUPS
        )
        self.accepted_hashes = frozenset(accepted_hashes)
        self.advertised_host = advertised_host
        self.auth_timeout = auth_timeout
        self.cookie_ttl = cookie_ttl
        self.max_frame_payload = max_frame_payload
        self.max_outbound_bytes = max_outbound_bytes
        self.stats = OscarServerStats()
        self._clock = clock
        self._accounts: dict[str, Account] = {}
        self._cookies: dict[bytes, _CookieGrant] = {}
        # BOS sessions by normalised name: several only when every login asked for several
        self._sessions: dict[str, list[OscarConnection]] = {}
        self.feedbags = FeedbagStore()
        self._connections: set[OscarConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self._refuse_code: int | None = None
        for screen_name, password in (accounts or {}).items():
            self.add_account(screen_name, password)

    def __repr__(self) -> str:
        state = "listening" if self._listener is not None else "stopped"
        return f"<OscarServer {self.host}:{self.port} {state}, {len(self._accounts)} accounts>"

    # -- accounts ----------------------------------------------------------------------------------

    def add_account(
        self, screen_name: str, password: str, *, is_bot: bool = False, suspended: bool = False
    ) -> None:
        if not normalize_screen_name(screen_name):
            raise ValueError("screen name is empty")
        if not password:
            raise ValueError(f"password for {screen_name} is empty")
        self._accounts[normalize_screen_name(screen_name)] = Account(
            screen_name, password, is_bot, suspended
        )

    def find_account(self, screen_name: str) -> Account | None:
        return self._accounts.get(normalize_screen_name(screen_name))

    def refuse_logins(self, code: int | None) -> None:
        """Fault hook: answer every password check with this BUCP error code (None = normal)."""
        self._refuse_code = code

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._listener is not None:
            return
        self._listener = await asyncio.start_server(
            self._on_connect, self.host, self.port, reuse_address=True
        )
        sockets = self._listener.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("OSCAR devserver listening on %s:%d", self.host, self.port)

    async def stop(self, *, abrupt: bool = False) -> None:
        """Stop listening and end every session (abrupt: no sign-off frames, like a crash)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in list(self._connections):
            if abrupt:
                conn.abort()
            else:
                conn.close_gracefully()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if listener is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await listener.wait_closed()
        self._cookies.clear()
        self._signal_change()
        if listener is not None:
            log.info("OSCAR devserver on %s:%d stopped", self.host, self.port)

    async def restart(self) -> None:
        """Stop and listen again on the SAME port (clients reconnect to the address they know)."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = OscarConnection(self, reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            if task is not None:
                self._tasks.discard(task)

    # -- state shared by connections ---------------------------------------------------------------

    @property
    def bos_address(self) -> str:
        host = self.advertised_host or self.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def check_login(self, account: Account, key: bytes, digest: bytes) -> int | None:
        """None if the hash matches a hash we accept, else the BUCP error code to send."""
        if self._refuse_code is not None:
            return self._refuse_code
        for kind in sorted(self.accepted_hashes):
            expected = login_hash(key, account.password, strong=kind == "strong")
            if hmac.compare_digest(expected, digest):
                return LOGIN_SUSPENDED if account.suspended else None
        return LOGIN_BAD_PASSWORD

    def issue_cookie(self, account: Account, *, multi_conn: int) -> bytes:
        now = time.monotonic()
        self._cookies = {
            c: g for c, g in self._cookies.items() if now - g.issued_at <= self.cookie_ttl
        }
        cookie = secrets.token_bytes(32)
        key = normalize_screen_name(account.screen_name)
        self._cookies[cookie] = _CookieGrant(key, now, multi_conn)
        self.stats.logins[key] += 1
        return cookie

    def redeem_cookie(self, cookie: bytes) -> tuple[Account, int] | None:
        """One use per cookie, within cookie_ttl of issue (RAS: 60 s, docs/oscar-protocol.md §4)."""
        grant = self._cookies.pop(cookie, None)
        if grant is None or time.monotonic() - grant.issued_at > self.cookie_ttl:
            return None
        account = self._accounts.get(grant.account_key)
        return None if account is None else (account, grant.multi_conn)

    def bos_signed_on(self, conn: OscarConnection) -> None:
        """A second login joins the first only if both asked for several sessions (TLV 0x004A
        = 0x01); otherwise the new login wins and the older sessions are signed off (OOS)."""
        key = conn.key
        assert key is not None
        others = [c for c in self._sessions.get(key, []) if c is not conn and not c.closing]
        joins = conn.multi_conn == MULTI_CONN_SEVERAL and all(
            c.multi_conn == MULTI_CONN_SEVERAL for c in others
        )
        if others and not joins:
            for old in others:
                old.kick(
                    SignOff(SIGNOFF_SIGNED_ON_ELSEWHERE, SIGNOFF_URL),
                    why="the same screen name signed on again",
                )
            others = []
        self._sessions[key] = [*others, conn]
        self._signal_change()

    def came_online(self, conn: OscarConnection) -> None:
        """01/02: tell watchers the user arrived and the user which buddies are on (OOS's
        BroadcastVisibility), then the stats interval, then the multi-login notice."""
        log.info("%s is online", conn.label)
        key = conn.key or ""
        info = conn.user_info()
        for watcher in self.feedbags.watchers_of(key):
            for target in self._online_sessions(watcher):
                target.send_snac(BuddyArrived(info), SERVER_REQUEST_ID)
        self.announce_buddies(conn, self.feedbags.get(key).buddies())
        conn.send_snac(StatsReportInterval(1), SERVER_REQUEST_ID)
        instances = self._online_sessions(key)
        if len(instances) > 1:
            account = conn.account
            assert account is not None
            text = MULTI_LOGIN_NOTICE.format(name=account.screen_name, count=len(instances))
            for other in instances:
                if other is not conn:
                    other.send_snac(system_message(text), SERVER_REQUEST_ID)
        self._signal_change()

    def announce_buddies(self, conn: OscarConnection, buddies: Iterable[str]) -> None:
        """03/0B to `conn` for each of these buddies that is online."""
        for buddy in sorted(buddies):
            present = self._online_sessions(buddy)
            if present:
                conn.send_snac(BuddyArrived(present[0].user_info()), SERVER_REQUEST_ID)

    def presence_changed(self, conn: OscarConnection) -> None:
        """Away, idle, status or capabilities changed: watchers get a fresh 03/0B, or a 03/0C
        when the user went invisible (OOS)."""
        if not conn.online:
            return
        notice: BuddyArrived = BuddyArrived(conn.user_info())
        if conn.status_bits & STATUS_INVISIBLE:
            notice = BuddyDeparted(departure_info(conn))
        for watcher in self.feedbags.watchers_of(conn.key or ""):
            for target in self._online_sessions(watcher):
                target.send_snac(notice, SERVER_REQUEST_ID)

    def user_info_of(self, screen_name: str) -> OscarConnection | None:
        """The session whose profile and away message 02/05 shows (the first signed on)."""
        present = self._online_sessions(normalize_screen_name(screen_name))
        return present[0] if present else None

    def connection_done(self, conn: OscarConnection) -> None:
        self._connections.discard(conn)
        key = conn.key
        instances = self._sessions.get(key or "", [])
        if key is not None and conn in instances:
            instances.remove(conn)
            if not instances:
                del self._sessions[key]
            log.info("%s is offline", conn.label)
            if conn.online and not self._online_sessions(key):
                departed = BuddyDeparted(departure_info(conn))
                for watcher in self.feedbags.watchers_of(key):
                    for target in self._online_sessions(watcher):
                        target.send_snac(departed, SERVER_REQUEST_ID)
        self._signal_change()

    def _signal_change(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _online_sessions(self, key: str) -> list[OscarConnection]:
        # A session whose socket is already gone is offline: relaying into it would lose the
        # IM while telling the sender it was delivered.
        return [c for c in self._sessions.get(key, []) if c.online and not c.closing]

    def _online_session(self, screen_name: str) -> OscarConnection | None:
        present = self._online_sessions(normalize_screen_name(screen_name))
        return present[0] if present else None

    def relay_im(self, sender: OscarConnection, snac: IcbmSendIM, request_id: int) -> None:
        sender_key = sender.key or ""
        targets = self._online_sessions(normalize_screen_name(snac.recipient))
        if not targets:
            self.stats.offline_errors[sender_key] += 1
            sender.send_snac(IcbmError(ERR_NOT_LOGGED_ON), request_id)
            return
        # All of the sender's TLVs go through untouched except the ack request
        # (docs/oscar-protocol.md §7); every session of the recipient gets the IM.
        incoming = IcbmIncomingIM(
            snac.cookie, snac.channel, sender.user_info(), snac.tlvs.without(TLV_WANT_ACK)
        )
        for target in targets:
            target.send_snac(incoming, SERVER_REQUEST_ID)
        self.stats.ims_relayed[sender_key] += 1
        if snac.want_ack:
            sender.send_snac(IcbmHostAck(snac.cookie, snac.channel, snac.recipient), request_id)

    def relay_typing(self, sender: OscarConnection, snac: IcbmTyping, request_id: int) -> None:
        """Relayed with the sender's name and request id; never an error
        (docs/oscar-protocol.md §8). Like OOS, only to the recipient's active sessions (not
        away, not idle)."""
        if sender.account is None:
            return
        targets = [
            c for c in self._online_sessions(normalize_screen_name(snac.screen_name)) if c.active
        ]
        if not targets:
            return
        relayed = IcbmTyping(sender.account.screen_name, snac.event, snac.channel, snac.cookie)
        for target in targets:
            target.send_snac(relayed, request_id)
        self.stats.typing_relayed[sender.key or ""] += 1

    # -- observability -----------------------------------------------------------------------------

    def is_online(self, screen_name: str) -> bool:
        return self._online_session(screen_name) is not None

    async def wait_online(self, screen_name: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self._wait_until(
            lambda: self.is_online(screen_name), f"{screen_name} online", timeout
        )

    async def wait_offline(self, screen_name: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        key = normalize_screen_name(screen_name)
        await self._wait_until(lambda: key not in self._sessions, f"{screen_name} offline", timeout)

    async def _wait_until(self, predicate: Callable[[], bool], what: str, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"devserver: {what} not reached within {within:g} s") from None

    # -- fault hooks -------------------------------------------------------------------------------

    def _session_or_fail(self, screen_name: str) -> OscarConnection:
        instances = self._sessions.get(normalize_screen_name(screen_name))
        if not instances:
            raise LookupError(f"devserver: no session for {screen_name!r}")
        return instances[-1]

    async def drop_session(self, screen_name: str) -> None:
        """Close the session's socket abruptly, without a sign-off frame."""
        conn = self._session_or_fail(screen_name)
        conn.abort()
        async with asyncio.timeout(STOP_TIMEOUT):
            await conn.done.wait()

    def stall(self, screen_name: str | None = None, stalled: bool = True) -> None:
        """Stop (or resume) reading from and writing to one session, or all current ones."""
        if screen_name is None:
            targets = list(self._connections)
        else:
            targets = [self._session_or_fail(screen_name)]
        for conn in targets:
            conn.stall(stalled)

    async def send_malformed(self, screen_name: str) -> None:
        """Write a frame with a bad start byte, which no client can parse past."""
        conn = self._session_or_fail(screen_name)
        conn.write_raw(b"\x00\x02\x00\x01\x00\x00")

    def send_raw(self, screen_name: str, data: bytes) -> None:
        """Write arbitrary bytes to a session (bypassing stall): for client robustness tests."""
        self._session_or_fail(screen_name).write_raw(data)

    def sign_off(
        self, screen_name: str, *, code: int | None = None, short_form: bool = False
    ) -> None:
        """Send a channel-4 sign-off (with TLV 0x0009 = code, or RAS's bare 4-byte form)."""
        conn = self._session_or_fail(screen_name)
        signoff = SignOff(code) if code is not None else None
        conn.kick(signoff, why="sign-off requested by a test hook", short=short_form)
