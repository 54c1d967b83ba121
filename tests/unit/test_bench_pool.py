"""`python -m bench pool`: bench latency's ratio over several runs' --samples files.

The pooled figures must be the ratio of the pooled samples' percentiles, each run's own ratio
must be bench latency's, and a file that is not a --samples file must be refused with its name
and the reason, before anything is computed.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from bench import pool
from bench.cli import BenchError, parse_args
from bench.report import Report
from bench.stats import percentile


def write(path: Path, bot: list[list[float]], floor: list[list[float]]) -> Path:
    path.write_text(json.dumps({"echo": [[1.0]], "floor": floor, "bot": bot}), encoding="utf-8")
    return path


def pooled(*files: Path) -> Report:
    argv = ["pool", *(str(f) for f in files), "--resamples", "100"]
    return asyncio.run(pool.run(parse_args(argv), argv))


def test_pooled_ratio_is_taken_over_every_sample_of_every_run(tmp_path: Path) -> None:
    # Run a: the bot twice as slow at the top; run b: as fast as the bridge.
    bot_a, floor_a = [[float(i) for i in range(1, 101)]], [[i / 2 for i in range(1, 101)]]
    bot_b, floor_b = [[5.0] * 60, [6.0] * 40], [[5.0] * 50, [6.0] * 50]
    report = pooled(write(tmp_path / "a", bot_a, floor_a), write(tmp_path / "b", bot_b, floor_b))
    bot = [x for turn in bot_a + bot_b for x in turn]
    floor = [x for turn in floor_a + floor_b for x in turn]
    assert report.value("runs") == 2
    assert (report.value("bot_samples"), report.value("floor_samples")) == (200, 200)
    expected = percentile(bot, 99) / percentile(floor, 99)
    assert report.value("pooled_bot_over_floor_p99") == pytest.approx(expected)
    assert report.value("pooled_bot_over_floor_p50") == pytest.approx(
        percentile(bot, 50) / percentile(floor, 50)
    )
    low, high = (report.value(f"pooled_bot_over_floor_p99_{end}") for end in ("low", "high"))
    assert low <= high
    # Run a's own ratio is 2 (its bot twice the bridge everywhere), run b's is 1.
    assert report.value("runs_p99_ratio_max") == pytest.approx(2.0)
    assert report.value("runs_p99_ratio_min") == pytest.approx(1.0)
    assert report.value("runs_p99_ratio_sd") == pytest.approx(math.sqrt(0.5))
    assert report.value("runs_met") == 1  # only b is within 1.2
    verdicts = {t.key: met for t, met in report.verdicts()}
    assert verdicts == {"pooled_bot_over_floor_p99": expected <= 1.2}
    assert any(f"{tmp_path / 'a'} 2.000" in note for note in report.notes)


def test_each_run_shows_the_bridge_against_itself_in_alternate_turns(tmp_path: Path) -> None:
    floor = [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]
    run = pool.read_run(write(tmp_path / "turns", [[3.0, 4.0]], floor))
    assert run.floor_aa == pytest.approx(0.5)  # even turns twice as fast as odd ones
    assert pool.read_run(write(tmp_path / "one", [[3.0]], [[3.0, 4.0]])).floor_aa is None
    report = pooled(tmp_path / "turns", tmp_path / "one")
    assert any("(0.500)" in note and "(one turn)" in note for note in report.notes)


def test_one_run_pooled_is_that_run_and_has_no_spread(tmp_path: Path) -> None:
    bot, floor = [[2.0, 3.0, 9.0]], [[2.0, 3.0, 6.0]]
    report = pooled(write(tmp_path / "only", bot, floor))
    assert report.value("pooled_bot_over_floor_p99") == pytest.approx(
        percentile([2.0, 3.0, 9.0], 99) / percentile([2.0, 3.0, 6.0], 99)
    )
    assert report.value("runs_p99_ratio_min") == report.value("runs_p99_ratio_max")
    with pytest.raises(KeyError):
        report.value("runs_p99_ratio_sd")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", r"not a --samples file of bench latency: Expecting value"),
        (b"\xff\xfe", r"not a --samples file of bench latency"),
        (b"[1, 2]", r"expected a JSON object with \"bot\" and \"floor\", got a JSON list"),
        (b'{"bot": [[1.0]]}', r"'floor' must be a list of turns"),
        (b'{"bot": [1.0], "floor": [[1.0]]}', r"'bot' must be a list of turns"),
        (b'{"bot": [["1.0"]], "floor": [[1.0]]}', r"'bot' holds '1.0', not a latency"),
        (b'{"bot": [[true]], "floor": [[1.0]]}', r"'bot' holds True, not a latency"),
        (b'{"bot": [[NaN]], "floor": [[1.0]]}', r"'bot' holds nan, not a latency"),
        (b'{"bot": [[1.0]], "floor": [[-1]]}', r"'floor' holds -1, not a latency"),
        (b'{"bot": [[], []], "floor": [[1.0]]}', r"no 'bot' latencies"),
        (b"[" * 100_000, r"not a --samples file of bench latency"),
    ],
)
def test_a_file_that_is_not_a_samples_file_is_refused_by_name(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(BenchError, match=f"{path}.*{reason}"):
        pool.read_run(path)


def test_a_file_too_large_is_refused_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "MAX_FILE_BYTES", 100)
    path = write(tmp_path / "big.json", [[1.0] * 50], [[1.0] * 50])
    with pytest.raises(BenchError, match=r"big\.json is larger than 100 bytes"):
        pool.read_run(path)


def test_a_missing_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"cannot read .*absent\.json: No such file"):
        pool.read_run(tmp_path / "absent.json")


def test_a_file_named_twice_is_refused_before_it_counts_double(tmp_path: Path) -> None:
    path = write(tmp_path / "run.json", [[1.0]], [[1.0]])
    with pytest.raises(BenchError, match=r"named twice"):
        pool.read_runs([path, tmp_path / "." / "run.json"])


def test_pool_needs_at_least_one_file_and_enough_resamples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["pool"])
    with pytest.raises(SystemExit):
        parse_args(["pool", "x.json", "--resamples", "10"])
    assert "must be at least 100" in capsys.readouterr().err
