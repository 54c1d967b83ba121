"""Rig for the CLI tests: our commands as real subprocesses, against real loopback servers.

Every subprocess runs in its own temporary directory with a scrubbed environment, so neither the
developer's shell nor a `.env` in the checkout can change what a test sees. Output is read by
background tasks as it arrives; tests wait for the line they need with a timeout (never a sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from aimbot.config.settings import ENV_NAMES
from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IMError, IncomingIM, TypingNotification

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "main.py"
PYTHON = sys.executable
WAIT = 30.0  # upper bound for anything expected to happen; generous for a loaded 2-core box

BOT = "CliBot"
BOT_PASSWORD = "cli-bot-pw-5e3f9a"
USER = "CliUser"
USER_PASSWORD = "cli-user-pw-77c1"
DIFY_KEY = "app-cli-secret-key-4b1d8e2f"


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any aimbot setting, plus what every test subprocess needs."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ENV_NAMES and not name.startswith(("AIM_", "DIFY_"))
    }
    env.update(
        AIMBOT_NO_BOOTSTRAP="1",  # the test venv already has everything
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),  # `-m aimbot.chat` from a temporary working directory
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra)
    return env


def bot_env(oscar: OscarServer, dify: DifyStandIn, data_dir: Path, **extra: str) -> dict[str, str]:
    """A complete, valid configuration for the bot against the in-test servers."""
    settings = {
        "AIM_USERNAME": BOT,
        "AIM_PASSWORD": BOT_PASSWORD,
        "AIM_SERVER": "127.0.0.1",
        "AIM_PORT": str(oscar.port),
        "AIM_CONNECT_TIMEOUT": "5",
        "DIFY_API_KEY": DIFY_KEY,
        "DIFY_API_URL": dify.url,
        "DATA_DIR": str(data_dir),
        "HEALTH_PORT": "0",
        "BUFFER_WINDOW": "0",
        "BUFFER_MAX_WAIT": "0",
    }
    return clean_env(**{**settings, **extra})


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Process:
    """A running command whose stdout/stderr are collected line by line as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process, started: float) -> None:
        self.proc = proc
        self.started = started
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = asyncio.Condition()
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._collect(proc.stdout, self.stdout_lines)),
            asyncio.create_task(self._collect(proc.stderr, self.stderr_lines)),
        ]

    async def _collect(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            async with self._changed:
                into.append(line.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    async def wait_stdout(self, pattern: str, within: float = WAIT) -> re.Match[str]:
        """The first stdout line matching `pattern`; fails with everything printed so far."""
        return await self._wait_line(self.stdout_lines, pattern, within)

    async def wait_stderr(self, pattern: str, within: float = WAIT) -> re.Match[str]:
        return await self._wait_line(self.stderr_lines, pattern, within)

    async def _wait_line(self, lines: list[str], pattern: str, within: float) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in lines:
                if match := regex.search(line):
                    return match
            return None

        async def wait() -> re.Match[str]:
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None or self.exited)
            match = found()
            if match is None:
                raise AssertionError(
                    f"output ended ({self.proc.returncode}) before a line matched {pattern!r}:\n"
                    f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
                )
            return match

        try:
            async with asyncio.timeout(within):
                return await wait()
        except TimeoutError:
            raise AssertionError(
                f"no line matched {pattern!r} in {within} s:\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
            ) from None

    @property
    def exited(self) -> bool:
        return all(reader.done() for reader in self._readers)

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def write_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((text + "\n").encode())
        await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def finish(self, within: float = WAIT) -> Finished:
        """Wait for exit (killing the process if it overstays) and return what it printed."""
        try:
            async with asyncio.timeout(within):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            await asyncio.gather(*self._readers)
            raise AssertionError(
                f"process did not exit within {within} s:\nstdout:\n{self.stdout}\n"
                f"stderr:\n{self.stderr}"
            ) from None
        seconds = time.monotonic() - self.started
        async with asyncio.timeout(within):
            await asyncio.gather(*self._readers)
        return Finished(code, self.stdout, self.stderr, seconds)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def start(*args: str, env: Mapping[str, str], cwd: Path, stdin_pipe: bool = False) -> Process:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        *args,
        cwd=str(cwd),
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin_pipe else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Process(proc, time.monotonic())


@contextlib.asynccontextmanager
async def running(
    *args: str, env: Mapping[str, str], cwd: Path, stdin_pipe: bool = False
) -> AsyncIterator[Process]:
    """A process that is killed on the way out if the test did not finish it."""
    process = await start(*args, env=env, cwd=cwd, stdin_pipe=stdin_pipe)
    try:
        yield process
    finally:
        await process.kill()


async def run(*args: str, env: Mapping[str, str], cwd: Path, within: float = WAIT) -> Finished:
    async with running(*args, env=env, cwd=cwd) as process:
        return await process.finish(within)


def main_py(*args: str) -> tuple[str, ...]:
    return (str(MAIN), *args)


def chat(
    port: int, *args: str, peer: str = BOT, password: str | None = USER_PASSWORD
) -> tuple[str, ...]:
    """`python -m aimbot.chat` as USER against the in-test server."""
    argv = ["-m", "aimbot.chat", "--server", "127.0.0.1", "--port", str(port)]
    argv += ["--screen-name", USER, "--peer", peer]
    if password is not None:
        argv += ["--password", password]
    return (*argv, *args)


class AimUser:
    """A person at an AIM client inside the test: signs on, sends IMs, queues what arrives."""

    def __init__(self, name: str, password: str, port: int) -> None:
        self.name = name
        self.client = OscarClient(name, password, "127.0.0.1", port)
        self.received: asyncio.Queue[IncomingIM] = asyncio.Queue()
        self.typing: asyncio.Queue[TypingNotification] = asyncio.Queue()
        self.errors: asyncio.Queue[IMError] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def sign_on(self) -> AimUser:
        await self.client.connect()
        self._reader = asyncio.create_task(self._read(), name=f"user-{self.name}")
        return self

    async def _read(self) -> None:
        async for event in self.client.events():
            if isinstance(event, IncomingIM):
                self.received.put_nowait(event)
            elif isinstance(event, TypingNotification):
                self.typing.put_nowait(event)
            elif isinstance(event, IMError):
                self.errors.put_nowait(event)

    async def say(self, to: str, text: str, *, html: bool = False) -> None:
        await self.client.send_im(to, text, html=html)

    async def next_im(self, within: float = WAIT) -> IncomingIM:
        async with asyncio.timeout(within):
            return await self.received.get()

    async def sign_off(self) -> None:
        await self.client.close()
        if self._reader is not None:
            async with asyncio.timeout(WAIT):
                await asyncio.gather(self._reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def signed_on(name: str, password: str, port: int) -> AsyncIterator[AimUser]:
    user = await AimUser(name, password, port).sign_on()
    try:
        yield user
    finally:
        await user.sign_off()


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# -- fixtures (import them by name into the test module) -------------------------------------


@pytest.fixture(name="oscar")
async def oscar_fixture() -> AsyncIterator[OscarServer]:
    """Our OSCAR devserver with the bot (marked is_bot) and one user account."""
    server = OscarServer(host="127.0.0.1", port=0)
    server.add_account(BOT, BOT_PASSWORD, is_bot=True)
    server.add_account(USER, USER_PASSWORD)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(name="dify")
async def dify_fixture() -> AsyncIterator[DifyStandIn]:
    standin = DifyStandIn(api_key=DIFY_KEY, host="127.0.0.1", port=0, ping_interval=0.5)
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


@pytest.fixture(name="workdir")
def workdir_fixture(tmp_path: Path) -> Path:
    """An empty working directory: no stray .env, nothing written into the checkout."""
    path = tmp_path / "work"
    path.mkdir()
    return path
