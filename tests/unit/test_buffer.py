import asyncio

import pytest

from aimbot.bot.buffer import MessageBuffer, PendingMessage


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def msg(i: int, text: str = "x") -> PendingMessage:
    return PendingMessage(i, text, 0.0)


def test_release_after_quiet_window() -> None:
    clock = FakeClock()
    buf = MessageBuffer(2.0, 10.0, clock)
    assert buf.seconds_until_ready() is None
    buf.add(msg(1))
    assert buf.seconds_until_ready() == 2.0
    clock.now += 1.5
    buf.add(msg(2))
    assert buf.seconds_until_ready() == 2.0  # the window restarts with each message
    clock.now += 2.0
    assert buf.seconds_until_ready() == 0.0


def test_max_wait_caps_a_user_who_keeps_typing() -> None:
    clock = FakeClock()
    buf = MessageBuffer(2.0, 5.0, clock)
    buf.add(msg(1))
    for i in range(2, 6):
        clock.now += 1.0
        buf.add(msg(i))
    # 4 s after the first message, quiet deadline is 2 s away but max_wait is 1 s away.
    assert buf.seconds_until_ready() == pytest.approx(1.0)


async def test_short_messages_are_released_by_time_alone() -> None:
    buf = MessageBuffer(0.05, 0.2)
    buf.add(msg(1, "ok"))
    batch = await asyncio.wait_for(buf.next_batch(), timeout=2)
    assert [m.text for m in batch] == ["ok"]
    assert len(buf) == 0


async def test_zero_window_releases_immediately_in_order() -> None:
    buf = MessageBuffer(0.0, 0.0)
    for i in range(3):
        buf.add(msg(i))
    batch = await asyncio.wait_for(buf.next_batch(), timeout=1)
    assert [m.inbox_id for m in batch] == [0, 1, 2]


async def test_waiting_consumer_wakes_for_a_later_message() -> None:
    buf = MessageBuffer(0.0, 0.0)
    waiter = asyncio.create_task(buf.next_batch())
    await asyncio.sleep(0)  # let the waiter block on the empty buffer
    assert not waiter.done()
    buf.add(msg(7))
    batch = await asyncio.wait_for(waiter, timeout=1)
    assert [m.inbox_id for m in batch] == [7]


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError, match="max_wait"):
        MessageBuffer(5.0, 1.0)
