"""Open OSCAR Server (the real server in ../shared) as a test peer, plus the bot as a process.

The server is an unmodified build, started on loopback with free ports, auth on and multi-login
notices on, its SQLite database in the test's temp dir, configured through `-config FILE` with a
clean environment (variables already in the environment would win over the file). Accounts are
made through its management API. The bot is `python main.py` with its documented defaults,
changing only addresses, credentials, DATA_DIR and the health port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aimbot.devserver.dify_standin import AnswerContext, AnswerFn, DifyStandIn
from tests.helpers import e2e
from tests.helpers.aim_user import WAIT, AimUser
from tests.helpers.oos_server import oos_binary
from tests.helpers.ports import free_port, free_ports

HOST = "127.0.0.1"
START_DEADLINE = 20.0  # it listens after ~0.3 s when idle; the CI machine is shared
POLL = 0.05
PROBE_ADDRESS = "127.0.0.254"
LOG_TAIL = 6000


async def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float,  # noqa: ASYNC109
    *,
    detail: Callable[[], str] = lambda: "",
) -> float:
    """Poll `condition` (something outside this process: a log file, another server) until it
    holds; returns the seconds it took, fails with `what` (and `detail()`) at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s. {detail()}")
        await asyncio.sleep(POLL)
    return time.monotonic() - start


class OpenOscarServer:
    """One server process; kill() and start() again keep its ports and database (a restart)."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.api_port, toc_port, web_port = free_ports(4)
        self.log_path = workdir / "open_oscar_server.log"
        self.config_path = workdir / "oos.env"
        self.proc: subprocess.Popen[bytes] | None = None
        settings = {
            "OSCAR_LISTENERS": f"LOCAL://{HOST}:{self.port}",
            "OSCAR_ADVERTISED_LISTENERS_PLAIN": f"LOCAL://{HOST}:{self.port}",
            "OSCAR_ADVERTISED_LISTENERS_SSL": "",
            "KERBEROS_LISTENERS": "",
            "TOC_LISTENERS": f"{HOST}:{toc_port}",
            "API_LISTENER": f"{HOST}:{self.api_port}",
            "WEBAPI_LISTENERS": f"{HOST}:{web_port}",
            "DB_PATH": str(workdir / "oscar.sqlite"),
            "DISABLE_AUTH": "false",
            "DISABLE_MULTI_LOGIN_NOTIF": "false",
            "ICQ_LEGACY_ENABLED": "false",
            "LOG_LEVEL": "debug",
        }
        self.config_path.write_text("".join(f"export {k}={v}\n" for k, v in settings.items()))

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    async def start(self) -> None:
        """Start (or restart: same ports, same database) and wait until it listens."""
        self._spawn()
        await wait_until(
            self._ready, "Open OSCAR Server listening", START_DEADLINE, detail=self.tail
        )

    def _spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "-config", str(self.config_path)],
                cwd=str(self.workdir),
                env={},  # a clean environment: the config file must be the only source
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise AssertionError(f"Open OSCAR Server exited with {code}: {self.tail()}")
        with socket.socket() as probe:
            probe.settimeout(1)
            # From an address of its own: the server limits logins per source address.
            probe.bind((PROBE_ADDRESS, 0))
            if probe.connect_ex((HOST, self.port)) != 0:
                return False
        try:
            self._request("GET", "/version")
        except OSError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would; the database stays."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(START_DEADLINE)

    def tail(self, size: int = LOG_TAIL) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return f"Open OSCAR Server log ({self.log_path}), last {size} chars:\n{text[-size:]}"

    # -- management API (blocking urllib: loopback, tiny bodies) --------------------------------

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            payload = response.read()
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return payload.decode(errors="replace")

    def create_user(self, screen_name: str, password: str, *, is_bot: bool = False) -> None:
        self._request("POST", "/user", {"screen_name": screen_name, "password": password})
        if is_bot:
            name = urllib.parse.quote(screen_name)
            self._request("PATCH", f"/user/{name}/account", {"is_bot": True})

    def sessions(self, screen_name: str) -> int:
        """How many sessions the server holds for this screen name right now."""
        key = screen_name.replace(" ", "").lower()
        listing = self._request("GET", "/session")
        count = 0
        for entry in listing.get("sessions", []):
            name = str(entry.get("screen_name", entry.get("id", ""))).replace(" ", "").lower()
            if name == key:
                count += int(entry.get("instance_count", 1))
        return count

    def send_im(self, sender: str, recipient: str, text: str) -> None:
        self._request("POST", "/instant-message", {"from": sender, "to": recipient, "text": text})


class BotProcess(e2e.BotProcess):
    """The real bot, `python main.py`, in its own process with a clean environment: only the
    settings given (and PATH/HOME/LANG/TMPDIR) reach it, never the developer's AIM_* or DIFY_*."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        self.env = {**base, **env, "AIMBOT_NO_BOOTSTRAP": "1", "PYTHONUNBUFFERED": "1"}

    def output(self) -> str:
        try:
            return super().output()
        except OSError:
            return ""

    def tail(self, size: int = LOG_TAIL) -> str:
        return f"bot log ({self.log_path}), last {size} chars:\n{self.output()[-size:]}"

    def stop(self) -> None:
        """SIGTERM (a clean stop); SIGKILL if it does not end in time."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


_addresses = itertools.count()


def next_local_address() -> str:
    """A loopback source address of its own for each person (the server limits logins per IP)."""
    n = next(_addresses) % (250 * 250)
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


BOT = "InteropBot"
BOT_PASSWORD = "interop-bot-pw-1"
DIFY_KEY = "app-interop-secret-key-0123456789"
USER_PASSWORD = "user-pw-1234"


@dataclass
class Rig:
    """A real server, the Dify stand-in, bot processes and people, all torn down at the end."""

    server: OpenOscarServer
    dify: DifyStandIn
    workdir: Path
    bots: list[BotProcess] = field(default_factory=list)
    users: list[AimUser] = field(default_factory=list)

    def bot_environment(self, data_dir: Path, **extra: str) -> dict[str, str]:
        """The bot's documented defaults; only addresses, credentials and DATA_DIR are ours."""
        env = {
            "AIM_USERNAME": BOT,
            "AIM_PASSWORD": BOT_PASSWORD,
            "AIM_SERVER": HOST,
            "AIM_PORT": str(self.server.port),
            "DIFY_API_KEY": DIFY_KEY,
            "DIFY_API_URL": self.dify.url,
            "DATA_DIR": str(data_dir),
            "HEALTH_HOST": HOST,
            "HEALTH_PORT": str(free_port()),
        }
        env.update(extra)
        return env

    async def online_bot(self, **extra: str) -> BotProcess:
        """A bot process started and signed on (the server holds its one session)."""
        bot = self.start_bot(**extra)
        await self.bot_sessions(1)
        return bot

    def start_bot(self, **extra: str) -> BotProcess:
        n = len(self.bots) + 1
        bot = BotProcess(
            self.bot_environment(self.workdir / f"bot{n}-data", **extra),
            self.workdir / f"bot{n}.log",
        )
        bot.start()
        self.bots.append(bot)
        return bot

    async def bot_sessions(self, n: int, timeout: float = WAIT) -> float:  # noqa: ASYNC109
        """Until the server holds exactly `n` sessions of the bot's screen name."""
        return await wait_until(
            lambda: self.server.sessions(BOT) == n,
            f"the server holding {n} session(s) of {BOT}",
            timeout,
        )

    async def user(self, name: str) -> AimUser:
        self.server.create_user(name, USER_PASSWORD)
        who = AimUser(name, USER_PASSWORD, HOST, self.server.port, next_local_address())
        self.users.append(who)
        await who.sign_on()
        return who

    async def crowd(self, prefix: str, n: int) -> list[AimUser]:
        """`n` people signed on at once, each from a loopback address of their own."""
        return list(await asyncio.gather(*(self.user(f"{prefix}{i:02d}") for i in range(n))))

    def logs(self) -> str:
        return "\n".join([self.server.tail(), *(bot.tail() for bot in self.bots)])

    async def metric(self, bot: BotProcess, name: str) -> float | None:
        """A series of the bot's /metrics: `name{labels}` exactly, or a bare name summed over
        its labels (e.g. "aimbot_ims_given_up_total"); None when the bot exports no such one."""
        url = f"http://{HOST}:{bot.env['HEALTH_PORT']}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
        values = [
            float(value)
            for series, _, value in (line.rpartition(" ") for line in text.splitlines())
            if series == name or ("{" not in name and series.startswith(name + "{"))
        ]
        return sum(values) if values else None

    async def wait_metric(self, bot: BotProcess, name: str, value: float, what: str) -> None:
        """Poll the bot's /metrics until `name` reads `value`; fails with `what` after WAIT s."""
        deadline = time.monotonic() + WAIT
        while (seen := await self.metric(bot, name)) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {name} is {seen}, not {value}, after {WAIT:g} s")
            await asyncio.sleep(POLL)

    async def close(self) -> None:
        for bot in self.bots:
            bot.stop()
        for who in self.users:
            with contextlib.suppress(Exception):
                await who.sign_off()
        await self.dify.stop()
        self.server.kill()


def echo(ctx: AnswerContext) -> str:
    """The Dify stand-in's answer in these tests: the query, verbatim, and where it belongs."""
    return f"echo: {ctx.query} [turn {ctx.turn} of {ctx.conversation_id}]"


@contextlib.asynccontextmanager
async def interop_rig(
    workdir: Path, *, bot_is_exempt: bool = False, answer: AnswerFn = echo
) -> AsyncIterator[Rig]:
    """A fresh server (own database, own login limiter) with the bot's account, and Dify."""
    binary = oos_binary()
    assert binary is not None
    server = OpenOscarServer(binary, workdir / "oos")
    dify = DifyStandIn(api_key=DIFY_KEY, answer=answer)
    rig = Rig(server, dify, workdir)
    try:
        await server.start()
        server.create_user(BOT, BOT_PASSWORD, is_bot=bot_is_exempt)
        await dify.start()
        yield rig
    except BaseException:
        # Shown with the failure: what the server and each bot said.
        print(rig.logs())
        raise
    finally:
        await rig.close()


async def all_answered(people: list[AimUser], timeout: float) -> float:  # noqa: ASYNC109
    """Until each person has an IM from the bot; returns the seconds it took, or fails saying
    how many were answered by the deadline."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(who.replies(BOT, 1, timeout=timeout) for who in people))
    except (TimeoutError, AssertionError):
        answered = sum(1 for who in people if who.from_(BOT))
        raise AssertionError(f"{answered} of {len(people)} answered within {timeout:g} s") from None
    return time.monotonic() - start
