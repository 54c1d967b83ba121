import asyncio

from aimbot.bot.delivery import DeliveryQueue, Upkeep
from aimbot.store import OutboxItem


def item(i: int, created: float = 0.0, to: str = "bob") -> OutboxItem:
    return OutboxItem(i, to, f"reply {i}", False, created, i.to_bytes(8, "big"))


def test_sends_lowest_id_first_whatever_the_push_order() -> None:
    q = DeliveryQueue(ttl=100)
    for i in (3, 1, 2):
        q.push(item(i))
    assert [q.pop().id for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert q.pop() is None


def test_pop_many_takes_what_pop_would_give_one_by_one() -> None:
    one_by_one, batched = DeliveryQueue(ttl=100), DeliveryQueue(ttl=100)
    for q in (one_by_one, batched):
        for i, to in [(1, "bob"), (2, "bob"), (3, "carol"), (4, "dave"), (5, "carol")]:
            q.push(item(i, to=to))
    expected = [one_by_one.pop().id for _ in range(4)]  # type: ignore[union-attr]
    assert [i.id for i in batched.pop_many(4)] == expected == [1, 3, 4, 2]  # round-robin
    assert [i.id for i in batched.pop_many(10)] == [5]
    assert batched.pop_many(3) == [] and batched.queued == 0


def test_replies_of_a_batch_whose_write_failed_keep_their_order() -> None:
    q = DeliveryQueue(ttl=100)
    for i in (1, 2, 3):
        q.push(item(i))
    batch = q.pop_many(2)
    for sent in batch:
        q.sending(sent.cookie, sent)
    for sent in batch:
        q.unsent(sent.cookie)
    assert [i.id for i in q.pop_many(3)] == [1, 2, 3]


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
    assert q.maintain(now=5.0) == Upkeep()
    assert q.queued == 0
    q.maintain(now=11.0)
    assert q.queued == 1  # retry time came
    again = q.pop()
    assert again is not None
    q.sending(b"c2", again)
    q.written(b"c2", now=11.0)
    q.recipient_offline(b"c2", now=12.0)
    assert q.maintain(now=100.0) == Upkeep(expired=[sent])
    assert len(q) == 0


def _send(q: DeliveryQueue, cookie: bytes, now: float) -> OutboxItem:
    sent = q.pop()
    assert sent is not None
    q.sending(cookie, sent)
    q.written(cookie, now=now)
    return sent


def test_silence_is_not_delivery_the_reply_is_resent_then_given_up() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, max_attempts=3, resend_delay=5)
    q.push(item(1))
    q.push(item(2))
    sent = _send(q, b"c1", now=0.0)
    other = _send(q, b"c2", now=0.0)
    assert q.acked(b"c2") == other  # this server does ack: silence means "dropped"
    assert q.maintain(now=29.0) == Upkeep()
    assert q.maintain(now=30.0) == Upkeep(resending=[sent])
    assert q.queued == 0 and len(q) == 1  # waits resend_delay before going out again
    q.maintain(now=35.0)
    assert q.queued == 1
    _send(q, b"c1", now=35.0)  # the same cookie: the same message
    assert q.maintain(now=65.0) == Upkeep(resending=[sent])
    q.maintain(now=75.0)  # the pause doubles: 10 s
    assert q.queued == 1
    _send(q, b"c1", now=75.0)
    assert q.attempts(sent) == 3
    assert q.maintain(now=105.0) == Upkeep(given_up=[sent])
    assert len(q) == 0 and not q.never_acks


def test_an_ack_for_a_resend_confirms_it() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, resend_delay=0)
    q.push(item(1))
    sent = _send(q, b"c1", now=0.0)
    q.acked(b"other")
    q.maintain(now=30.0)
    q.maintain(now=30.0)
    _send(q, b"c1", now=30.0)
    assert q.acked(b"c1") == sent
    assert len(q) == 0


def test_a_server_that_acks_nothing_in_a_session_is_learned() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, never_ack_after=3, resend_delay=100)
    for i in (1, 2, 3, 4):
        q.push(item(i))
    first = _send(q, b"c1", now=0.0)
    second = _send(q, b"c2", now=0.0)
    assert q.maintain(now=30.0) == Upkeep(resending=[first, second])
    _send(q, b"c3", now=31.0)
    upkeep = q.maintain(now=61.0)
    # The third silence without any ack: the server never acks; what waited is delivered.
    assert upkeep.learned_never_acks and q.never_acks
    assert sorted(i.id for i in upkeep.delivered) == [1, 2, 3]
    assert upkeep.resending == [] and upkeep.given_up == []
    fourth = _send(q, b"c4", now=62.0)
    assert q.maintain(now=92.0) == Upkeep(delivered=[fourth])
    assert len(q) == 0


def test_one_ack_in_the_session_means_silence_is_loss() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, never_ack_after=2, max_attempts=1)
    for i in (1, 2, 3):
        q.push(item(i))
    acked = _send(q, b"c1", now=0.0)
    assert q.acked(b"c1") == acked
    lost = [_send(q, b"c2", now=0.0), _send(q, b"c3", now=0.0)]
    assert q.maintain(now=30.0) == Upkeep(given_up=lost)
    assert not q.never_acks


def test_an_ack_after_learning_turns_confirmation_back_on() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, never_ack_after=1, resend_delay=0)
    q.push(item(1))
    q.push(item(2))
    _send(q, b"c1", now=0.0)
    assert q.maintain(now=30.0).learned_never_acks
    second = _send(q, b"c2", now=30.0)
    assert q.acked(b"c2") == second
    assert not q.never_acks


def test_queued_replies_expire_after_ttl() -> None:
    q = DeliveryQueue(ttl=50)
    q.push(item(1, created=0.0))
    q.push(item(2, created=40.0))
    assert [e.id for e in q.maintain(now=60.0).expired] == [1]
    assert q.pop() == item(2, created=40.0)


async def test_get_waits_for_a_push() -> None:
    q = DeliveryQueue(ttl=10)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.push(item(5))
    async with asyncio.timeout(1):
        assert (await getter).id == 5


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
    assert q.maintain(now=500.0) == Upkeep()
    q.unsent(b"c1")  # the write failed
    assert q.queued == 1


# -- sends dropped for rate cost no attempt (issue 10 item 5) -----------------------------------


def _write(q: DeliveryQueue, now: float, *, over_limit: bool = False) -> OutboxItem:
    """Take the next reply and write it under its own cookie, as the handler does."""
    sent = q.pop()
    assert sent is not None
    q.sending(sent.cookie, sent)
    q.written(sent.cookie, now=now, over_limit=over_limit)
    return sent


def test_a_send_over_the_rate_limit_is_requeued_at_once_and_costs_no_attempt() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, max_attempts=1, resend_delay=100)
    q.push(item(1))
    sent = _write(q, now=0.0, over_limit=True)
    assert q.attempts(sent) == 0
    assert q.maintain(now=30.0) == Upkeep(rate_dropped=[sent])
    assert q.queued == 1  # no resend pause: the send loop paces it to the server's rate
    # Its one real attempt (max_attempts=1) is still to come: only that silence gives up.
    again = _write(q, now=31.0)
    assert again == sent and q.attempts(sent) == 1
    assert q.maintain(now=61.0) == Upkeep(given_up=[sent])


def test_sends_dropped_for_rate_do_not_make_the_server_look_like_one_that_never_acks() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, never_ack_after=1)
    q.push(item(1))
    q.push(item(2))
    dropped = [_write(q, now=0.0, over_limit=True), _write(q, now=0.0, over_limit=True)]
    upkeep = q.maintain(now=30.0)
    assert upkeep == Upkeep(rate_dropped=dropped)
    assert not q.never_acks and len(q) == 2


def test_a_rate_limit_disconnect_costs_the_unconfirmed_sends_no_attempt() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, max_attempts=2)
    q.push(item(1))
    sent = _write(q, now=0.0)
    assert q.attempts(sent) == 1
    for session in range(10):  # however often the server signs us off for rate
        assert q.session_lost(rate_limited=True) == 1
        assert q.attempts(sent) == 0, session
        assert _write(q, now=float(session)) == sent
    q.session_lost()  # any other end of a session: the send may have arrived, it counts
    assert q.attempts(sent) == 1
    _write(q, now=20.0)
    assert q.maintain(now=50.0) == Upkeep(given_up=[sent])


def test_the_servers_clear_notice_sends_what_it_dropped_again_without_waiting() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30)
    for i in (1, 2, 3):
        q.push(item(i, to=f"user{i}"))
    fine = _write(q, now=0.0)
    dropped = _write(q, now=1.0, over_limit=True)
    young = _write(q, now=9.5, over_limit=True)  # its ack may still be on the way
    assert q.rate_cleared(now=10.0) == [dropped]
    assert q.queued == 1 and q.in_flight == 2
    assert q.attempts(dropped) == 0
    assert q.pop() == dropped
    assert q.acked(fine.cookie) == fine and q.acked(young.cookie) == young


def test_a_late_ack_confirms_a_reply_already_queued_again_so_it_is_not_sent_twice() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, resend_delay=5)
    q.push(item(1, to="ann"))
    q.push(item(2, to="bob"))
    requeued = _write(q, now=0.0, over_limit=True)
    parked = _write(q, now=0.0)
    upkeep = q.maintain(now=30.0)
    assert upkeep == Upkeep(resending=[parked], rate_dropped=[requeued])
    assert q.acked(requeued.cookie) == requeued  # the ack came after all
    assert q.acked(parked.cookie) == parked
    assert len(q) == 0 and q.pop() is None


def test_a_send_the_server_refused_for_rate_costs_no_attempt() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, max_attempts=1)
    q.push(item(1))
    sent = _write(q, now=0.0)
    assert q.rate_refused(sent.cookie) == sent
    assert q.attempts(sent) == 0 and q.queued == 1


def test_the_servers_limited_notice_marks_what_is_unacknowledged_as_dropped_for_rate() -> None:
    q = DeliveryQueue(ttl=1000, ack_timeout=30, max_attempts=1)
    for i in (1, 2, 3):
        q.push(item(i, to=f"user{i}"))
    acked = _write(q, now=0.0)
    dropped = _write(q, now=0.0)  # our model thought it fine; the server did not
    waiting = q.pop()  # not written yet (waiting for rate budget): not the server's to drop
    assert waiting is not None
    q.sending(waiting.cookie, waiting)
    assert q.acked(acked.cookie) == acked
    assert q.rate_limited() == 1
    assert q.attempts(dropped) == 0 and q.attempts(waiting) == 1
    assert q.rate_limited() == 0  # once
    assert q.rate_cleared(now=5.0) == [dropped]
