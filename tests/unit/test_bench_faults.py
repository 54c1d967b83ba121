"""Shape of the chaos fault schedule."""

from collections import Counter

import pytest

from bench.faults import ONCE, WEIGHTS, plan_faults


def test_same_seed_same_schedule() -> None:
    assert plan_faults(42, 120) == plan_faults(42, 120)
    assert plan_faults(42, 120) != plan_faults(43, 120)


@pytest.mark.parametrize("seed", range(20))
def test_two_minutes_plan_enough_faults_and_each_one_off_exactly_once(seed: int) -> None:
    plan = plan_faults(seed, 120)
    kinds = Counter(f.kind for f in plan)
    assert len(plan) >= 25
    assert all(kinds[k] == 1 for k in ONCE)
    assert set(kinds) <= set(WEIGHTS) | set(ONCE)
    times = [f.at for f in plan]
    assert times == sorted(times)
    assert all(0 < t < 120 for t in times)
    duplicate = next(f for f in plan if f.kind == "duplicate_login")
    kill = next(f for f in plan if f.kind == "bot_sigkill")
    assert duplicate.at < 60 < kill.at


def test_stalls_stay_below_the_bot_s_dead_session_detection() -> None:
    stalls = [f for s in range(50) for f in plan_faults(s, 120) if f.kind == "oscar_stall"]
    assert stalls
    assert all(1000 <= f.size <= 4000 for f in stalls)


def test_nonsense_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="> 0"):
        plan_faults(1, 0)
