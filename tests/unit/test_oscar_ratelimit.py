"""The rate model against the figures docs/oscar-protocol.md §6 gives for Open OSCAR Server's
table."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from aimbot.oscar.ratelimit import (
    DEFAULT_RATE_CLASSES,
    DEFAULT_RATE_GROUPS,
    RateClass,
    RateMeter,
    RateStatus,
    RateTable,
    classify,
    never_limits,
    next_level,
    paced_target,
    throttle_target,
    unlimited,
    wait_ms_for_level,
)

IM_CLASS = DEFAULT_RATE_CLASSES[2]  # class 3: 04/06 send IM
CLEAR, ALERT, LIMITED, DISCONNECT = (
    RateStatus.CLEAR,
    RateStatus.ALERT,
    RateStatus.LIMITED,
    RateStatus.DISCONNECT,
)


def statuses(meter: RateMeter, gaps_ms: list[int], start_ms: int = 0) -> list[RateStatus]:
    now = start_ms
    result = []
    for gap in gaps_ms:
        now += gap
        result.append(meter.record(now))
    return result


def test_back_to_back_ims_match_the_documented_sequence() -> None:
    # docs/oscar-protocol.md §6: IMs 1-3 clear, 4-7 alert, 8-13 dropped, the 14th disconnects.
    meter = RateMeter(IM_CLASS, 0)
    got = statuses(meter, [0] * 14)
    assert got == [CLEAR] * 3 + [ALERT] * 4 + [LIMITED] * 6 + [DISCONNECT]


def test_one_second_apart_the_tenth_is_dropped_and_the_eighteenth_disconnects() -> None:
    meter = RateMeter(IM_CLASS, 0)
    got = statuses(meter, [1000] * 18)
    assert LIMITED not in got[:9] and DISCONNECT not in got[:17]
    assert got[9] is LIMITED
    assert got[17] is DISCONNECT


def test_leaving_limited_needs_the_clear_level_after_a_26_second_gap() -> None:
    meter = RateMeter(IM_CLASS, 0)
    assert statuses(meter, [0] * 8)[-1] is LIMITED
    wait = wait_ms_for_level(IM_CLASS, meter.level, 0, IM_CLASS.clear_level)
    assert 26_000 < wait < 27_000  # doc: "needs one >= 26.4 s gap"
    almost = RateMeter(IM_CLASS, 0, meter.level)
    almost.limited = True
    assert almost.record(wait - 1) is LIMITED
    assert meter.record(wait) is CLEAR


def test_steady_pace_of_four_seconds_never_limits_and_five_never_alerts() -> None:
    four = RateMeter(IM_CLASS, 0)
    assert set(statuses(four, [4000] * 500)) <= {CLEAR, ALERT}
    five = RateMeter(IM_CLASS, 0)
    assert set(statuses(five, [5000] * 500)) == {CLEAR}


def test_dropped_snacs_still_lower_the_level() -> None:
    meter = RateMeter(IM_CLASS, 0)
    statuses(meter, [0] * 8)
    before = meter.level
    assert meter.record(0) is LIMITED
    assert meter.level < before


def test_level_never_exceeds_max_and_time_running_backwards_is_harmless() -> None:
    assert next_level(IM_CLASS, IM_CLASS.max_level, 10**9) == IM_CLASS.max_level
    assert next_level(IM_CLASS, 5000, -5000) == next_level(IM_CLASS, 5000, 0)


def test_a_zero_window_from_a_broken_server_does_not_divide_by_zero() -> None:
    broken = RateClass(9, 0, 10, 8, 6, 4, 20, 20)
    assert next_level(broken, 20, 5) == 5
    assert wait_ms_for_level(broken, 5, 0, 10) == 10


def test_classify_uses_clear_only_to_leave_limited() -> None:
    level = (IM_CLASS.alert_level + IM_CLASS.clear_level) // 2
    assert classify(IM_CLASS, level, was_limited=False) is CLEAR
    assert classify(IM_CLASS, level, was_limited=True) is LIMITED


def test_throttle_target_is_alert_plus_margin_capped_at_max() -> None:
    assert throttle_target(IM_CLASS) == IM_CLASS.alert_level + 100
    tight = RateClass(1, 20, 100, 95, 50, 10, 100, 100)
    assert throttle_target(tight) == 100


def test_rate_table_maps_snacs_to_classes_with_a_default() -> None:
    table = RateTable(DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS, 0)
    assert table.class_for(0x0004, 0x0006) == 3
    assert table.class_for(0x0004, 0x0014) == 1
    assert table.class_for(0x0099, 0x0001) == 1  # unlisted: the lowest class
    assert table.record(0x0004, 0x0006, 0) == (3, CLEAR)
    assert table.snapshot(3).current_level < IM_CLASS.max_level
    assert RateTable([], [], 0).record(4, 6, 0) == (None, CLEAR)


def test_rate_table_adopts_a_notice() -> None:
    table = RateTable(DEFAULT_RATE_CLASSES, DEFAULT_RATE_GROUPS, 0)
    lowered = RateClass(3, 20, 5100, 5000, 4000, 3000, 4100, 6000)
    table.adopt(lowered, 0)
    assert table.snapshot(3).current_level == 4100
    assert table.delay_ms(0x0004, 0x0006, 0) > 0
    table.adopt(RateClass(7, 10, 1, 1, 1, 1, 1, 1), 0)
    assert 7 in table.classes


@st.composite
def meters_in_any_state(draw: st.DrawFn) -> tuple[RateMeter, int]:
    # One bytes draw for all the numbers keeps the 10,000-example CI run fast.
    raw = struct.unpack(">BHHHHHHI", draw(st.binary(min_size=17, max_size=17)))
    window, *levels, now = raw
    disconnect, limit, alert, clear, top, current = [*sorted(levels[:5]), levels[5]]
    rate_class = RateClass(1, window % 100 + 1, clear, alert, limit, disconnect, top, top)
    return RateMeter(rate_class, 0, current % (top + 1)), now % 100_000


def test_a_class_without_thresholds_never_limits_and_never_delays() -> None:
    free = unlimited(IM_CLASS)
    assert never_limits(free) and not never_limits(IM_CLASS)
    assert (free.window, free.max_level) == (IM_CLASS.window, IM_CLASS.max_level)
    meter = RateMeter(free, 0, level=0)
    assert meter.delay_ms(0) == 0
    assert set(statuses(meter, [0] * 100)) == {CLEAR}


@given(meters_in_any_state())
def test_waiting_the_computed_delay_is_exactly_enough(state: tuple[RateMeter, int]) -> None:
    meter, now = state
    delay = meter.delay_ms(now)
    if never_limits(meter.rate_class):
        assert delay == 0
        return
    target = throttle_target(meter.rate_class)
    level, _ = meter.peek(now + delay)
    assert level >= target
    if delay > 0:
        earlier, _ = meter.peek(now + delay - 1)
        assert earlier < target


@given(meters_in_any_state(), st.integers(min_value=0, max_value=40))
def test_a_burst_of_the_budgeted_size_keeps_every_snac_at_or_above_the_target(
    state: tuple[RateMeter, int], most: int
) -> None:
    meter, now = state
    target = paced_target(meter.rate_class)
    count = meter.burst(now, target, most)
    if target is None:
        assert count == most
        return
    assert 0 <= count <= most
    assert (count > 0) == (most > 0 and meter.delay_ms(now) == 0)
    for _ in range(count):
        meter.record(now)
        assert meter.level >= target
    if count < most:
        assert meter.peek(now)[0] < target  # one more would have gone below it


def test_a_full_im_class_allows_a_burst_of_three_before_pacing() -> None:
    # From the max (6000), back to back: 5700, 5415, 5144 stay above alert + margin (5100);
    # the fourth would reach 4886.
    meter = RateMeter(IM_CLASS, 0)
    assert meter.burst(0, throttle_target(IM_CLASS), 32) == 3
    assert meter.burst(0, throttle_target(IM_CLASS), 2) == 2
    assert meter.burst(0, None, 32) == 32
