"""When replies queue up for long, a user who writes is told once, and never as a storm."""

from __future__ import annotations

from pathlib import Path

from aimbot.bot.aim_handler import AIMHandler, HandlerOptions
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM
from aimbot.store import OutboxItem, Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowQueue(AIMHandler):
    """A handler whose sends take `per_send` seconds each (as measured over a session)."""

    per_send = 10.0

    def expected_wait(self) -> float:
        return self.queue.waiting_users * self.per_send


async def _ignore(_: IncomingIM) -> None:
    return None


def _item(i: int, to: str, created: float) -> OutboxItem:
    return OutboxItem(i, to, "reply", False, created, i.to_bytes(8, "big"))


async def test_busy_notices_only_when_slow_once_per_user_and_spaced(tmp_path: Path) -> None:
    clock = Clock()
    async with await Store.open(tmp_path / "s.db") as store:
        handler = SlowQueue(
            HandlerOptions("bot", busy_notice_after=30, busy_notice_interval=60),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", 1),
            store,
            _ignore,
            clock=clock,
        )
        assert handler.busy_wait("alice") is None  # nothing queued: no wait
        handler.deliver([_item(1, "carol", created=clock.now)])
        assert handler.busy_wait("alice") is None  # one user ahead: 10 s expected
        handler.deliver([_item(i, f"user{i}", created=clock.now) for i in range(2, 6)])
        assert handler.busy_wait("alice") is None  # 50 s expected, but nothing has waited yet
        clock.now += 31
        assert handler.busy_wait("alice") == 50.0  # slow for real: tell alice
        assert handler.busy_wait("bob") is None  # one notice a minute over everyone
        clock.now += 60
        assert handler.busy_wait("alice") is None  # alice was told already
        assert handler.busy_wait("bob") == 50.0
        clock.now += 3600
        assert handler.busy_wait("alice") == 50.0  # an hour later, a new busy spell


async def test_busy_notices_can_be_turned_off(tmp_path: Path) -> None:
    clock = Clock()
    async with await Store.open(tmp_path / "s.db") as store:
        handler = SlowQueue(
            HandlerOptions("bot", busy_notice_after=0),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", 1),
            store,
            _ignore,
            clock=clock,
        )
        handler.deliver([_item(i, f"user{i}", created=0.0) for i in range(1, 20)])
        assert handler.busy_wait("alice") is None


async def test_an_urgent_notice_goes_before_every_round(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        handler = AIMHandler(
            HandlerOptions("bot"),
            lambda: OscarClient("bot", "pw-bot1", "127.0.0.1", 1),
            store,
            _ignore,
        )
        handler.deliver([_item(i, f"user{i}", created=0.0) for i in range(1, 5)])
        handler.deliver([_item(9, "alice", created=0.0)], urgent=True)
        first = handler.queue.pop()
        assert first is not None and first.id == 9
        assert handler.queue.oldest_queued() == 0.0
