import random
from typing import Required, TypedDict

import pytest

from aimbot.utils.backoff import Backoff


def test_full_jitter_stays_within_growing_ceiling() -> None:
    backoff = Backoff(0.5, 8.0, rng=random.Random(1))
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for ceiling in ceilings:
        assert backoff.ceiling() == ceiling
        delay = backoff.next_delay()
        assert 0 <= delay <= ceiling
    assert backoff.attempts == len(ceilings)


def test_equal_jitter_never_below_half_the_ceiling() -> None:
    backoff = Backoff(1.0, 300.0, jitter="equal", rng=random.Random(2))
    for _ in range(50):
        ceiling = backoff.ceiling()
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling


def test_reset_starts_over_from_base() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    assert backoff.ceiling() == 32.0
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.ceiling() == 1.0


def test_huge_attempt_counts_do_not_overflow() -> None:
    backoff = Backoff(1.0, 300.0)
    assert backoff.ceiling(10_000) == 300.0


class BackoffArgs(TypedDict, total=False):
    base: Required[float]
    cap: Required[float]
    factor: float


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0, "cap": 1}, "base must be > 0"),
        ({"base": 2, "cap": 1}, "must be >= base"),
        ({"base": 1, "cap": 2, "factor": 0.5}, "factor must be >= 1"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(
    kwargs: BackoffArgs, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
