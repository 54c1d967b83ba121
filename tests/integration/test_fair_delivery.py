"""Replies share the send budget fairly, and held replies follow their user back."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from aimbot.bot.aim_handler import AIMHandler, HandlerOptions
from aimbot.devserver.oscar_connection import OscarConnection
from aimbot.devserver.oscar_server import OscarServer
from aimbot.ops.metrics import Metrics
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM
from aimbot.oscar.snacs import IcbmSendIM
from aimbot.store import Reply, Store
from tests.helpers.e2e import Person
from tests.helpers.logs import log_signal

WAIT = 10.0


class RecordingServer(OscarServer):
    """Remembers to whom each IM went, in the order the server received them."""

    def __init__(self) -> None:
        super().__init__(enforce_rate_limits=False)
        self.order: list[str] = []

    def relay_im(self, sender: OscarConnection, snac: IcbmSendIM, request_id: int) -> None:
        self.order.append(snac.recipient)
        super().relay_im(sender, snac, request_id)


async def _ignore(_: IncomingIM) -> None:
    return None


async def test_a_short_answer_is_not_sent_after_a_long_one(tmp_path: Path) -> None:
    metrics = Metrics()
    server = RecordingServer()
    async with server, await Store.open(tmp_path / "s.db") as store:
        for name in ("bot", "alice", "bob"):
            server.add_account(name, f"pw-{name}1")
        alice = Person("alice", "pw-alice1", server.port)
        bob = Person("bob", "pw-bob1", server.port)
        await alice.sign_on()
        await bob.sign_on()
        now = time.time() - 5  # produced five seconds ago
        long = [await store.outbox_add("alice", Reply(f"part {n}/6", False), now) for n in "123456"]
        short = await store.outbox_add("bob", Reply("a one-liner", False), now)
        handler = AIMHandler(
            HandlerOptions("bot"),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
            store,
            _ignore,
            metrics=metrics,
        )
        handler.deliver([*long, short])
        scrape = {s.name: s.value for m in metrics.registry.collect() for s in m.samples}
        assert scrape["aimbot_reply_queue_length"] == 7
        assert scrape["aimbot_reply_queue_users"] == 2
        assert scrape["aimbot_reply_queue_oldest_seconds"] >= 5
        runner = asyncio.create_task(handler.run())
        try:
            assert (await bob.reply(WAIT)).text == "a one-liner"
            assert [im.text for im in await alice.replies(6, WAIT)] == [
                f"part {n}/6" for n in "123456"
            ]
            assert await handler.flush(WAIT)
        finally:
            await alice.sign_off()
            await bob.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
    assert server.order.index("bob") == 1  # right after alice's first part, not after all six
    assert metrics.registry.get_sample_value("aimbot_reply_queue_length") == 0


async def test_a_held_reply_goes_out_first_when_its_user_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.bot.aim_handler")
    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        for name in ("bot", "alice"):
            server.add_account(name, f"pw-{name}1")

        async def answer(im: IncomingIM) -> None:
            # What the bot does with an IM: store an answer, hand it to the handler.
            item = await store.outbox_add(
                im.sender, Reply(f"answer to {im.text}", False), time.time()
            )
            handler.deliver([item])

        # The periodic retry is an hour away: only the hand-over can bring the held reply.
        handler = AIMHandler(
            HandlerOptions("bot", offline_retry=3600),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
            store,
            answer,
        )
        held = await store.outbox_add(
            "alice", Reply("held while you were away", False), time.time()
        )
        handler.deliver([held])
        runner = asyncio.create_task(handler.run())
        alice = Person("alice", "pw-alice1", server.port)
        parked_signal = log_signal("aimbot.bot.aim_handler", "is offline; reply")
        try:
            with parked_signal as parked:
                async with asyncio.timeout(WAIT):
                    await parked.wait()  # alice is offline: reply held
            await alice.sign_on()
            await alice.say("I'm back", to="bot")
            first, second = await alice.replies(2, WAIT)
            assert (first.text, first.cookie) == ("held while you were away", held.cookie)
            assert second.text == "answer to I'm back"
            assert await handler.flush(WAIT)
        finally:
            await alice.sign_off()
            await handler.stop()
            async with asyncio.timeout(WAIT):
                await runner
    assert "'alice' is back: 1 held replies go out now" in caplog.text
