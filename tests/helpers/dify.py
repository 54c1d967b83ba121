"""Shared rigs for the Dify client and stand-in tests: real loopback HTTP, injected time.

Nothing here mocks our own code: the client talks HTTP to a real ``DifyStandIn`` (or to a real
TCP proxy / a closed port) on 127.0.0.1 with ephemeral ports; only the clock and the back-off
sleep are replaced, so that retry schedules and cool-downs are checked without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from aimbot.api.dify_client import DifyClient, DifyOptions
from aimbot.devserver.dify_standin import DifyStandIn

# A fresh, recognisable key per run: any appearance in logs or errors is a leak, not a fluke.
SECRET_KEY = f"app-SeCrEt{secrets.token_hex(12)}"
WAIT = 10.0  # generous upper bound for anything awaited in a test; never slept


@dataclass
class FakeTime:
    """A monotonic clock that only moves when the client "sleeps" (or a test advances it)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point, like the real sleep

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Client options for tests: production behaviour, but short real-time limits so that a test
# which does hit a timeout finishes quickly.
TEST_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
    "stream_deadline": 10.0,
    "retry_base": 1.0,
    "retry_cap": 8.0,
    "retry_max_attempts": 5,
    "retry_max_time": 120.0,
    "breaker_threshold": 5,
    "breaker_cooldown": 30.0,
}


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[dict[str, Any]]:
        """The data events of an SSE body, in order (pings left out)."""
        return [
            json.loads(line[len(b"data: ") :])
            for line in self.body.split(b"\n")
            if line.startswith(b"data: ")
        ]


@dataclass
class DifyRig:
    standin: DifyStandIn
    session: aiohttp.ClientSession
    time: FakeTime
    observed: list[tuple[str, float]] = field(default_factory=list)

    def client(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        rng: random.Random | None = None,
        **options: Any,
    ) -> DifyClient:
        merged = {**TEST_OPTIONS, **options}
        return DifyClient(
            self.session,
            api_key or self.standin.api_key,
            DifyOptions(base_url=base_url or self.standin.url, **merged),
            sleep=self.time.sleep,
            clock=self.time.clock,
            rng=rng or random.Random(1234),
            observer=lambda outcome, seconds: self.observed.append((outcome, seconds)),
        )

    async def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> RawReply:
        """One request as a plain HTTP client sends it (the right key unless headers say else)."""
        sent = {"Authorization": f"Bearer {self.standin.api_key}"}
        sent.update(headers or {})
        async with self.session.request(
            method,
            self.standin.url + path,
            json=body if data is None else None,
            data=data,
            headers=sent,
        ) as resp:
            return RawReply(resp.status, dict(resp.headers), await resp.read())


@contextlib.asynccontextmanager
async def dify_rig(**standin_options: Any) -> AsyncIterator[DifyRig]:
    """A started stand-in (secret key, fast pings) and one client session, both cleaned up."""
    standin_options.setdefault("api_key", SECRET_KEY)
    standin_options.setdefault("ping_interval", 0.05)
    async with DifyStandIn(**standin_options) as standin, aiohttp.ClientSession() as session:
        yield DifyRig(standin, session, FakeTime())


def guard_key_in_logs(caplog: pytest.LogCaptureFixture, key: str = SECRET_KEY) -> Iterator[None]:
    """Fixture body: capture every log record at DEBUG and fail if the key shows up anywhere."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    # At teardown caplog.records holds only teardown records; the test body ran in "call".
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    leaks = [
        record.name
        for record in records
        if key in formatter.format(record) or key in repr(record.args)
    ]
    assert not leaks, f"the API key appeared in log records of {sorted(set(leaks))}"


class FlakyProxy:
    """A TCP proxy on an ephemeral port that slams the door on the next N connections.

    A real connection failure (the server hangs up before answering) followed by recovery,
    without rebinding any port: everything after the dropped connections is piped through.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._drop = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.port = 0

    def drop_next(self, n: int) -> None:
        self._drop += n

    async def __aenter__(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._drop:
            self._drop -= 1
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            writer.close()
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound (port 0) but not listening: connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
