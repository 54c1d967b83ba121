"""``bench pool``: ``bench latency``'s bot-over-floor ratio over several runs, from their samples.

One run's `bot_over_floor_p99` rests on the 20 slowest of its 2,000 samples a path, and on a
shared machine those come from a few slow spells, each falling on one path's turn: runs of the
same code spread by about ±0.1 on a calm day and by far more on a noisy one (docs/benchmarks.md,
"Session 25" and "Session 26"). The ratio the code has is
better estimated from the samples of several runs pooled, and how often a single run shows the
target from the share of runs that met it on their own; this command gives both, from the files
that ``bench latency --samples FILE`` wrote, so that a pooled figure comes with a command line
instead of a one-off script. It measures nothing itself.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import BenchError
from bench.latency import BOT_OVER_FLOOR_P99_MAX, floor_aa
from bench.report import Figure, Report, Target, make_report
from bench.stats import percentile, ratio, ratio_interval

# A run of the default size writes about 150 KB; this bounds what one file may make us hold.
MAX_FILE_BYTES = 64 * 1024 * 1024
TARGETS = (Target("pooled_bot_over_floor_p99", "<=", BOT_OVER_FLOOR_P99_MAX),)


@dataclass(frozen=True)
class Run:
    """One run's latencies (ms) through the bot and through the bare bridge, and the bridge's
    ratio to itself in alternate turns (None with a single turn)."""

    path: Path
    bot: list[float]
    floor: list[float]
    floor_aa: float | None

    @property
    def p99_ratio(self) -> float:
        """The run's own bot_over_floor_p99, computed as bench latency computes it."""
        return ratio(percentile(self.bot, 99), percentile(self.floor, 99))


def read_run(path: Path) -> Run:
    """A --samples file of bench latency, checked: the error names the file and what is wrong."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise BenchError(f"cannot read {path}: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise BenchError(
            f"{path} is larger than {MAX_FILE_BYTES:,} bytes: not a --samples file of bench latency"
        )
    try:
        kept = json.loads(data)
    except (ValueError, RecursionError) as e:  # not UTF-8 or not JSON, or nested beyond reason
        raise BenchError(f"{path} is not a --samples file of bench latency: {e}") from e
    if not isinstance(kept, dict):
        raise BenchError(
            f"{path} is not a --samples file of bench latency: expected a JSON object with "
            '"bot" and "floor", got a JSON ' + type(kept).__name__
        )
    bot, floor = (_turns(path, kept, name) for name in ("bot", "floor"))
    return Run(path, _flat(bot), _flat(floor), floor_aa(floor))


def _flat(turns: list[list[float]]) -> list[float]:
    return [value for turn in turns for value in turn]


def _turns(path: Path, kept: dict[str, object], name: str) -> list[list[float]]:
    turns = kept.get(name)
    if not isinstance(turns, list) or not all(isinstance(turn, list) for turn in turns):
        raise BenchError(
            f"{path}: {name!r} must be a list of turns, each a list of latencies in ms"
        )
    checked: list[list[float]] = []
    for turn in turns:
        values: list[float] = []
        for value in turn:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise BenchError(
                    f"{path}: {name!r} holds {value!r}, not a latency (a finite number of ms >= 0)"
                )
            values.append(float(value))
        checked.append(values)
    if not any(checked):
        raise BenchError(f"{path}: no {name!r} latencies (the run measured nothing)")
    return checked


def read_runs(paths: Sequence[Path]) -> list[Run]:
    """Every file once: a file named twice would count its run double."""
    seen: dict[Path, Path] = {}
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            raise BenchError(f"{path} is named twice (as {seen[resolved]} before)")
        seen[resolved] = path
    return [read_run(path) for path in paths]


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    runs = read_runs(args.files)
    bot = [ms for one in runs for ms in one.bot]
    floor = [ms for one in runs for ms in one.floor]
    low, high = ratio_interval(bot, floor, 99, resamples=args.resamples)
    per_run = [one.p99_ratio for one in runs]
    met = sum(1 for value in per_run if TARGETS[0].met(value))
    figures = [
        Figure("runs", len(runs), "runs pooled"),
        Figure("bot_samples", len(bot), "bot path, samples"),
        Figure("floor_samples", len(floor), "bare bridge path, samples"),
        Figure(
            "pooled_bot_over_floor_p99",
            ratio(percentile(bot, 99), percentile(floor, 99)),
            "bot p99 / bare bridge p99, all runs' samples pooled",
        ),
        Figure("pooled_bot_over_floor_p99_low", low, "the same, 90 % bootstrap interval: low"),
        Figure("pooled_bot_over_floor_p99_high", high, "the same, 90 % bootstrap interval: high"),
        Figure(
            "pooled_bot_over_floor_p50",
            ratio(percentile(bot, 50), percentile(floor, 50)),
            "bot p50 / bare bridge p50, pooled",
        ),
        Figure(
            "runs_met",
            met,
            f"runs whose own bot_over_floor_p99 met <= {BOT_OVER_FLOOR_P99_MAX:g}",
        ),
        Figure("runs_p99_ratio_min", min(per_run), "lowest single run's bot_over_floor_p99"),
        Figure("runs_p99_ratio_max", max(per_run), "highest single run's bot_over_floor_p99"),
    ]
    if len(runs) > 1:
        figures.append(
            Figure("runs_p99_ratio_sd", statistics.stdev(per_run), "their standard deviation")
        )
    notes = [
        "per run, bot_over_floor_p99 (and floor_aa_p99, the bridge against itself: how far "
        "that run's ratio could move with no difference in code): "
        + ", ".join(
            f"{one.path} {value:.3f} ({_aa_text(one.floor_aa)})"
            for one, value in zip(runs, per_run, strict=True)
        ),
        f"interval: 90 % of {args.resamples:,} bootstrap resamples of the pooled samples; it "
        "treats them as independent, which a slow spell's several samples are not, so it is "
        "narrower than the spread between runs",
        "the runs' code, machine and date are those of the bench latency runs that wrote the "
        "files (their own JSON lines), not necessarily this checkout's",
        "bench latency's own target is per run (bot_over_floor_p99); pooled_bot_over_floor_p99 "
        "is the same ratio over every sample given",
    ]
    return make_report("pool", argv, figures, targets=TARGETS, notes=notes)


def _aa_text(value: float | None) -> str:
    return "one turn" if value is None else f"{value:.3f}"
