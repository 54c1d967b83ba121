"""A reply is delivered when the server acks it; silence means "dropped" and the reply is resent.

The servers here are our devserver with its relay changed the way real servers behave: Open OSCAR
Server drops an IM over the rate limit without a word (no error, no ack), and some servers never
send host acks at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path

import pytest

from aimbot.bot.aim_handler import AIMHandler, HandlerOptions
from aimbot.devserver.oscar_connection import OscarConnection
from aimbot.devserver.oscar_server import OscarServer
from aimbot.ops.metrics import Metrics
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM
from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, RateClass
from aimbot.oscar.snacs import IcbmSendIM
from aimbot.store import Reply, Store
from tests.helpers.e2e import Person

WAIT = 10.0
FAST = {"ack_timeout": 0.3, "maintenance_interval": 0.05, "resend_delay": 0.05}


class SilentDropServer(OscarServer):
    """Drops the first `drops` sends of each message cookie silently, as RAS does over its limit."""

    def __init__(self, drops: int) -> None:
        super().__init__(enforce_rate_limits=False)
        self.drops = drops
        self.seen: Counter[bytes] = Counter()

    def relay_im(self, sender: OscarConnection, snac: IcbmSendIM, request_id: int) -> None:
        self.seen[snac.cookie] += 1
        if self.seen[snac.cookie] <= self.drops:
            return
        super().relay_im(sender, snac, request_id)


class NeverAckServer(OscarServer):
    """Relays every IM but never answers the ack request."""

    def relay_im(self, sender: OscarConnection, snac: IcbmSendIM, request_id: int) -> None:
        unacked = IcbmSendIM(snac.cookie, snac.channel, snac.recipient, snac.tlvs.without(0x0003))
        super().relay_im(sender, unacked, request_id)


async def _ignore(_: IncomingIM) -> None:
    return None


def _metric(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def _run_handler(
    server: OscarServer, store: Store, metrics: Metrics, **options: float
) -> tuple[AIMHandler, asyncio.Task[None]]:
    handler = AIMHandler(
        HandlerOptions("bot", **options),  # type: ignore[arg-type]
        lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
        store,
        _ignore,
        metrics=metrics,
    )
    runner = asyncio.create_task(handler.run())
    await handler.wait_online(WAIT)
    return handler, runner


async def test_a_silently_dropped_reply_is_resent_and_arrives_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.bot.aim_handler")
    metrics = Metrics()
    server = SilentDropServer(drops=1)
    async with server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        alice = Person("alice", "pw-alice", server.port)
        await alice.sign_on()
        handler, runner = await _run_handler(server, store, metrics, **FAST)
        try:
            item = await store.outbox_add("alice", Reply("are you there?", False), time.time())
            handler.deliver([item])
            assert await handler.flush(WAIT)
            im = await alice.reply()
            assert (im.text, im.cookie) == ("are you there?", item.cookie)
            assert server.seen[item.cookie] == 2  # sent twice under one cookie
        finally:
            await alice.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
        assert await store.outbox_pending() == []
    assert alice.all_received == [im]
    assert _metric(metrics, "aimbot_ims_sent_total") == 1
    assert _metric(metrics, "aimbot_ims_resent_total") == 1
    assert "sending it again" in caplog.text


async def test_a_reply_never_acked_is_given_up_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    server = SilentDropServer(drops=99)
    async with server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        server.add_account("carol", "pw-carol")
        alice = Person("alice", "pw-alice", server.port)
        carol = Person("carol", "pw-carol", server.port)
        await alice.sign_on()
        await carol.sign_on()
        handler, runner = await _run_handler(server, store, metrics, **FAST)
        try:
            # One reply gets through (its cookie was "sent" 99 times already): the server acks.
            good = await store.outbox_add("carol", Reply("hi carol", False), time.time())
            server.seen[good.cookie] = 99
            lost = await store.outbox_add("alice", Reply("lost", False), time.time())
            handler.deliver([good, lost])
            assert await handler.flush(WAIT)
        finally:
            await alice.sign_off()
            await carol.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
        assert await store.outbox_pending() == []
    assert server.seen[lost.cookie] == 3
    assert alice.all_received == [] and [im.text for im in carol.all_received] == ["hi carol"]
    assert _metric(metrics, "aimbot_ims_sent_total") == 1
    assert _metric(metrics, "aimbot_ims_resent_total") == 2
    assert _metric(metrics, "aimbot_ims_given_up_total", reason="no_ack") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("giving up on reply" in w and "'alice'" in w for w in warnings), warnings


async def test_a_server_that_never_acks_is_learned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    server = NeverAckServer(enforce_rate_limits=False)
    async with server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        alice = Person("alice", "pw-alice", server.port)
        await alice.sign_on()
        handler, runner = await _run_handler(server, store, metrics, never_ack_after=2, **FAST)
        try:
            now = time.time()
            parts = [Reply(f"part {n}", False) for n in "0123"]
            items = [await store.outbox_add("alice", part, now) for part in parts]
            handler.deliver(items)
            assert await handler.flush(WAIT)
            later = await store.outbox_add("alice", Reply("later", False), time.time())
            handler.deliver([later])
            assert await handler.flush(WAIT)
        finally:
            await alice.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
    texts = [im.text for im in alice.all_received]
    # Every part arrived (a part sent before the server was known may arrive twice).
    assert {f"part {n}" for n in "0123"} | {"later"} == set(texts)
    assert texts.count("later") == 1
    assert _metric(metrics, "aimbot_ims_sent_total") == 5
    learned = [r for r in caplog.records if "does not send host acks" in r.getMessage()]
    assert len(learned) == 1


# The ordinary IM class of Open OSCAR Server scaled down tenfold (levels in ms, window 10): three
# IMs in a burst are fine, the 4th to 6th are dropped without a word, the 7th disconnects.
FAST_IM_CLASS = RateClass(3, 10, 510, 500, 400, 300, 600, 600)


async def test_a_burst_over_the_rate_limit_loses_no_reply_even_unthrottled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AIM_THROTTLE=false against an enforcing server: drops and a rate-limit disconnect cost
    no attempt (one attempt allowed here), and from then on the bot paces to the server."""
    caplog.set_level(logging.INFO, logger="aimbot.bot.aim_handler")
    metrics = Metrics()
    classes = [FAST_IM_CLASS if c.class_id == 3 else c for c in DEFAULT_RATE_CLASSES]
    server = OscarServer(rate_classes=classes)
    names = [f"user{n:02d}" for n in range(12)]
    async with server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        people = []
        for name in names:
            server.add_account(name, f"pw-{name}")
            people.append(Person(name, f"pw-{name}", server.port))
        await asyncio.gather(*(who.sign_on() for who in people))
        handler = AIMHandler(
            HandlerOptions(
                "bot",
                max_send_attempts=1,
                ack_timeout=2.0,
                reconnect_base=0.05,
                maintenance_interval=0.05,
            ),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port, throttle=False),
            store,
            _ignore,
            metrics=metrics,
        )
        runner = asyncio.create_task(handler.run())
        await handler.wait_online(WAIT)
        try:
            now = time.time()
            items = [
                await store.outbox_add(name, Reply(f"hi {name}", False), now) for name in names
            ]
            handler.deliver(items)
            assert await handler.flush(60)
        finally:
            await asyncio.gather(*(who.sign_off() for who in people))
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
        assert await store.outbox_pending() == []
    for who, name in zip(people, names, strict=True):
        assert [im.text for im in who.all_received] == [f"hi {name}"]
    assert server.stats.rate_limited["bot"] > 0  # the scenario did drop IMs
    assert server.stats.rate_disconnects["bot"] == 1  # and only the unpaced first burst was cut
    assert handler.pace_to_server
    assert _metric(metrics, "aimbot_ims_sent_total") == len(names)
    assert _metric(metrics, "aimbot_ims_given_up_total", reason="no_ack") == 0
    assert "paced to the rate limits it advertises" in caplog.text
