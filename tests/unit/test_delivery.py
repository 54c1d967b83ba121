import asyncio

from aimbot.bot.delivery import DeliveryQueue
from aimbot.store import OutboxItem


def item(i: int, created: float = 0.0, to: str = "bob") -> OutboxItem:
    return OutboxItem(i, to, f"reply {i}", False, created, i.to_bytes(8, "big"))


def test_sends_lowest_id_first_whatever_the_push_order() -> None:
    q = DeliveryQueue(ttl=100)
    for i in (3, 1, 2):
        q.push(item(i))
    assert [q.pop().id for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert q.pop() is None


def test_unconfirmed_sends_are_requeued_when_the_session_drops() -> None:
    q = DeliveryQueue(ttl=100)
    q.push(item(1))
    q.push(item(2))
    first = q.pop()
    assert first is not None
    q.sending(b"cookie01", first)
    q.written(b"cookie01", now=1.0)
    assert len(q) == 2 and q.in_flight == 1
    assert q.session_lost() == 1
    assert [q.pop().id for _ in range(2)] == [1, 2]  # type: ignore[union-attr]


def test_ack_confirms_exactly_the_matching_send() -> None:
    q = DeliveryQueue(ttl=100)
    q.push(item(1))
    sent = q.pop()
    assert sent is not None
    q.sending(b"c1", sent)
    q.written(b"c1", now=0.0)
    assert q.acked(b"unknown") is None
    assert q.acked(b"c1") == sent
    assert len(q) == 0


def test_offline_recipient_is_parked_retried_then_expired() -> None:
    q = DeliveryQueue(ttl=100, offline_retry=10)
    q.push(item(1, created=0.0))
    sent = q.pop()
    assert sent is not None
    q.sending(b"c1", sent)
    q.written(b"c1", now=0.0)
    assert q.recipient_offline(b"c1", now=1.0) == sent
    assert q.queued == 0 and len(q) == 1
    assert q.maintain(now=5.0) == ([], [])
    assert q.queued == 0
    q.maintain(now=11.0)
    assert q.queued == 1  # retry time came
    again = q.pop()
    assert again is not None
    q.sending(b"c2", again)
    q.written(b"c2", now=11.0)
    q.recipient_offline(b"c2", now=12.0)
    silent, expired = q.maintain(now=100.0)
    assert silent == [] and expired == [sent]
    assert len(q) == 0


def test_servers_that_never_ack_confirm_by_silence() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30)
    q.push(item(1))
    sent = q.pop()
    assert sent is not None
    q.sending(b"c1", sent)
    q.written(b"c1", now=0.0)
    assert q.maintain(now=29.0) == ([], [])
    assert q.maintain(now=30.0) == ([sent], [])


def test_queued_replies_expire_after_ttl() -> None:
    q = DeliveryQueue(ttl=50)
    q.push(item(1, created=0.0))
    q.push(item(2, created=40.0))
    _, expired = q.maintain(now=60.0)
    assert [e.id for e in expired] == [1]
    assert q.pop() == item(2, created=40.0)


async def test_get_waits_for_a_push() -> None:
    q = DeliveryQueue(ttl=10)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.push(item(5))
    assert (await asyncio.wait_for(getter, 1)).id == 5


def test_duplicate_push_is_ignored() -> None:
    q = DeliveryQueue(ttl=10)
    q.push(item(1))
    q.push(item(1))
    assert q.queued == 1


def test_an_ack_that_beats_the_write_still_confirms_the_reply() -> None:
    q = DeliveryQueue(ttl=100, ack_timeout=30)
    q.push(item(1))
    it = q.pop()
    assert it is not None
    q.sending(b"c1", it)
    assert len(q) == 1  # a reply waiting for rate budget is still owed
    assert q.acked(b"c1") == it  # the server answered before send_im returned
    q.written(b"c1", now=1.0)
    assert len(q) == 0


def test_a_send_waiting_for_rate_budget_is_never_confirmed_by_silence() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30)
    q.push(item(1))
    it = q.pop()
    assert it is not None
    q.sending(b"c1", it)
    assert q.maintain(now=500.0) == ([], [])
    q.unsent(b"c1")  # the write failed
    assert q.queued == 1
