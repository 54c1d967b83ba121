"""The ratelimit bench's own math and arguments."""

from __future__ import annotations

import pytest

from bench.cli import parse_args
from bench.ratelimit import UserLog, in_window, jain


def test_jain_is_one_for_equal_shares_and_one_over_n_for_a_monopoly() -> None:
    assert jain([5, 5, 5, 5]) == 1.0
    assert jain([8, 0, 0, 0]) == pytest.approx(0.25)
    # 4-IM answers against 1-IM answers shared by arrival order: the long ones hog the budget.
    assert jain([4, 1, 4, 1, 4, 1]) == pytest.approx(0.735, abs=0.001)
    assert jain([0, 0]) == 1.0


def test_only_arrivals_inside_the_window_count() -> None:
    log = UserLog(arrivals=[0.5, 1.0, 2.0, 3.0])
    assert in_window(log, 1.0, 3.0) == 2


def test_arguments() -> None:
    args = parse_args(["ratelimit", "--users", "4", "--parts", "3", "--seconds", "30"])
    assert (args.users, args.parts, args.seconds, args.exempt_seconds) == (4, 3, 30.0, 10.0)
    with pytest.raises(SystemExit):
        parse_args(["ratelimit", "--users", "1"])
