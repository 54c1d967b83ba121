"""Percentile math the benchmark figures rest on."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import alternate_turns_ratio, percentile, ratio, ratio_interval, summarize


def test_median_of_odd_count_is_the_middle_value() -> None:
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0


def test_median_of_even_count_interpolates_between_the_middle_two() -> None:
    assert percentile([1.0, 2.0, 3.0, 10.0], 50) == 2.5


def test_p95_of_twenty_values_interpolates_near_the_top() -> None:
    values = [float(v) for v in range(1, 21)]  # rank = 19 * 0.95 = 18.05
    assert percentile(values, 95) == pytest.approx(19.05)


def test_extremes_are_min_and_max() -> None:
    values = [4.0, -2.0, 9.5]
    assert percentile(values, 0) == -2.0
    assert percentile(values, 100) == 9.5


def test_single_value_is_every_percentile() -> None:
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("q", [-1.0, 100.5, math.nan])
def test_out_of_range_percentile_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], q)


def test_no_values_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="no values"):
        summarize([])


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentiles_are_monotonic_and_within_range(
    values: list[float], a: float, b: float
) -> None:
    low, high = sorted((a, b))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


def test_summary_orders_its_figures() -> None:
    s = summarize([float(v) for v in range(100)])
    assert s.count == 100
    assert s.mean == pytest.approx(49.5)
    assert s.p50 < s.p95 < s.p99 <= s.max == 99.0


def test_ratio_never_divides_by_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) == math.inf
    assert ratio(0.0, 0.0) == 1.0


def _exponential(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.expovariate(1.0) for _ in range(count)]


def test_ratio_interval_of_constant_samples_is_the_ratio_itself() -> None:
    assert ratio_interval([3.0] * 50, [2.0] * 80, 99, resamples=50) == (1.5, 1.5)


def test_ratio_interval_holds_the_ratio_of_the_samples_themselves() -> None:
    bot, floor = _exponential(2_000, 1), _exponential(2_000, 2)
    low, high = ratio_interval(bot, floor, 99, resamples=300)
    assert low < percentile(bot, 99) / percentile(floor, 99) < high


def test_ratio_interval_narrows_as_samples_grow() -> None:
    """The point of it: a p99 of few samples is known only roughly."""
    few = ratio_interval(_exponential(200, 3), _exponential(200, 4), 99, resamples=200)
    many = ratio_interval(_exponential(5_000, 3), _exponential(5_000, 4), 99, resamples=200)
    assert many[1] - many[0] < (few[1] - few[0]) / 3


def test_ratio_interval_is_the_same_for_the_same_samples() -> None:
    bot, floor = _exponential(500, 5), _exponential(500, 6)
    assert ratio_interval(bot, floor, 99, resamples=100) == ratio_interval(
        bot, floor, 99, resamples=100
    )


@pytest.mark.parametrize(
    ("numerator", "denominator", "options"),
    [
        ([], [1.0], {}),
        ([1.0], [], {}),
        ([1.0], [1.0], {"resamples": 0}),
        ([1.0], [1.0], {"coverage": 1.0}),
        ([1.0], [1.0], {"coverage": 0.0}),
    ],
)
def test_ratio_interval_refuses_what_it_cannot_compute(
    numerator: list[float], denominator: list[float], options: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        ratio_interval(numerator, denominator, 99, **options)  # type: ignore[arg-type]


def test_alternate_turns_ratio_sets_even_turns_against_odd_ones() -> None:
    # Turns 0 and 2 are twice as fast as turns 1 and 3, at every percentile; empty turns are
    # skipped, so the alternation is between turns that answered something.
    turns = [[1.0, 2.0, 3.0], [], [2.0, 4.0, 6.0], [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]
    assert alternate_turns_ratio(turns, 99) == pytest.approx(0.5)
    assert alternate_turns_ratio(turns, 50) == pytest.approx(0.5)
    assert alternate_turns_ratio([[5.0], [5.0]], 99) == 1.0


@pytest.mark.parametrize("turns", [[], [[1.0, 2.0]], [[1.0], [], []]])
def test_alternate_turns_ratio_needs_two_turns_with_samples(turns: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="at least two turns"):
        alternate_turns_ratio(turns, 99)
