"""The loopback rig: devserver OSCAR + Dify stand-in in this process, the bot in its own.

The bot runs as ``python main.py`` so that its RSS and CPU time (read from /proc) are its own and
not mixed with the load generator's. Every address is 127.0.0.1 and every port is ephemeral.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aimbot.bot.bot import BotOptions
from aimbot.devserver.dify_standin import AnswerFn, DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import HostAck, IMError, IncomingIM, SessionEnded, TypingState
from bench.cli import BenchError
from bench.procstat import ProcSample, sample

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BOT = "BenchBot"
START_TIMEOUT = 60.0  # a cold `python main.py` on a busy 2-core machine, with margin
STOP_TIMEOUT = 30.0

# The measured configuration for latency/throughput/memory: no batching window, no per-user
# rate limit, no typing notifications (they would add two IMs per reply), enough Dify slots.
FAST = {
    "BUFFER_WINDOW": "0",
    "BUFFER_MAX_WAIT": "0",
    "USER_RATE_LIMIT": "0",
    "TYPING_NOTIFICATIONS": "false",
    "DIFY_MAX_CONCURRENCY": "64",
}


def bot_config(args: argparse.Namespace) -> dict[str, str]:
    """FAST plus the run's --bot-env overrides (applied last, so they win)."""
    return {**FAST, **dict(getattr(args, "bot_env", []))}


def config_note(config: Mapping[str, str]) -> str:
    return "bot config: " + " ".join(f"{k}={v}" for k, v in config.items())


def bot_environment(
    *,
    oscar_port: int,
    dify_url: str,
    data_dir: Path,
    password: str,
    api_key: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        "AIM_USERNAME": BOT,
        "AIM_PASSWORD": password,
        "AIM_SERVER": "127.0.0.1",
        "AIM_PORT": str(oscar_port),
        "DIFY_API_KEY": api_key,
        "DIFY_API_URL": dify_url,
        "DATA_DIR": str(data_dir),
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE": "5",
    }
    env.update(overrides or {})
    return env


class BotProcess:
    """`python main.py` with a given environment; its output goes to a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, root: Path = ROOT) -> None:
        self._env = {**os.environ, **env, "AIMBOT_NO_BOOTSTRAP": "1", "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.root = root  # the checkout whose main.py runs (bench duel runs another one too)
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the bot process was never started")
        return self.proc.pid

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(self.root / "main.py"),
                cwd=str(self.root),
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.starts += 1

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def sample(self) -> ProcSample:
        return sample(self.pid)

    async def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; waits until it is gone."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(STOP_TIMEOUT):
            await self.proc.wait()

    async def terminate(self) -> int | None:
        """SIGTERM (clean shutdown); SIGKILL if it does not exit in time."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                log.warning("bot did not exit %g s after SIGTERM; killing it", STOP_TIMEOUT)
                await self.kill()
        return proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Loopback:
    oscar: OscarServer
    dify: DifyStandIn
    workdir: Path
    bot_password: str = field(repr=False)
    dify_key: str = field(repr=False)
    bot: BotProcess | None = None

    def bot_env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        return bot_environment(
            oscar_port=self.oscar.port,
            dify_url=self.dify.url,
            data_dir=self.workdir / "data",
            password=self.bot_password,
            api_key=self.dify_key,
            overrides=overrides,
        )

    async def start_bot(self, overrides: Mapping[str, str] | None = None) -> BotProcess:
        bot = BotProcess(self.bot_env(overrides), self.workdir / "bot.log")
        self.bot = bot
        await bot.start()
        await self.wait_bot_online(bot)
        return bot

    async def wait_bot_online(
        self,
        bot: BotProcess,
        timeout: float = START_TIMEOUT,  # noqa: ASYNC109
        name: str = BOT,
    ) -> None:
        online = asyncio.ensure_future(self.oscar.wait_online(name, timeout))
        assert bot.proc is not None
        exited = asyncio.ensure_future(bot.proc.wait())
        try:
            done, _ = await asyncio.wait({online, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            online.cancel()
            exited.cancel()
            await asyncio.gather(online, exited, return_exceptions=True)
        if online in done and not online.cancelled() and online.exception() is None:
            return
        if exited in done:
            raise BenchError(
                f"the bot exited with code {bot.returncode} before signing on:\n{bot.log_tail()}"
            )
        raise BenchError(f"the bot did not sign on within {timeout:g} s:\n{bot.log_tail()}")

    async def stop_bot(self) -> None:
        bot, self.bot = self.bot, None
        if bot is not None:
            code = await bot.terminate()
            if code not in (0, None, -signal.SIGKILL):
                log.warning("bot exited with code %s; log tail:\n%s", code, bot.log_tail())


PEERS = {"echo": "EchoPeer", "dify": "DifyPeer"}


def dify_concurrency(bot_env: Mapping[str, str]) -> int:
    """The bot's cap on concurrent Dify requests (DIFY_MAX_CONCURRENCY), which the bare bridge
    keeps to as well: with fewer requests in flight each costs more (bench/echo_peer.py)."""
    return int(bot_env.get("DIFY_MAX_CONCURRENCY", BotOptions.dify_max_concurrency))


@contextlib.asynccontextmanager
async def reference_peer(
    rig: Loopback, mode: str, bot_env: Mapping[str, str]
) -> AsyncIterator[tuple[str, int]]:
    """A reference peer (bench/echo_peer.py) signed on in its own process: (screen name, pid).

    "echo" sends every IM straight back; "dify" is the floor of any Dify bridge (one plain
    request to the stand-in per IM, at most the bot's DIFY_MAX_CONCURRENCY at once). Both run on
    the bot's EVENT_LOOP, so that the comparison is between what the programs do, not between
    runtimes or load shapes.
    """
    name = PEERS[mode]
    password = secrets.token_urlsafe(9)
    rig.oscar.add_account(name, password, is_bot=True)
    env = {
        **os.environ,
        "BENCH_OSCAR_PORT": str(rig.oscar.port),
        "BENCH_ECHO_NAME": name,
        "BENCH_ECHO_PASSWORD": password,
        "BENCH_PEER_MODE": mode,
        "BENCH_DIFY_URL": rig.dify.url,
        "BENCH_DIFY_KEY": rig.dify_key,
        "EVENT_LOOP": bot_env.get("EVENT_LOOP", "auto"),
        "BENCH_DIFY_CONCURRENCY": str(dify_concurrency(bot_env)),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.echo_peer", cwd=str(ROOT), env=env
    )
    try:
        await rig.oscar.wait_online(name, timeout=START_TIMEOUT)
        yield name, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()


@contextlib.asynccontextmanager
async def loopback(
    answer: AnswerFn | None = None,
    *,
    ping_interval: float = 10.0,
    enforce_rate_limits: bool = False,
    exempt_bot: bool = True,
) -> AsyncIterator[Loopback]:
    """Servers up on ephemeral loopback ports; everything stopped and removed afterwards.

    By default the devserver enforces no rate limits; `enforce_rate_limits` turns on Open OSCAR
    Server's classes, which bind the bot unless `exempt_bot` (its account's is_bot flag).
    """
    bot_password = secrets.token_urlsafe(12)
    dify_key = "app-" + secrets.token_urlsafe(16)
    oscar = OscarServer(enforce_rate_limits=enforce_rate_limits)
    oscar.add_account(BOT, bot_password, is_bot=exempt_bot)
    dify = DifyStandIn(
        api_key=dify_key, record_requests=False, answer=answer, ping_interval=ping_interval
    )
    with tempfile.TemporaryDirectory(prefix="aimbot-bench-") as tmp:
        await oscar.start()
        try:
            await dify.start()
            rig = Loopback(oscar, dify, Path(tmp), bot_password, dify_key)
            try:
                yield rig
            finally:
                await rig.stop_bot()
                await dify.stop()
        finally:
            await oscar.stop()


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # time.perf_counter() when the reader saw it
    im: IncomingIM


class Thinking:
    """A simulated user's pauses: a first one spread over the think period, then each pause
    between a reply and the next message varied from half to one and a half times the mean, so
    that many users never fire in lock-step bursts (which would measure queueing behind the
    burst instead). Seeded by the user's name: every run, and every way of taking turns, sees
    the same pauses. A mean of 0 never pauses (a saturating load)."""

    def __init__(self, seed: str, mean: float) -> None:
        self._rng = random.Random(seed)
        self._mean = mean

    async def start(self) -> None:
        if self._mean:
            await asyncio.sleep(self._rng.uniform(0, self._mean))

    async def pause(self) -> None:
        if self._mean:
            await asyncio.sleep(self._rng.uniform(0.5 * self._mean, 1.5 * self._mean))


class SimUser:
    """One simulated person: an OscarClient and a reader that timestamps what arrives."""

    def __init__(self, name: str, password: str, port: int) -> None:
        self.name = name
        self._password = password
        self._port = port
        self.client: OscarClient | None = None
        self.arrivals: asyncio.Queue[Arrival] = asyncio.Queue()
        self.errors: list[IMError] = []
        self.acks = 0
        self._acked = asyncio.Event()  # set at each HostAck (wait_acks)
        self.ended: SessionEnded | None = None
        self._reader: asyncio.Task[None] | None = None

    async def sign_on(self) -> None:
        client = OscarClient(self.name, self._password, "127.0.0.1", self._port, throttle=False)
        await client.connect()
        self.client = client
        self._reader = asyncio.create_task(self._read(client), name=f"sim-{self.name}")
        self._reader.add_done_callback(log_crash)

    async def _read(self, client: OscarClient) -> None:
        async for event in client.events():
            if isinstance(event, IncomingIM):
                self.arrivals.put_nowait(Arrival(time.perf_counter(), event))
            elif isinstance(event, HostAck):
                self.acks += 1
                self._acked.set()
            elif isinstance(event, IMError):
                self.errors.append(event)
            elif isinstance(event, SessionEnded):
                self.ended = event

    async def send(self, to: str, text: str) -> None:
        if self.client is None:
            raise BenchError(f"{self.name} is not signed on")
        await self.client.send_im(to, text)

    async def send_typing(self, to: str, state: TypingState) -> None:
        """What a real client sends as its user types: typing, paused with text, box cleared."""
        if self.client is None:
            raise BenchError(f"{self.name} is not signed on")
        await self.client.send_typing(to, state)

    async def wait_acks(self, count: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until the server has acknowledged `count` of this user's IMs (sent with request_ack):
        it has then handed them to their recipient's connection."""
        async with asyncio.timeout(timeout):
            while self.acks < count:
                self._acked.clear()
                await self._acked.wait()

    async def next_arrival(self, timeout: float) -> Arrival:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self.arrivals.get()
        except TimeoutError as e:
            why = f" (session ended: {self.ended.detail})" if self.ended else ""
            raise BenchError(f"{self.name} got no reply within {timeout:g} s{why}") from e

    async def ask(self, to: str, token: str, timeout: float) -> Arrival:  # noqa: ASYNC109
        """Send `token` and wait for the reply, which must name it (so replies never get mixed)."""
        await self.send(to, token)
        arrival = await self.next_arrival(timeout)
        if token not in arrival.im.text:
            raise BenchError(f"{self.name} expected a reply to {token}, got {arrival.im.text!r}")
        return arrival

    async def sign_off(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._reader


async def sign_on_all(
    oscar: OscarServer, names: list[str], *, concurrency: int = 50, exempt: bool = False
) -> list[SimUser]:
    """Accounts made and signed on, `concurrency` at a time (a sign-on storm is not the point).

    `exempt` users are not rate-limited by a devserver that enforces limits (is_bot accounts).
    """
    password = "pw-" + secrets.token_hex(4)
    users = []
    for name in names:
        oscar.add_account(name, password, is_bot=exempt)
        users.append(SimUser(name, password, oscar.port))
    slots = asyncio.Semaphore(concurrency)

    async def one(user: SimUser) -> None:
        async with slots:
            await user.sign_on()

    results = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await sign_off_all(users)
        raise BenchError(f"{len(failures)} of {len(users)} users could not sign on: {failures[0]}")
    return users


async def sign_off_all(users: list[SimUser]) -> None:
    await asyncio.gather(*(u.sign_off() for u in users), return_exceptions=True)


def log_crash(task: asyncio.Task[None]) -> None:
    """Done-callback for tasks nobody awaits at once: a crash is logged, never silent."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s crashed", task.get_name(), exc_info=exc)
