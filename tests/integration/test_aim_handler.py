"""AIMHandler against the real devserver: what it does when signing on cannot work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aimbot import store as store_module
from aimbot.bot.aim_handler import AIMHandler, HandlerOptions
from aimbot.devserver.oscar_server import OscarServer
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import Event, IncomingIM
from aimbot.store import Reply, Store
from tests.helpers.store import one_write_per_turn


class RecordWaiter(logging.Handler):
    """Lets a test await log records instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.changed.set()

    async def wait_for(
        self,
        predicate: object,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[logging.LogRecord]:
        async def until() -> list[logging.LogRecord]:
            while True:
                found = [r for r in self.records if predicate(r)]  # type: ignore[operator]
                if len(found) >= count:
                    return found
                self.changed.clear()
                await self.changed.wait()

        async with asyncio.timeout(timeout):
            return await until()


@pytest.fixture
def records() -> Iterator[RecordWaiter]:
    waiter = RecordWaiter()
    logger = logging.getLogger("aimbot.bot.aim_handler")
    logger.addHandler(waiter)
    logger.setLevel(logging.DEBUG)
    yield waiter
    logger.removeHandler(waiter)


async def _ignore(_: IncomingIM) -> None:
    return None


def _bot(server: OscarServer, store: Store) -> AIMHandler:
    """A handler signing on as "bot" that ignores what it is sent."""
    return AIMHandler(
        HandlerOptions("bot"),
        lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
        store,
        _ignore,
    )


async def _next_im(events: AsyncIterator[Event]) -> IncomingIM:
    """The next IM among a client's events."""
    async for event in events:
        if isinstance(event, IncomingIM):
            return event
    raise AssertionError("the session ended before an IM came")


async def test_a_wrong_password_is_retried_only_at_the_cap(
    tmp_path: Path, records: RecordWaiter
) -> None:
    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "right-password")
        options = HandlerOptions("bot", reconnect_base=0.01, reconnect_cap=0.2)
        handler = AIMHandler(
            options,
            lambda: OscarClient("bot", "wrong-password", "127.0.0.1", server.port),
            store,
            _ignore,
            rng=random.Random(7),
        )
        runner = asyncio.create_task(handler.run())
        try:
            failures = await records.wait_for(
                lambda r: r.getMessage().startswith("cannot sign on as bot"), count=2
            )
        finally:
            await handler.stop()
            async with asyncio.timeout(10):
                await runner
        for record in failures:
            assert "retrying in 0.2 s" in record.getMessage()  # the cap, not the base
            assert "wrong-password" not in record.getMessage()
        assert not handler.online


async def test_an_unreachable_server_backs_off_exponentially(
    tmp_path: Path, records: RecordWaiter
) -> None:
    async with OscarServer() as server:
        port = server.port
    # Nothing listens on `port` any more.
    async with await Store.open(tmp_path / "s.db") as store:
        options = HandlerOptions("bot", reconnect_base=0.01, reconnect_cap=10)
        handler = AIMHandler(
            options,
            lambda: OscarClient("bot", "pw-1234", "127.0.0.1", port, connect_timeout=1),
            store,
            _ignore,
            rng=random.Random(3),
        )
        runner = asyncio.create_task(handler.run())
        try:
            failures = await records.wait_for(
                lambda r: r.getMessage().startswith("sign-on failed"), count=4
            )
        finally:
            await handler.stop()
            async with asyncio.timeout(10):
                await runner
        delays = [float(r.getMessage().rsplit("retrying in ", 1)[1].split()[0]) for r in failures]
        ceilings = [0.01 * 2**n for n in range(4)]
        for delay, ceiling in zip(delays, ceilings, strict=True):
            # equal jitter: between half the nominal delay and the nominal delay (1-decimal log)
            assert ceiling / 2 - 0.05 <= delay <= ceiling + 0.05


async def test_an_error_handling_one_im_does_not_end_the_session(tmp_path: Path) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def fragile(im: IncomingIM) -> None:
        if im.text == "boom":
            raise RuntimeError("a bug in the layer above")
        seen.put_nowait(im.text)

    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        handler = AIMHandler(
            HandlerOptions("bot"),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", server.port),
            store,
            fragile,
        )
        runner = asyncio.create_task(handler.run())
        alice = OscarClient("alice", "pw-alice", "127.0.0.1", server.port)
        try:
            await handler.wait_online(10)
            await alice.connect()
            await alice.send_im("bot", "boom")
            await alice.send_im("bot", "still there?")
            async with asyncio.timeout(10):
                assert await seen.get() == "still there?"
            assert handler.online and handler.sessions == 1
        finally:
            await alice.close()
            await handler.stop()
            async with asyncio.timeout(10):
                await runner


async def test_a_reply_goes_out_under_the_cookie_stored_with_it(tmp_path: Path) -> None:
    """What a previous run left in the outbox is sent as the same message it was then.

    So a reply whose ack a crash swallowed reaches a client as a repeat it can recognise.
    """
    async with OscarServer() as server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        item = await store.outbox_add("Alice", Reply("left from the last run", False), 1.0)
        alice = OscarClient("alice", "pw-alice", "127.0.0.1", server.port)
        await alice.connect()
        events = alice.events()
        handler = _bot(server, store)
        assert await handler.load_outbox() == 1
        runner = asyncio.create_task(handler.run())
        try:
            async with asyncio.timeout(10):
                im = await _next_im(events)
            assert (im.text, im.cookie) == ("left from the last run", item.cookie)
        finally:
            await alice.close()
            await handler.stop()
            async with asyncio.timeout(10):
                await runner


@contextlib.asynccontextmanager
async def _bot_with_sender_waiting(
    tmp_path: Path, *, rate_limits: bool = False
) -> AsyncIterator[tuple[Store, AIMHandler, AsyncIterator[Event]]]:
    """A signed-on handler whose sender waits for work, and alice's events: one reply ("first")
    went to alice and was confirmed, so the sender is back to waiting. `rate_limits`: the
    devserver enforces (and advertises) OOS's rate classes, else it advertises none."""
    server = OscarServer(enforce_rate_limits=rate_limits)
    async with server, await Store.open(tmp_path / "s.db") as store:
        server.add_account("bot", "pw-bot1")
        server.add_account("alice", "pw-alice")
        alice = OscarClient("alice", "pw-alice", "127.0.0.1", server.port)
        await alice.connect()
        events = alice.events()
        handler = _bot(server, store)
        runner = asyncio.create_task(handler.run())
        try:
            await handler.wait_online(10)
            handler.deliver([await store.outbox_add("alice", Reply("first", False), 1.0)])
            assert await handler.flush(10)  # acked: by then the sender waits again
            yield store, handler, events
            assert await handler.flush(10)
        finally:
            await alice.close()
            await handler.stop()
            async with asyncio.timeout(10):
                await runner


async def test_a_reply_handed_over_while_the_sender_waits_is_written_in_that_call(
    tmp_path: Path,
) -> None:
    """With nothing queued and the sender waiting, deliver() writes the first reply itself: it
    leaves in the loop turn that committed it, not a turn later when the sender wakes. The rest
    of a long answer is queued, to share the rate budget with other users' replies. A reply
    that can never be sent (a name no server takes) is dropped there."""
    async with _bot_with_sender_waiting(tmp_path) as (store, handler, events):
        handler.deliver([await store.outbox_add("Mr\x01X", Reply("never", False), 2.0)])
        assert (handler.queue.queued, handler.queue.in_flight, len(handler.queue)) == (0, 0, 0)
        parts = [await store.outbox_add("alice", Reply(f"part {n}", False), 3.0) for n in (1, 2)]
        handler.deliver(parts)
        # No await since: part 1 written in the call (in flight, awaiting its ack), 2 queued.
        assert (handler.queue.queued, handler.queue.in_flight) == (1, 1)
        async with asyncio.timeout(10):
            got = [await _next_im(events) for _ in range(3)]
        assert [im.text for im in got] == ["first", "part 1", "part 2"]


async def test_near_the_rate_limit_replies_wait_for_the_sender_to_share_the_budget(
    tmp_path: Path,
) -> None:
    """An ordinary account can send only a short burst: there the sender paces, and its
    round-robin decides whose reply uses the budget, so deliver() writes nothing itself."""
    async with _bot_with_sender_waiting(tmp_path, rate_limits=True) as (store, handler, events):
        handler.deliver([await store.outbox_add("alice", Reply("second", False), 2.0)])
        assert (handler.queue.queued, handler.queue.in_flight) == (1, 0)
        async with asyncio.timeout(10):
            got = [await _next_im(events), await _next_im(events)]
        assert [im.text for im in got] == ["first", "second"]


async def test_under_a_flood_of_writes_replies_wait_for_the_sender_to_gather_them(
    tmp_path: Path,
) -> None:
    """While the store paces its commits (each hands over many answers at once), deliver()
    leaves replies to the sender, which writes all that are queued in one go."""
    async with _bot_with_sender_waiting(tmp_path) as (store, handler, events):
        await one_write_per_turn(store, 2 * store_module.PACE_WINDOW)
        replies = [Reply(f"reply {n}", False) for n in range(3)]
        items = await store.complete([], "alice", replies, 2.0)
        assert store.paced
        handler.deliver(items)
        assert (handler.queue.queued, handler.queue.in_flight) == (3, 0)
        async with asyncio.timeout(10):
            got = [await _next_im(events) for _ in range(4)]
        assert [im.text for im in got] == ["first", "reply 0", "reply 1", "reply 2"]


async def test_a_reply_sent_at_once_is_written_before_its_row_and_confirmed_as_usual(
    tmp_path: Path,
) -> None:
    """send_at_once() writes the reply in the call, before the caller stores it: in flight
    under the cookie its row gets right after, and confirmed by the server's ack."""
    async with _bot_with_sender_waiting(tmp_path) as (store, handler, events):
        (item,) = store.new_replies("alice", [Reply("at once", False)], 2.0)
        assert handler.send_at_once(item)
        assert (handler.queue.queued, handler.queue.in_flight) == (0, 1)
        assert await store.outbox_pending() == []  # written, not stored yet
        store.stage_items([], [item])
        store.commit_now()
        assert await store.outbox_pending() == [item]
        async with asyncio.timeout(10):
            got = [await _next_im(events), await _next_im(events)]
        assert [im.text for im in got] == ["first", "at once"]
        assert got[1].cookie == item.cookie
        assert await handler.flush(10)  # acked: its row is forgotten
        assert await store.outbox_pending() == []


async def test_after_a_reply_sent_at_once_the_rest_of_its_answer_is_queued(
    tmp_path: Path,
) -> None:
    """The rest of an answer whose first part went out at once waits in the queue, as
    deliver() queues all but one: one reply per answer skips the round-robin, not two."""
    async with _bot_with_sender_waiting(tmp_path) as (store, handler, events):
        items = store.new_replies("alice", [Reply(f"part {n}", False) for n in (1, 2, 3)], 2.0)
        assert handler.send_at_once(items[0])
        store.stage_items([], items)
        store.commit_now()
        handler.deliver(items[1:], at_once=False)
        # No await since: part 1 in flight, parts 2 and 3 queued for the sender.
        assert (handler.queue.queued, handler.queue.in_flight) == (2, 1)
        async with asyncio.timeout(10):
            got = [await _next_im(events) for _ in range(4)]
        assert [im.text for im in got] == ["first", "part 1", "part 2", "part 3"]


async def test_a_reply_that_cannot_go_at_once_is_left_to_the_caller(tmp_path: Path) -> None:
    """Near the rate limit, with replies queued, or under a flood, send_at_once() writes
    nothing: the caller stores the reply and delivers it after the commit."""
    async with _bot_with_sender_waiting(tmp_path, rate_limits=True) as (store, handler, _):
        (item,) = store.new_replies("alice", [Reply("later", False)], 2.0)
        assert not handler.send_at_once(item)
        assert (handler.queue.queued, handler.queue.in_flight) == (0, 0)
    async with _bot_with_sender_waiting(tmp_path) as (store, handler, _):
        handler.queue.push(await store.outbox_add("alice", Reply("queued", False), 2.0))
        (item,) = store.new_replies("alice", [Reply("behind it", False)], 3.0)
        assert not handler.send_at_once(item)
        assert (handler.queue.queued, handler.queue.in_flight) == (1, 0)
        await one_write_per_turn(store, 2 * store_module.PACE_WINDOW)
        assert store.paced
        assert not handler.send_at_once(item)
