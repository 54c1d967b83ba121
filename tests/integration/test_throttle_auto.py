"""AIM_THROTTLE=auto over real sockets: paced where the server enforces, free where it does not.

The rate classes are Open OSCAR Server's, scaled down twenty-fold in time so that pacing takes
tenths of seconds instead of seconds; the rules are the same.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM, RateChange
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, RateClass
from tests.helpers.e2e import Person

WAIT = 20.0
SCALE = 20


def _scaled(c: RateClass) -> RateClass:
    return replace(
        c,
        clear_level=c.clear_level // SCALE,
        alert_level=c.alert_level // SCALE,
        limit_level=c.limit_level // SCALE,
        disconnect_level=c.disconnect_level // SCALE,
        current_level=c.current_level // SCALE,
        max_level=c.max_level // SCALE,
    )


FAST_CLASSES = tuple(_scaled(c) for c in DEFAULT_RATE_CLASSES)


async def _send_burst(server: OscarServer, sender: str, count: int) -> tuple[Person, list[int]]:
    """`sender` (throttle=auto) sends `count` IMs to alice as fast as it lets itself."""
    alice = Person("alice", "pw-alice", server.port)
    await alice.sign_on()
    client = OscarClient(sender, "pw-sender", "127.0.0.1", server.port, throttle="auto")
    await client.connect()
    notices: list[int] = []

    async def watch() -> None:
        async for event in client.events():
            if isinstance(event, RateChange):
                notices.append(event.code)

    watcher = asyncio.create_task(watch())
    try:
        for n in range(count):
            await client.send_im("alice", f"message {n}")
        received = await alice.replies(count, WAIT)
        assert [im.text for im in received] == [f"message {n}" for n in range(count)]
    finally:
        await client.close()
        async with asyncio.timeout(WAIT):
            await watcher
        await alice.sign_off()
    return alice, notices


async def test_an_enforcing_server_is_obeyed_and_nothing_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.oscar.throttle")
    async with OscarServer(enforce_rate_limits=True, rate_classes=FAST_CLASSES) as server:
        server.add_account("normal", "pw-sender")
        server.add_account("alice", "pw-alice")
        _, notices = await _send_burst(server, "normal", 16)
        assert server.stats.rate_limited.get("normal", 0) == 0
        assert server.stats.rate_disconnects.get("normal", 0) == 0
    assert 2 in notices  # the burst crossed the alert line on purpose, and the server said so
    assert "does not enforce" not in caplog.text


async def test_an_exempt_account_is_learned_and_no_longer_paced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Like Open OSCAR Server, the devserver advertises the ordinary classes to a bot account too.
    caplog.set_level(logging.INFO, logger="aimbot.oscar.throttle")
    async with OscarServer(enforce_rate_limits=True, rate_classes=FAST_CLASSES) as server:
        server.add_account("robot", "pw-sender", is_bot=True)
        server.add_account("alice", "pw-alice")
        alice, notices = await _send_burst(server, "robot", 40)
    assert notices == []  # an exempt account never hears from the rate limiter
    learned = [r.getMessage() for r in caplog.records if "does not enforce" in r.getMessage()]
    assert len(learned) == 1 and "rate class 3" in learned[0]
    assert all(isinstance(im, IncomingIM) for im in alice.all_received)
