"""End-to-end rig: our OSCAR devserver, the Dify stand-in, the real Application, and people.

Everything is real and on loopback: the bot under test is the same Application that main.py runs,
configured through load_settings; people are OscarClients signed on to the same devserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aimbot.app import Application
from aimbot.config.settings import Settings, load_settings
from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IMError, IncomingIM, SessionEnded, TypingNotification, TypingState

ROOT = Path(__file__).resolve().parents[2]
BOT = "TestBot"
BOT_PASSWORD = "bot-secret-pw-1"
DIFY_KEY = "app-e2e-secret-key-0123456789"
WAIT = 20.0  # generous upper bound for any single expected event on a loaded 2-core machine


def bot_environment(
    oscar: OscarServer, dify: DifyStandIn, data_dir: Path, **extra: str
) -> dict[str, str]:
    env = {
        "AIM_USERNAME": BOT,
        "AIM_PASSWORD": BOT_PASSWORD,
        "AIM_SERVER": "127.0.0.1",
        "AIM_PORT": str(oscar.port),
        "AIM_RECONNECT_BASE": "0.1",
        "AIM_RECONNECT_CAP": "1",
        "AIM_KEEPALIVE_INTERVAL": "5",
        "AIM_READ_TIMEOUT": "2",
        "DIFY_API_KEY": DIFY_KEY,
        "DIFY_API_URL": dify.url,
        "DIFY_RETRY_BASE": "0.1",
        "DIFY_RETRY_CAP": "0.2",
        "DIFY_READ_TIMEOUT": "15",
        "DIFY_STREAM_DEADLINE": "15",
        "BUFFER_WINDOW": "0",
        "BUFFER_MAX_WAIT": "0",
        "DATA_DIR": str(data_dir),
        "HEALTH_PORT": "0",
        "SHUTDOWN_GRACE": "5",
        "LOG_LEVEL": "DEBUG",
    }
    env.update(extra)
    return env


def bot_settings(oscar: OscarServer, dify: DifyStandIn, data_dir: Path, **extra: str) -> Settings:
    return load_settings(bot_environment(oscar, dify, data_dir, **extra), env_file=None)


@dataclass
class Person:
    """A human at an AIM client: signs on, sends IMs, collects what arrives."""

    name: str
    password: str
    port: int
    received: asyncio.Queue[IncomingIM] = field(default_factory=asyncio.Queue)
    typing: list[TypingNotification] = field(default_factory=list)
    errors: list[IMError] = field(default_factory=list)
    all_received: list[IncomingIM] = field(default_factory=list)
    client: OscarClient | None = None
    _reader: asyncio.Task[None] | None = None
    _typing_changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def sign_on(self) -> None:
        self.client = OscarClient(self.name, self.password, "127.0.0.1", self.port)
        await self.client.connect()
        self._reader = asyncio.create_task(self._read(self.client))

    async def _read(self, client: OscarClient) -> None:
        async for event in client.events():
            if isinstance(event, IncomingIM):
                self.all_received.append(event)
                self.received.put_nowait(event)
            elif isinstance(event, TypingNotification):
                async with self._typing_changed:
                    self.typing.append(event)
                    self._typing_changed.notify_all()
            elif isinstance(event, IMError):
                self.errors.append(event)
            elif isinstance(event, SessionEnded):
                return

    async def say(self, text: str, *, to: str = BOT, auto_response: bool = False) -> None:
        assert self.client is not None
        await self.client.send_im(to, text, auto_response=auto_response)

    async def send_typing(self, state: TypingState, *, to: str = BOT) -> None:
        """What their client sends as they type (2), pause with text in the box (1), or clear it."""
        assert self.client is not None
        await self.client.send_typing(to, state)

    async def reply(self, timeout: float = WAIT) -> IncomingIM:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            return await self.received.get()

    async def replies(self, n: int, timeout: float = WAIT) -> list[IncomingIM]:  # noqa: ASYNC109
        return [await self.reply(timeout) for _ in range(n)]

    async def wait_typing(self, state: TypingState, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Until a typing notification with this state has arrived from the bot."""
        async with self._typing_changed:
            async with asyncio.timeout(timeout):
                await self._typing_changed.wait_for(
                    lambda: any(t.state is state for t in self.typing)
                )

    async def wait_typing_after(self, seen: int, state: TypingState, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Until a typing notification with this state arrives after the first `seen` ones."""
        async with self._typing_changed:
            async with asyncio.timeout(timeout):
                await self._typing_changed.wait_for(
                    lambda: any(t.state is state for t in self.typing[seen:])
                )

    async def sign_off(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.timeout(WAIT):
                    await self._reader


@dataclass
class Rig:
    oscar: OscarServer
    dify: DifyStandIn
    data_dir: Path
    app: Application | None = None
    people: list[Person] = field(default_factory=list)

    async def start_bot(self, **extra: str) -> Application:
        self.app = Application(bot_settings(self.oscar, self.dify, self.data_dir, **extra))
        await self.app.start()
        await self.app.handler.wait_online(WAIT)
        return self.app

    async def stop_bot(self) -> None:
        if self.app is not None:
            await self.app.shutdown()
            self.app = None

    async def person(self, name: str, password: str = "pw-person") -> Person:
        self.oscar.add_account(name, password)
        who = Person(name, password, self.oscar.port)
        await who.sign_on()
        self.people.append(who)
        return who

    async def quiescent(self, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """The bot has nothing pending: no user work, no unconfirmed replies."""
        assert self.app is not None
        await self.app.bot.wait_idle(timeout)
        assert await self.app.handler.flush(timeout), "replies still unconfirmed"


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, *, enforce_rate_limits: bool = False, **oscar_kwargs: object
) -> AsyncIterator[Rig]:
    oscar = OscarServer(enforce_rate_limits=enforce_rate_limits, **oscar_kwargs)  # type: ignore[arg-type]
    oscar.add_account(BOT, BOT_PASSWORD)
    dify = DifyStandIn(api_key=DIFY_KEY, ping_interval=0.5)
    await oscar.start()
    await dify.start()
    the_rig = Rig(oscar, dify, tmp_path / "data")
    try:
        yield the_rig
    finally:
        for who in the_rig.people:
            with contextlib.suppress(Exception):
                await who.sign_off()
        await the_rig.stop_bot()
        await dify.stop()
        await oscar.stop()


class BotProcess:
    """The bot as its own OS process (`python main.py`), for kill -9 and SIGTERM scenarios."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env, "AIMBOT_NO_BOOTSTRAP": "1", "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py")],
            cwd=str(ROOT),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WAIT)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(WAIT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
