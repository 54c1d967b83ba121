"""``bench chaos``: steady load from many users while faults are injected at random.

Users chat in a closed loop (send, wait for the reply, think, repeat; after `GIVE_UP` seconds
without a reply they move on, leaving the message outstanding). Meanwhile a seeded schedule
kills and restarts the OSCAR server, stalls the bot's session, writes malformed frames to it,
logs in a duplicate of the bot, scripts 429 bursts, 5xx, hangs and mid-stream errors into the
Dify stand-in, and SIGKILLs the bot once (restarted at once, as a supervisor would). After the
load stops, a drain period waits for every outstanding reply. The ledger then says what was
sent, answered, lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from aimbot.bot import messages
from aimbot.devserver.dify_standin import AnswerContext, default_answer
from aimbot.oscar.client import OscarClient, new_cookie
from aimbot.oscar.errors import OscarError
from aimbot.oscar.events import HostAck, IMError, IncomingIM, SessionEnded
from aimbot.oscar.repeats import RepeatFilter
from aimbot.oscar.snacs import normalize_screen_name
from bench.cli import BenchError
from bench.faults import PlannedFault, plan_faults
from bench.ledger import (
    Ledger,
    Message,
    in_kill_window,
    reached_socket_at,
    token_for,
    tokens_in,
)
from bench.report import Figure, Report, Target, make_report
from bench.rig import BOT, BotProcess, Loopback, log_crash, loopback

log = logging.getLogger(__name__)

GIVE_UP = 30.0  # a user stops waiting and sends the next message (the old one stays counted)
RECONNECT_MAX = 1.0
INTRUDER_SECONDS = 1.0
TARGETS = (
    Target("lost", "==", 0),
    Target("duplicates", "==", 0),
    Target("crashes", "==", 0),
    Target("faults_injected", ">=", 20),
)
# Realistic retry behaviour scaled down so that recoveries fit in a two-minute run; the devserver
# does not rate-limit, and USER_RATE_LIMIT is off so that no message is skipped on purpose.
CHAOS_ENV = {
    "AIM_RECONNECT_BASE": "0.2",
    "AIM_RECONNECT_CAP": "2",
    "AIM_KEEPALIVE_INTERVAL": "5",
    "AIM_READ_TIMEOUT": "2",
    "AIM_CONNECT_TIMEOUT": "2",
    "DIFY_RETRY_BASE": "0.1",
    "DIFY_RETRY_CAP": "1",
    "DIFY_RETRY_MAX_ATTEMPTS": "4",
    "DIFY_RETRY_MAX_TIME": "15",
    "DIFY_READ_TIMEOUT": "11",
    "DIFY_STREAM_DEADLINE": "10",
    "DIFY_BREAKER_THRESHOLD": "5",
    "DIFY_BREAKER_COOLDOWN": "2",
    "DIFY_MAX_CONCURRENCY": "16",
    "BUFFER_WINDOW": "0.2",
    "BUFFER_MAX_WAIT": "1",
    "USER_RATE_LIMIT": "0",
    "SHUTDOWN_GRACE": "10",
}
KILL_WINDOW = 1.0  # the bot stores an accepted IM, or records an ack, within ms when it lives
NEAR_BEFORE, NEAR_AFTER = 5.0, 15.0  # seconds around a lost message worth naming faults in
CRASH_LINE = re.compile(r"crashed|Traceback \(most recent call last\)")


class ChaosUser:
    """A person who keeps chatting, and signs on again whenever the server drops them."""

    def __init__(
        self, index: int, password: str, port: int, ledger: Ledger, changed: asyncio.Event
    ) -> None:
        self.index = index
        self.name = f"chaos{index:03d}"
        self._password = password
        self._port = port
        self._ledger = ledger
        self._changed = changed  # shared: any reply anywhere (the drain waits on it)
        self._mine = asyncio.Event()  # this user's messages changed state
        self._cookies: dict[bytes, Message] = {}
        self._repeats = RepeatFilter()  # one per person, across their sessions, like a client
        self.client: OscarClient | None = None
        self._readers: set[asyncio.Task[None]] = set()  # one per session; all awaited at the end
        self.sign_ons = 0
        self._t0 = time.monotonic()  # the run's zero (loop.time() is time.monotonic())

    async def _connect(self, stop: asyncio.Event) -> OscarClient | None:
        delay = 0.2
        attempts = 0
        while not stop.is_set():
            client = OscarClient(
                self.name,
                self._password,
                "127.0.0.1",
                self._port,
                throttle=False,
                connect_timeout=2.0,
                read_timeout=2.0,
                keepalive_interval=5.0,
            )
            try:
                await client.connect()
            except (OscarError, OSError) as e:
                await client.close()
                attempts += 1
                pause = delay * random.uniform(0.5, 1.0)
                log.debug("%s: sign-on failed (%s); retrying in %.2f s", self.name, e, pause)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await stop.wait()
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            if attempts:
                log.debug("%s: signed on again after %d failed attempts", self.name, attempts)
            self.sign_ons += 1
            self.client = client
            reader = asyncio.create_task(self._read(client), name=f"read-{self.name}")
            reader.add_done_callback(log_crash)
            self._readers.add(reader)
            return client
        return None

    async def _read(self, client: OscarClient) -> None:
        bot_key = normalize_screen_name(BOT)
        async for event in client.events():
            if isinstance(event, IncomingIM):
                if normalize_screen_name(event.sender) == bot_key:
                    if self._repeats.is_repeat(event.sender, event.cookie):
                        # A reply sent again after its ack was lost: the client shows it once.
                        self._ledger.redelivered += 1
                        continue
                    self._ledger.reply(
                        self.name,
                        event.text,
                        self._now(),
                        restart_notice=event.text == messages.RESTARTED,
                    )
                    self._mine.set()
                    self._changed.set()
            elif isinstance(event, HostAck):
                message = self._cookies.pop(event.cookie, None)
                if message is not None:
                    message.acked = True
                    message.acked_at = self._now()
            elif isinstance(event, IMError):
                message = self._cookies.pop(event.cookie, None) if event.cookie else None
                if message is not None:
                    message.refused = event.code
                    self._mine.set()
            elif isinstance(event, SessionEnded):
                for message in self._cookies.values():
                    message.unconfirmed = True
                self._cookies.clear()
                self._mine.set()

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _settled(self, message: Message, replies_before: int) -> bool:
        """Nothing more to wait for: answered, refused, or some reply came (maybe a notice)."""
        return (
            bool(message.answers)
            or message.refused is not None
            or message.to_intruder
            or self._ledger.replies_to(self.name) > replies_before
        )

    async def run(
        self, load_stop: asyncio.Event, all_stop: asyncio.Event, think: float, t0: float
    ) -> None:
        self._t0 = t0
        seq = 0
        try:
            while not all_stop.is_set():
                client = self.client
                if client is None or not client.online:
                    client = await self._connect(all_stop)
                    if client is None:
                        break
                if load_stop.is_set():
                    # Keep the session up (and re-established) until the drain is over.
                    await _first(all_stop.wait(), client.wait_ended())
                    continue
                seq += 1
                message = self._ledger.new(self.name, token_for(self.index, seq), self._now())
                replies_before = self._ledger.replies_to(self.name)
                cookie = new_cookie()
                self._cookies[cookie] = message
                try:
                    await client.send_im(BOT, message.token, request_ack=True, cookie=cookie)
                except (OscarError, OSError):
                    self._cookies.pop(cookie, None)
                    message.unconfirmed = True
                    continue
                deadline = time.monotonic() + GIVE_UP
                while not self._settled(message, replies_before) and not load_stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._mine.clear()
                    await _first(self._mine.wait(), load_stop.wait(), timeout=remaining)
                if think:
                    await _first(load_stop.wait(), timeout=think * random.uniform(0.5, 1.5))
        finally:
            if self.client is not None:
                await self.client.close()
            await asyncio.gather(*self._readers, return_exceptions=True)


async def _first(*aws: Awaitable[object], timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Until the first of these awaitables finishes (or timeout); the rest are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Supervisor:
    """Keeps the bot process running, like systemd or Docker's restart policy would."""

    def __init__(self, rig: Loopback) -> None:
        self.rig = rig
        # INFO: the chaos load is light, and a lost message is explained by the session log.
        env = rig.bot_env({**CHAOS_ENV, "LOG_LEVEL": "INFO"})
        self.bot = BotProcess(env, rig.workdir / "bot.log")
        self.unexpected_exits: list[int | None] = []
        self.planned_kills = 0
        self._kill_requested = False
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bot.start()
        await self.rig.wait_bot_online(self.bot)
        self._watch = asyncio.create_task(self._watch_loop(), name="bot-supervisor")
        self._watch.add_done_callback(log_crash)

    async def _watch_loop(self) -> None:
        while True:
            proc = self.bot.proc
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            if self._kill_requested:
                self._kill_requested = False
                self.planned_kills += 1
            else:
                self.unexpected_exits.append(code)
                log.error("the bot exited on its own (code %s):\n%s", code, self.bot.log_tail())
            await self.bot.start()

    async def sigkill(self) -> None:
        self._kill_requested = True
        await self.bot.kill()

    async def stop(self) -> int | None:
        """SIGTERM, as an operator would; returns the exit code (0 = clean shutdown)."""
        self._stopping = True
        code = await self.bot.terminate()
        watch = self._watch
        if watch is not None:
            if watch.done() and not watch.cancelled() and watch.exception() is not None:
                raise BenchError(f"the bot supervisor failed: {watch.exception()!r}")
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        return code


@dataclass
class FaultOutcome:
    fault: PlannedFault
    started_at: float
    applied: bool
    detail: str = ""


class Injector:
    def __init__(self, rig: Loopback, supervisor: Supervisor, ledger: Ledger, seed: int) -> None:
        self.rig = rig
        self.supervisor = supervisor
        self.ledger = ledger
        self.rng = random.Random(seed ^ 0x5EED)

    async def inject(self, fault: PlannedFault) -> tuple[bool, str]:
        oscar, dify = self.rig.oscar, self.rig.dify
        kind, size = fault.kind, fault.size
        if kind == "oscar_restart":
            await oscar.stop(abrupt=True)
            await asyncio.sleep(size / 1000)
            await oscar.start()
            return True, f"down {size} ms"
        if kind in ("oscar_stall", "oscar_malformed") and not oscar.is_online(BOT):
            return False, "the bot had no session"
        if kind == "oscar_stall":
            oscar.stall(BOT)
            await asyncio.sleep(size / 1000)
            with contextlib.suppress(LookupError):
                oscar.stall(BOT, False)
            return True, f"{size} ms"
        if kind == "oscar_malformed":
            await oscar.send_malformed(BOT)
            return True, ""
        if kind == "dify_429_burst":
            dify.script_statuses(*([429] * size))
            return True, f"{size} x 429"
        if kind == "dify_5xx":
            statuses = self.rng.choices([500, 502, 503, 504], k=size)
            dify.script_statuses(*statuses)
            return True, "/".join(map(str, statuses))
        if kind == "dify_hang":
            dify.ping_only(size)
            return True, ""
        if kind == "dify_mid_stream":
            dify.fail_mid_stream(size)
            return True, f"{size} streams"
        if kind == "duplicate_login":
            return await self._duplicate_login()
        if kind == "bot_sigkill":
            await self.supervisor.sigkill()
            return True, ""
        raise BenchError(f"unknown fault kind {kind!r}")

    async def _duplicate_login(self) -> tuple[bool, str]:
        """Another client signs on as the bot (the server then signs the bot off), then leaves.

        Whatever reaches the intruder in its second online is marked, so those messages count
        as delivered to someone else, not as lost by the bot.
        """
        intruder = OscarClient(
            BOT, self.rig.bot_password, "127.0.0.1", self.rig.oscar.port, connect_timeout=2.0
        )
        try:
            await intruder.connect()
        except (OscarError, OSError) as e:
            await intruder.close()
            return False, f"intruder could not sign on: {e}"
        received = 0

        async def collect() -> None:
            nonlocal received
            async for event in intruder.events():
                if isinstance(event, IncomingIM):
                    for token in tokens_in(event.text):
                        message = self.ledger.messages.get(token)
                        if message is not None:
                            message.to_intruder = True
                            received += 1

        reader = asyncio.create_task(collect())
        await asyncio.sleep(INTRUDER_SECONDS)
        await intruder.close()
        await asyncio.gather(reader, return_exceptions=True)
        return True, f"intruder got {received} IMs"


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    duration = args.minutes * 60
    plan = plan_faults(seed, duration)
    ledger = Ledger()
    reached_dify: set[str] = set()

    def answer(ctx: AnswerContext) -> str:
        reached_dify.update(tokens_in(ctx.query))
        return default_answer(ctx)

    outcomes: list[FaultOutcome] = []
    async with loopback(answer=answer, ping_interval=1.0) as rig:
        supervisor = Supervisor(rig)
        await supervisor.start()
        password = "pw-" + secrets.token_hex(4)
        changed = asyncio.Event()
        users = []
        for i in range(args.users):
            user = ChaosUser(i, password, rig.oscar.port, ledger, changed)
            rig.oscar.add_account(user.name, password)
            users.append(user)
        load_stop, all_stop = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = [
            asyncio.create_task(u.run(load_stop, all_stop, args.think_ms / 1000, t0), name=u.name)
            for u in users
        ]
        try:
            injector = Injector(rig, supervisor, ledger, seed)
            for fault in plan:
                await asyncio.sleep(max(0.0, t0 + fault.at - loop.time()))
                started = loop.time() - t0
                applied, detail = await injector.inject(fault)
                outcomes.append(FaultOutcome(fault, started, applied, detail))
            await asyncio.sleep(max(0.0, t0 + duration - loop.time()))
            load_stop.set()
            drain_started = loop.time()
            drain_deadline = drain_started + args.drain_seconds
            while ledger.outstanding() and loop.time() < drain_deadline:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(1.0, drain_deadline - loop.time())):
                        await changed.wait()
            drain_s = loop.time() - drain_started
        finally:
            load_stop.set()
            all_stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            exit_code = await supervisor.stop()
        crashed_users = [r for r in results if isinstance(r, BaseException)]
        if crashed_users:
            raise BenchError(f"{len(crashed_users)} simulated users failed: {crashed_users[0]!r}")
        log_text = supervisor.bot.log_path.read_text(errors="replace")
        if args.bot_log is not None:
            args.bot_log.write_text(log_text)
    crash_lines = [line for line in log_text.splitlines() if CRASH_LINE.search(line)]
    crashes = len(supervisor.unexpected_exits) + len(crash_lines) + (exit_code not in (0, None))
    return _report(
        argv, args, seed, ledger, outcomes, reached_dify, crashes, drain_s, exit_code, crash_lines
    )


def _report(
    argv: Sequence[str],
    args: argparse.Namespace,
    seed: int,
    ledger: Ledger,
    outcomes: list[FaultOutcome],
    reached_dify: set[str],
    crashes: int,
    drain_s: float,
    exit_code: int | None,
    crash_lines: list[str],
) -> Report:
    totals = ledger.totals()
    applied = [o for o in outcomes if o.applied]
    lost = ledger.lost()
    stalls = [
        (o.started_at, o.started_at + o.fault.size / 1000)
        for o in applied
        if o.fault.kind == "oscar_stall"
    ]
    kills = [o.started_at for o in applied if o.fault.kind == "bot_sigkill"]
    lost_at_kill = [
        m
        for m in lost
        if m.acked_at is not None
        and in_kill_window(reached_socket_at(m.acked_at, stalls), kills, KILL_WINDOW)
    ]
    duplicates_at_kill = [
        d for d in ledger.duplicates if in_kill_window(d.first_at, kills, KILL_WINDOW)
    ]
    figures = [
        Figure("sent", totals.sent, "user messages that reached the bot"),
        Figure("answered", totals.answered, "of those, answered (answer or friendly error)"),
        Figure("friendly_errors", totals.friendly_errors, "friendly error replies"),
        Figure("lost", totals.lost, "sent but never answered"),
        Figure("duplicates", totals.duplicates, "same answer shown twice (distinct IMs)"),
        Figure(
            "redelivered",
            totals.redelivered,
            "resent replies a client drops (same cookie as one already shown)",
        ),
        Figure("crashes", crashes, "bot crashes (unplanned exits, crash logs)"),
        Figure("faults_injected", len(applied), "faults injected"),
        Figure("faults_skipped", len(outcomes) - len(applied), "faults skipped (no target)"),
        Figure(
            "restart_notices",
            totals.restart_notices,
            "of the friendly replies, asks to resend after the bot's SIGKILL",
        ),
        Figure(
            "resend_asked",
            totals.resend_asked,
            "of the answered, answered only by such an ask (lost at the SIGKILL, user told)",
        ),
        Figure("send_failed", totals.send_failed, "not sent: bot offline / server down"),
        Figure("to_intruder", totals.to_intruder, "delivered to the duplicate login"),
        Figure("reanswered", totals.reanswered, "messages answered by two different answers"),
        Figure("unattributed", totals.unattributed, "replies matching no waiting message"),
        Figure("lost_reached_dify", sum(m.token in reached_dify for m in lost), "lost after Dify"),
        Figure(
            "lost_in_kill_window",
            len(lost_at_kill),
            f"lost: reached the bot's socket within {KILL_WINDOW:g} s of its SIGKILL",
        ),
        Figure(
            "duplicates_in_kill_window",
            len(duplicates_at_kill),
            f"duplicates: first copy within {KILL_WINDOW:g} s of the SIGKILL",
        ),
        Figure("drain_s", drain_s, "drain after the load stopped", "s"),
        Figure("seed", seed, "fault schedule seed"),
    ]
    kinds = Counter(o.fault.kind for o in applied)
    notes = [
        f"{args.users} users for {args.minutes:g} min, think {args.think_ms:g} ms, give up "
        f"waiting after {GIVE_UP:g} s; drain up to {args.drain_seconds:g} s",
        "faults: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())),
        "bot config: "
        + " ".join(f"{k}={v}" for k, v in CHAOS_ENV.items())
        + "; devserver rate limits off; Dify stand-in pings every 1 s",
        f"bot exit code after SIGTERM at the end: {exit_code}",
    ]
    if args.bot_log is not None:
        notes.append(f"bot log (LOG_LEVEL=INFO) saved to {args.bot_log}")
    for line in crash_lines[:5]:
        notes.append(f"crash log line: {line.strip()[:200]}")
    # The unexplained losses first: those are the ones to look into.
    at_kill = {m.token for m in lost_at_kill}
    for message in sorted(lost, key=lambda m: (m.token in at_kill, m.sent_at))[:10]:
        near = [
            f"{o.fault.kind}{f' ({o.detail})' if o.detail else ''} at {o.started_at:.1f} s"
            for o in outcomes
            if o.applied and -NEAR_BEFORE <= o.started_at - message.sent_at <= NEAR_AFTER
        ]
        where = "after Dify answered" if message.token in reached_dify else "never reached Dify"
        if message.token in at_kill:
            where += ", at the SIGKILL"
        notes.append(
            f"lost {message.token} of {message.user} sent at {message.sent_at:.1f} s ({where}); "
            f"faults near it: {', '.join(near) or 'none'}"
        )
    for message in sorted(ledger.resend_asked(), key=lambda m: m.sent_at)[:10]:
        acked = "never acked" if message.acked_at is None else f"acked at {message.acked_at:.3f} s"
        reached = (
            ""
            if message.acked_at is None
            else f", in the socket at {reached_socket_at(message.acked_at, stalls):.3f} s"
        )
        notes.append(
            f"asked to resend {message.token} of {message.user}: sent at {message.sent_at:.3f} s, "
            f"{acked}{reached}; SIGKILL at {', '.join(f'{k:.3f} s' for k in kills) or '-'}"
        )
    for d in ledger.duplicates[:5]:
        notes.append(
            f"duplicate to {d.user} at {d.first_at:.1f} s and {d.again_at:.1f} s: "
            f"{', '.join(tokens_in(d.text))}"
        )
    for user, text in ledger.unattributed[:5]:
        notes.append(f"unattributed reply to {user}: {text[:120]!r}")
    return make_report("chaos", argv, figures, targets=TARGETS, notes=notes)
