"""Percentiles and summaries, written out so that the math the figures rest on is testable."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

# Bootstrap resamples behind ratio_interval by default: about a second for 2 × 2,000 samples.
RESAMPLES = 1000


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between closest ranks.

    This is the common "type 7" definition (numpy's default), so figures can be checked with
    any spreadsheet; with few samples a high percentile is close to the maximum, not above it.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("summary of no values")
    return Summary(
        count=len(values),
        mean=sum(values) / len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=float(max(values)),
    )


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or inf when the denominator is 0 (a ratio never divides by 0)."""
    if denominator == 0:
        return math.inf if numerator else 1.0
    return numerator / denominator


def ratio_interval(
    numerator: Sequence[float],
    denominator: Sequence[float],
    q: float,
    *,
    resamples: int = RESAMPLES,
    coverage: float = 0.9,
    seed: int = 0,
) -> tuple[float, float]:
    """A bootstrap interval for percentile(numerator, q) / percentile(denominator, q).

    Both samples are drawn again with replacement `resamples` times, and the interval holds
    `coverage` of the ratios so found. It is the sampling noise of the ratio alone (a p99 of
    2,000 samples is the 20th-worst, and moves with which few landed there), not the machine's
    drift between the turns that produced the samples, which comes on top. Seeded, so the same
    samples always give the same interval.
    """
    if not numerator or not denominator:
        raise ValueError("an interval needs samples on both sides")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be within (0, 1), got {coverage}")
    rng = random.Random(seed)
    ratios = sorted(
        ratio(
            percentile(rng.choices(numerator, k=len(numerator)), q),
            percentile(rng.choices(denominator, k=len(denominator)), q),
        )
        for _ in range(resamples)
    )
    tail = (1 - coverage) / 2 * 100
    return percentile(ratios, tail), percentile(ratios, 100 - tail)


def alternate_turns_ratio(turns: Sequence[Sequence[float]], q: float) -> float:
    """percentile(q) of one path's even-numbered turns over that of its odd-numbered turns.

    The same program on both sides, at moments interleaved as closely as the turns are: what a
    ratio of two paths' percentiles can move by in that run with no difference in code at all
    (an A/A comparison, on half the samples a side). Turns without samples are skipped.
    """
    filled = [turn for turn in turns if turn]
    even = [value for turn in filled[0::2] for value in turn]
    odd = [value for turn in filled[1::2] for value in turn]
    if not even or not odd:
        raise ValueError("an alternate-turns ratio needs at least two turns with samples")
    return ratio(percentile(even, q), percentile(odd, q))
