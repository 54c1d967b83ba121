"""A session is either fully alive or ended: flapping servers are backed off, bad replies dropped.

Issue 13: a reply that can never be sent must not stall every other user's replies (in this
session or after a restart); a session loop that stops ends the session; a server that accepts
the sign-on and drops at once must not get a sign-on per back-off base.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from aimbot.bot.aim_handler import AIMHandler, HandlerOptions
from aimbot.devserver.oscar_server import OscarServer
from aimbot.ops.metrics import Metrics
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import DisconnectReason, Event, IncomingIM, SessionEnded
from aimbot.store import Reply, Store
from tests.helpers.e2e import Person
from tests.helpers.logs import log_signal

WAIT = 10.0
LOGGER = "aimbot.bot.aim_handler"


async def _ignore(_: IncomingIM) -> None:
    return None


def _delays(caplog: pytest.LogCaptureFixture, prefix: str) -> list[float]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]
    return [float(line.rsplit(" in ", 1)[1].split()[0]) for line in lines]


async def _flap(server: OscarServer, handler: AIMHandler, times: int) -> None:
    """Sign the bot off right after each sign-on, `times` times."""
    for _ in range(times):
        await handler.wait_online(WAIT)
        server.sign_off("bot")
        await handler.wait_offline(WAIT)


@pytest.mark.parametrize("stable_after", [60.0, 0.0])
async def test_a_session_dropped_at_once_does_not_reset_the_back_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stable_after: float
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        options = HandlerOptions(
            "bot", reconnect_base=0.05, reconnect_cap=5.0, stable_after=stable_after
        )
        handler = AIMHandler(
            options,
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
            store,
            _ignore,
            rng=random.Random(5),
        )
        runner = asyncio.create_task(handler.run())
        try:
            await _flap(server, handler, 5)
        finally:
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
    delays = _delays(caplog, "connection lost; reconnecting")
    assert len(delays) >= 4 and handler.sessions >= 5
    if stable_after:
        # The 4th: 0.05 * 2**3 = 0.4 nominal, at least half of it with equal jitter.
        assert delays[3] >= 0.2, delays
    else:
        assert max(delays) <= 0.1, delays


class _EndsAt(OscarClient):
    """A client whose sessions end at once with a given reason (as the server's sign-off would)."""

    def __init__(self, reason: DisconnectReason) -> None:
        super().__init__("bot", "pw-bot1", "127.0.0.1", 1)
        self.reason = reason

    async def connect(self) -> None:
        return None

    async def events(self) -> AsyncIterator[Event]:
        yield SessionEnded(self.reason, "test")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("reason", "says", "at_least"),
    [
        (DisconnectReason.RATE_LIMITED, "for sending too fast", 0.0),
        (DisconnectReason.SIGNED_ON_ELSEWHERE, "another login with the same screen name", 60.0),
    ],
)
async def test_how_the_session_ended_decides_the_wait(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    reason: DisconnectReason,
    says: str,
    at_least: float,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with await Store.open(tmp_path / "s.db") as store:
        handler = AIMHandler(
            HandlerOptions("bot", reconnect_base=0.5, reconnect_cap=5.0),
            lambda: cast(OscarClient, _EndsAt(reason)),
            store,
            _ignore,
        )
        with log_signal(LOGGER, says) as found:
            runner = asyncio.create_task(handler.run())
            try:
                async with asyncio.timeout(WAIT):
                    await found.wait()
            finally:
                await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
    line = next(r.getMessage() for r in caplog.records if says in r.getMessage())
    delay = float(line.rsplit(" in ", 1)[1].split()[0])
    assert at_least <= delay <= max(at_least, 0.5)


async def test_replies_that_cannot_be_sent_never_block_other_users_across_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    metrics = Metrics()
    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        now = time.time()
        # What a previous run left at the head of the outbox: replies no server can take.
        await store.outbox_add(" ", Reply("to a blank name", False), now)
        await store.outbox_add("x" * 300, Reply("to a name too long", False), now)
        await store.outbox_add("alice", Reply("é" * 9000, False), now)  # > 8000 bytes encoded
        await store.outbox_add("alice", Reply("the reply alice waits for", False), now)
        alice = Person("alice", "pw-alice", server.port)
        await alice.sign_on()
        handler = AIMHandler(
            HandlerOptions("bot"),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
            store,
            _ignore,
            metrics=metrics,
        )
        assert await handler.load_outbox() == 4
        runner = asyncio.create_task(handler.run())
        try:
            im = await alice.reply(WAIT)
            assert im.text == "the reply alice waits for"
            assert await handler.flush(WAIT)
            assert handler.sessions == 1 and handler.online
        finally:
            await alice.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
        assert await store.outbox_pending() == []  # nothing left to block the next start
    drops = [r for r in caplog.records if "cannot be sent" in r.getMessage()]
    assert len(drops) == 3 and all(r.levelno == logging.WARNING for r in drops)
    value = metrics.registry.get_sample_value("aimbot_ims_given_up_total", {"reason": "unsendable"})
    assert value == 3


class _UpkeepStopsOnce(AIMHandler):
    stopped = False

    async def _maintenance_loop(self) -> None:
        if not self.stopped:
            self.stopped = True
            return
        await super()._maintenance_loop()


async def test_a_session_loop_that_stops_ends_the_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        handler = _UpkeepStopsOnce(
            HandlerOptions("bot", reconnect_base=0.01, reconnect_cap=0.05),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
            store,
            _ignore,
        )
        runner = asyncio.create_task(handler.run())
        alice = Person("alice", "pw-alice", server.port)
        try:
            await handler.wait_online(WAIT)
            await handler.wait_offline(WAIT)  # not half alive: the whole session ended
            await handler.wait_online(WAIT)
            await alice.sign_on()
            item = await store.outbox_add("alice", Reply("after the restart", False), time.time())
            handler.deliver([item])
            assert (await alice.reply(WAIT)).text == "after the restart"
            assert handler.sessions == 2
        finally:
            await alice.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
    assert any(
        "session worker aim-upkeep stopped; ending the session" in r.getMessage()
        for r in caplog.records
    )
