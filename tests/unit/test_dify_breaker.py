"""The circuit breaker's state machine, with a hand-moved clock."""

from __future__ import annotations

import pytest

from aimbot.api.breaker import Admission, CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read afresh each time (an assert on the property itself would narrow its type for good)."""
    return breaker.state


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        admission = breaker.admit()
        assert admission is not None
        breaker.record_failure(admission, RuntimeError("boom"))


def test_opens_after_threshold_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 30.0, Clock())
    fail(breaker, 2)
    assert state(breaker) == "closed"
    ok = breaker.admit()
    assert ok is not None
    breaker.record_success(ok)  # a success in between resets the count
    fail(breaker, 2)
    assert state(breaker) == "closed" and breaker.consecutive_failures == 2
    fail(breaker, 1)
    assert state(breaker) == "open"
    assert isinstance(breaker.last_failure, RuntimeError)


def test_open_circuit_fails_fast_until_the_cooldown_then_admits_one_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 30.0, clock)
    fail(breaker, 1)
    assert breaker.admit() is None
    assert breaker.retry_in() == pytest.approx(30.0)
    clock.now += 29.9
    assert state(breaker) == "open" and breaker.admit() is None
    clock.now += 0.1
    assert state(breaker) == "half_open" and breaker.retry_in() == 0.0
    probe = breaker.admit()
    assert probe is not None and probe.probe
    assert breaker.admit() is None  # only one probe at a time
    breaker.record_success(probe)
    assert state(breaker) == "closed"
    assert breaker.admit() == Admission(probe=False)


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 10.0, clock)
    fail(breaker, 2)
    clock.now += 10.0
    probe = breaker.admit()
    assert probe is not None and probe.probe
    clock.now += 3.0
    breaker.record_failure(probe, RuntimeError("still down"))
    assert state(breaker) == "open"
    assert breaker.retry_in() == pytest.approx(10.0)


def test_neutral_outcome_frees_the_probe_slot_without_a_verdict() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    fail(breaker, 1)
    clock.now += 5.0
    probe = breaker.admit()
    assert probe is not None
    breaker.record_neutral(probe)  # e.g. the probing call was cancelled
    assert state(breaker) == "half_open"
    assert breaker.admit() is not None


def test_late_failure_of_an_old_call_does_not_steal_the_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    old = breaker.admit()  # admitted while closed, finishes much later
    assert old is not None
    fail(breaker, 1)
    clock.now += 5.0
    probe = breaker.admit()
    assert probe is not None
    breaker.record_failure(old, RuntimeError("late"))
    assert state(breaker) == "half_open"
    assert breaker.admit() is None  # the probe is still the one in flight


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, cooldown, Clock())


def test_a_probe_stuck_on_a_hung_stream_is_superseded_after_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    fail(breaker, 1)
    clock.now += 10.0
    stuck = breaker.admit()
    assert stuck is not None and stuck.probe
    clock.now += 9.0
    assert breaker.admit() is None  # the probe is still within its cool-down
    clock.now += 1.0
    fresh = breaker.admit()
    assert fresh is not None and fresh.probe
    breaker.record_success(fresh)
    assert state(breaker) == "closed"
    # The old probe finally fails: an ordinary failure, not a re-opening of the circuit.
    breaker.record_failure(stuck, RuntimeError("hung stream ended"))
    assert state(breaker) == "open"  # threshold 1: one failure opens it, by the normal rule
    breaker2 = CircuitBreaker(3, 10.0, clock)
    fail(breaker2, 3)
    clock.now += 10.0
    old = breaker2.admit()
    clock.now += 10.0
    new = breaker2.admit()
    assert old is not None and new is not None
    breaker2.record_success(new)
    breaker2.record_failure(old, RuntimeError("late"))
    assert state(breaker2) == "closed" and breaker2.consecutive_failures == 1
