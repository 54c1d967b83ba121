"""AIM_THROTTLE=auto: the decision whether a rate class is enforced, from sends and notices."""

from __future__ import annotations

import logging

import pytest

from aimbot.oscar.ratelimit import DEFAULT_RATE_CLASSES, RateMeter, RateStatus, unlimited
from aimbot.oscar.throttle import Enforcement, ThrottleLearner, probe_target

IM_CLASS = DEFAULT_RATE_CLASSES[2]  # class 3: alert 5000, limit 4000, window 20


def burst(learner: ThrottleLearner, meter: RateMeter, start_ms: int, count: int) -> int:
    """Send `count` SNACs as fast as the learner allows; returns the time after the last."""
    now = start_ms
    for _ in range(count):
        now += learner.delay_ms(meter, now)
        status = meter.record(now)
        learner.sent(meter.rate_class.class_id, status, now)
    return now


def test_an_unproven_class_lets_a_burst_cross_the_alert_line_but_not_the_limit() -> None:
    learner = ThrottleLearner(grace_ms=10**9)  # no decision during this test
    meter = RateMeter(IM_CLASS, now_ms=0)
    burst(learner, meter, 0, 30)
    assert meter.level < IM_CLASS.alert_level  # an enforcing server would have sent an alert
    assert meter.level >= IM_CLASS.limit_level  # ... and dropped nothing
    assert probe_target(meter) == 4500


def test_alert_seen_the_class_is_enforced_and_paced_above_the_alert_line() -> None:
    learner = ThrottleLearner(grace_ms=5000)
    meter = RateMeter(IM_CLASS, now_ms=0)
    now = burst(learner, meter, 0, 5)
    learner.notice(3, 2)  # the alert
    assert learner.enforcement(3) is Enforcement.ENFORCED
    learner.check(now + 60_000)  # no later silence undoes what the server said
    assert learner.enforcement(3) is Enforcement.ENFORCED
    # Paced as AIM_THROTTLE=true paces: back above alert + margin before the next send.
    assert learner.delay_ms(meter, now) == meter.delay_ms(now)
    assert learner.delay_ms(meter, now) > 0


def test_alert_not_seen_within_grace_the_class_is_exempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.oscar.throttle")
    learner = ThrottleLearner(grace_ms=5000)
    meter = RateMeter(IM_CLASS, now_ms=0)
    crossed = burst(learner, meter, 0, 4)  # the 4th IM of a burst crosses the alert line
    assert meter.level < IM_CLASS.alert_level
    assert learner.enforcement(3) is Enforcement.UNKNOWN
    learner.check(crossed + 4999)  # a notice may still be on its way
    assert learner.enforcement(3) is Enforcement.UNKNOWN
    assert learner.delay_ms(meter, crossed + 5000) == 0  # grace over: not paced any more
    assert learner.enforcement(3) is Enforcement.EXEMPT
    burst(learner, meter, crossed + 5000, 50)  # sends as fast as it likes
    assert meter.level < IM_CLASS.limit_level
    said = [r.getMessage() for r in caplog.records if "does not enforce" in r.getMessage()]
    assert len(said) == 1 and "rate class 3" in said[0]


def test_a_notice_after_switching_off_puts_pacing_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.oscar.throttle")
    learner = ThrottleLearner(grace_ms=1000)
    meter = RateMeter(IM_CLASS, now_ms=0)
    now = burst(learner, meter, 0, 6)
    learner.check(now + 1000)
    assert learner.enforcement(3) is Enforcement.EXEMPT
    learner.notice(3, 1)  # "parameters changed" says nothing about enforcement
    assert learner.enforcement(3) is Enforcement.EXEMPT
    learner.notice(3, 3)  # limited: the server does enforce it after all
    assert learner.enforcement(3) is Enforcement.ENFORCED
    assert learner.delay_ms(meter, now + 1000) > 0
    assert "pacing it again" in caplog.text


def test_a_quiet_session_learns_nothing_and_classes_are_independent() -> None:
    learner = ThrottleLearner(grace_ms=1000)
    im = RateMeter(IM_CLASS, now_ms=0)
    other = RateMeter(DEFAULT_RATE_CLASSES[0], now_ms=0)
    now = 0
    for _ in range(10):  # one IM every 6 s never leaves the clear zone
        now += 6000
        learner.sent(3, im.record(now), now)
    learner.check(now + 100_000)
    assert learner.enforcement(3) is Enforcement.UNKNOWN
    burst(learner, im, now, 6)
    learner.check(now + 200_000)
    assert learner.enforcement(3) is Enforcement.EXEMPT
    assert learner.enforcement(1) is Enforcement.UNKNOWN
    assert learner.delay_ms(other, now) == 0  # a fresh class has room


def test_classes_without_thresholds_are_never_paced() -> None:
    learner = ThrottleLearner()
    meter = RateMeter(unlimited(IM_CLASS), now_ms=0, level=0)
    assert learner.delay_ms(meter, 0) == 0
    assert learner.delay_ms(None, 0) == 0
    learner.sent(None, RateStatus.ALERT, 0)  # a SNAC no class covers changes nothing
