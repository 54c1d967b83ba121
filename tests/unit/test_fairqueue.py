"""The reply scheduler: every user's replies in order, and nobody waits more than one round."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from aimbot.bot.fairqueue import FairQueue
from aimbot.store import OutboxItem

USERS = "abcde"


def item(i: int, to: str, created: float = 0.0) -> OutboxItem:
    return OutboxItem(i, to, f"reply {i}", False, created, i.to_bytes(8, "big"))


def by_name(it: OutboxItem) -> str:
    return it.screen_name


# An operation: ("push", user, parts) queues that many parts (next ids) for a user; ("pop",) sends.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(USERS), st.integers(1, 6)),
        st.tuples(st.just("pop")),
    ),
    max_size=80,
)


@given(OPS)
def test_each_users_parts_in_order_and_nobody_waits_more_than_one_round(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    q = FairQueue(by_name)
    next_id = 1
    sent: dict[str, list[int]] = {u: [] for u in USERS}
    # For each waiting user: how many replies each other user got since this user last got one
    # (or since it started waiting).
    others_since: dict[str, Counter[str]] = {}
    pending: Counter[str] = Counter()

    def send_one() -> None:
        popped = q.pop()
        if popped is None:
            assert sum(pending.values()) == 0
            return
        who = popped.screen_name
        sent[who].append(popped.id)
        pending[who] -= 1
        others_since[who] = Counter()
        for user, seen in others_since.items():
            if user != who and pending[user] > 0:
                seen[who] += 1
                # One round: every other user at most once before this user's turn comes.
                assert seen[who] <= 1, (user, who, seen)
        if pending[who] == 0:
            del others_since[who]

    for op in ops:
        if op[0] == "push":
            _, user, parts = op
            if pending[user] == 0:
                others_since[user] = Counter()
            for _ in range(parts):
                assert q.push(item(next_id, user))
                next_id += 1
                pending[user] += 1
        else:
            send_one()
    while len(q):
        send_one()
    assert q.pop() is None
    for user, ids in sent.items():
        assert ids == sorted(ids), user  # each user's parts in the order they were produced
    assert sum(len(ids) for ids in sent.values()) == next_id - 1  # nothing lost, nothing twice


def test_a_newcomer_is_not_stuck_behind_a_long_answer() -> None:
    q = FairQueue(by_name)
    for i in range(1, 7):
        q.push(item(i, "alice"))  # a six-part answer
    q.push(item(7, "bob"))  # a one-liner, produced later
    order = [q.pop() for _ in range(7)]
    assert [(it.screen_name, it.id) for it in order if it][:3] == [
        ("alice", 1),
        ("bob", 7),
        ("alice", 2),
    ]


def test_a_requeued_part_goes_back_ahead_of_the_users_later_parts() -> None:
    q = FairQueue(by_name)
    for i in (1, 2, 3):
        q.push(item(i, "alice"))
    first = q.pop()
    assert first is not None and first.id == 1
    assert q.push(first)  # e.g. the session dropped before it was confirmed
    assert not q.push(first)  # already queued
    assert [q.pop().id for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]


def test_expiry_takes_replies_out_of_the_rotation() -> None:
    q = FairQueue(by_name)
    q.push(item(1, "alice", created=0.0))
    q.push(item(2, "bob", created=0.0))
    q.push(item(3, "bob", created=50.0))
    removed = q.remove_if(lambda it: it.created_at < 10)
    assert sorted(it.id for it in removed) == [1, 2]
    assert q.users == 1 and len(q) == 1
    assert [it.id for it in q.heads()] == [3]
    assert q.pop() == item(3, "bob", created=50.0)
    assert q.pop() is None
