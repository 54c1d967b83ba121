"""RepeatFilter: an IM seen before (same sender, same cookie) is recognised; memory is bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.repeats import RepeatFilter


def test_the_same_cookie_from_the_same_sender_is_a_repeat() -> None:
    seen = RepeatFilter()
    assert not seen.is_repeat("Aim Bot", b"12345678")
    assert seen.is_repeat("aimbot", b"12345678")  # screen names compare normalised
    assert not seen.is_repeat("aimbot", b"87654321")
    assert not seen.is_repeat("someone else", b"12345678")  # cookies are per sender


def test_the_oldest_are_forgotten_first() -> None:
    seen = RepeatFilter(capacity=2)
    for cookie in (b"a", b"b", b"c"):
        assert not seen.is_repeat("bot", cookie)
    assert len(seen) == 2
    assert seen.is_repeat("bot", b"c")
    assert not seen.is_repeat("bot", b"a")  # evicted, so no longer recognised


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RepeatFilter(capacity=0)


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.binary(min_size=1, max_size=2))))
def test_with_room_for_everything_a_repeat_is_exactly_a_pair_seen_before(
    events: list[tuple[str, bytes]],
) -> None:
    seen = RepeatFilter(capacity=len(events) + 1)
    before: set[tuple[str, bytes]] = set()
    for sender, cookie in events:
        assert seen.is_repeat(sender, cookie) == ((sender, cookie) in before)
        before.add((sender, cookie))
