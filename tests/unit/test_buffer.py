import asyncio

import pytest

from aimbot.bot.buffer import MessageBuffer, PendingMessage, Typists
from aimbot.oscar.events import TypingState


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
    async with asyncio.timeout(2):
        batch = await buf.next_batch()
    assert [m.text for m in batch] == ["ok"]
    assert len(buf) == 0


async def test_zero_window_releases_immediately_in_order() -> None:
    buf = MessageBuffer(0.0, 0.0)
    for i in range(3):
        buf.add(msg(i))
    async with asyncio.timeout(1):
        batch = await buf.next_batch()
    assert [m.inbox_id for m in batch] == [0, 1, 2]


async def test_waiting_consumer_wakes_for_a_later_message() -> None:
    buf = MessageBuffer(0.0, 0.0)
    waiter = asyncio.create_task(buf.next_batch())
    await asyncio.sleep(0)  # let the waiter block on the empty buffer
    assert not waiter.done()
    buf.add(msg(7))
    async with asyncio.timeout(1):
        batch = await waiter
    assert [m.inbox_id for m in batch] == [7]


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError, match="max_wait"):
        MessageBuffer(5.0, 1.0)


# -- typing-aware release ------------------------------------------------------------------------


def typist_buffer(
    clock: FakeClock, *, window: float = 5.0, max_wait: float = 10.0
) -> MessageBuffer:
    return MessageBuffer(window, max_wait, clock, typist=True, grace=0.2)


def test_lone_im_from_a_typist_goes_after_the_grace_not_the_window() -> None:
    clock = FakeClock()
    buf = typist_buffer(clock)
    buf.note_typing(TypingState.TYPING)
    clock.now += 3.0  # typing before anything is pending holds nothing back
    buf.add(msg(1))
    assert not buf.composing
    assert buf.seconds_until_ready() == pytest.approx(0.2)
    buf.note_typing(TypingState.NONE)  # clients clear the box after sending
    assert buf.seconds_until_ready() == pytest.approx(0.2)
    clock.now += 0.2
    assert buf.seconds_until_ready() == 0.0


def test_typing_the_next_line_holds_the_batch_until_it_is_sent() -> None:
    clock = FakeClock()
    buf = typist_buffer(clock)
    buf.add(msg(1))
    clock.now += 0.05
    buf.note_typing(TypingState.TYPING)  # the next line, 50 ms after the IM
    assert buf.composing
    clock.now += 4.0  # far past the grace and most of the window
    assert buf.seconds_until_ready() == pytest.approx(5.95)  # only max_wait bounds it
    buf.add(msg(2))
    assert buf.seconds_until_ready() == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("then", "wait"),
    [
        (TypingState.PAUSED, 9.0),  # text still in the box: held, up to max_wait
        (TypingState.NONE, 0.2),  # they deleted what they were writing: a grace from now
    ],
)
def test_what_the_client_says_after_typing_decides_the_wait(then: TypingState, wait: float) -> None:
    clock = FakeClock()
    buf = typist_buffer(clock)
    buf.add(msg(1))
    buf.note_typing(TypingState.TYPING)
    clock.now += 1.0
    buf.note_typing(then)
    assert buf.composing is (then is TypingState.PAUSED)
    assert buf.seconds_until_ready() == pytest.approx(wait)
    clock.now += wait
    assert buf.seconds_until_ready() == 0.0


def test_stale_typing_state_is_bounded_by_max_wait() -> None:
    clock = FakeClock()
    buf = typist_buffer(clock, max_wait=6.0)
    buf.add(msg(1))
    buf.note_typing(TypingState.TYPING)  # and then the client crashed
    clock.now += 6.0
    assert buf.seconds_until_ready() == 0.0


def test_grace_never_exceeds_the_window() -> None:
    clock = FakeClock()
    buf = MessageBuffer(0.0, 0.0, clock, typist=True, grace=0.2)
    buf.add(msg(1))
    assert buf.seconds_until_ready() == 0.0


def test_a_typing_notification_makes_a_user_typing_aware() -> None:
    clock = FakeClock()
    buf = MessageBuffer(5.0, 10.0, clock, grace=0.2)
    buf.add(msg(1))
    assert buf.seconds_until_ready() == pytest.approx(5.0)  # window: silence says nothing
    buf.note_typing(TypingState.NONE)
    assert buf.seconds_until_ready() == pytest.approx(0.2)


async def test_waiting_consumer_sees_typing_stop() -> None:
    buf = MessageBuffer(30.0, 60.0, typist=True, grace=0.0)
    buf.add(msg(1))
    buf.note_typing(TypingState.TYPING)
    waiter = asyncio.create_task(buf.next_batch())
    await asyncio.sleep(0)  # let the waiter block on the composing user
    assert not waiter.done()
    buf.note_typing(TypingState.NONE)
    async with asyncio.timeout(5):
        batch = await waiter
    assert [m.inbox_id for m in batch] == [1]


def test_typists_forget_the_least_recently_heard() -> None:
    typists = Typists(capacity=2)
    typists.heard("a")
    typists.heard("b")
    typists.heard("a")  # a is now the most recent
    typists.heard("c")
    assert "a" in typists and "c" in typists and "b" not in typists
    assert len(typists) == 2


def test_bad_grace_and_capacity_rejected() -> None:
    with pytest.raises(ValueError, match="grace"):
        MessageBuffer(1.0, 2.0, grace=-1.0)
    with pytest.raises(ValueError, match="capacity"):
        Typists(capacity=0)


@pytest.mark.parametrize("turns", range(5))
async def test_a_waiter_cancelled_as_its_batch_becomes_ready_stays_cancelled(turns: int) -> None:
    """The worker is cancelled ("clear", shutdown) in the loop turns around the moment its batch
    becomes ready: it must end cancelled, not go on to return the batch. (asyncio.wait_for on
    Python 3.11 returns the inner result and drops the cancellation when both meet.)"""
    clock = FakeClock()
    buf = MessageBuffer(2.0, 10.0, clock)
    buf.add(msg(1))
    waiter = asyncio.create_task(buf.next_batch())
    await asyncio.sleep(0)  # waiting for the window
    clock.now += 2.0
    buf.note_typing(TypingState.NONE)  # wakes the waiter: the batch is now ready
    for _ in range(turns):
        await asyncio.sleep(0)
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=5)
    assert done, "the waiter did not end"
    if not waiter.cancelled():  # it had returned before the cancel: fine, but only then
        assert turns > 0 and waiter.result() == [msg(1)]
    else:
        assert len(buf) == 1  # the batch stays for whoever comes next
