"""Every `python -m bench` runner, end to end at the smallest load, so that bench code cannot rot.

Each runs exactly as from the command line (the real bot process, devserver, Dify stand-in,
reference peers) and must print its table and a JSON line with its figures. Speed is not checked
here — targets belong to the benchmarks themselves — only that each runner measures what it says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import cli, pool
from bench.rig import ROOT
from bench.stats import alternate_turns_ratio, percentile
from tests.helpers.ops import root_logging_restored


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """bench's main() quiets the aimbot loggers for its own output; give other tests them back."""
    aimbot_logger = logging.getLogger("aimbot")
    level = aimbot_logger.level
    with root_logging_restored():
        yield
    aimbot_logger.setLevel(level)


def run_bench(
    argv: list[str], capsys: pytest.CaptureFixture[str], *, targets: bool = True
) -> dict[str, Any]:
    """Run one bench command with --json; its figures, after checking the table came too."""
    return run_bench_with_table(argv, capsys, targets=targets)[0]


def run_bench_with_table(
    argv: list[str], capsys: pytest.CaptureFixture[str], *, targets: bool = True
) -> tuple[dict[str, Any], str]:
    """run_bench, and the printed table (its notes explain a figure that went wrong)."""
    code = cli.main([*argv, "--json"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, f"exit code {code}\nstdout:\n{out}\nstderr:\n{captured.err}"
    *table, last = out.strip().splitlines()
    report: dict[str, Any] = json.loads(last)
    assert report["bench"] == argv[0]
    assert report["meta"]["command_line"] == "python -m bench " + " ".join([*argv, "--json"])
    assert any("targets:" in line for line in table) == targets
    for key, verdict in report["targets"].items():
        assert key in report and isinstance(verdict["met"], bool)
    return report, "\n".join(table)


def test_signon_reports_sign_on_times_and_intake_rate(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_bench(["signon", "--count", "2", "--flood", "200"], capsys)
    assert report["signons"] == 2
    assert 0 < report["signon_ms_p50"] <= report["signon_ms_max"]
    assert report["recv_im_per_s"] > 0
    assert set(report["targets"]) == {"signon_ms_p50", "recv_im_per_s"}


def test_latency_reports_all_paths_and_the_typing_users(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["latency", "--users", "2", "--messages", "2", "--warmup", "0", "--think-ms", "0"]
    long = ["--long-answers", "1", "--long-pause", "0"]
    samples = tmp_path / "samples.json"
    typing = ["--typing-users", "1", *long, "--samples", str(samples)]
    report = run_bench([*argv, "--rounds", "2", *typing], capsys)
    assert report["samples_per_path"] == 4
    kept = json.loads(samples.read_text(encoding="utf-8"))
    assert [len(kept[path]) for path in ("echo", "floor", "bot")] == [2, 2, 2]  # rounds
    assert report["floor_aa_p99"] == pytest.approx(
        alternate_turns_ratio(kept["floor"], 99), abs=2e-4
    )
    assert any(note.startswith("floor_aa_p99 ") for note in report["meta"]["notes"])
    assert 0 <= report["steal_pct"] <= 100
    bot = [ms for phase in kept["bot"] for ms in phase]
    assert len(bot) == 4
    assert report["bot_p50_ms"] == pytest.approx(percentile(bot, 50), rel=1e-3)
    # Where the ratio falls in its interval: tests/unit/test_bench_stats.py (4 samples say little).
    assert 0 < report["bot_over_floor_p99_low"] <= report["bot_over_floor_p99_high"]
    assert report["bot_p99_ms"] > 0 and report["floor_p99_ms"] > 0 and report["echo_p99_ms"] > 0
    assert report["bot_over_floor_p50"] == pytest.approx(
        report["bot_p50_ms"] / report["floor_p50_ms"], rel=1e-3
    )
    # CPU is read in 10 ms ticks: at this size either side may read 0 (a ratio of 0, or of
    # inf, which the JSON writes as null), so only its presence is checked here.
    assert "cpu_per_reply_over_floor" in report
    assert report["typing_samples"] == 2  # --messages lone IMs from the one typing user
    assert 0 <= report["typing_bursts_coalesced_pct"] <= 100  # coalescing: tests/e2e/test_typing
    assert report["typing_lone_to_query_ms_p50"] <= report["typing_lone_to_reply_ms_p50"]
    assert {"bot_over_floor_p99", "typing_lone_added_ms_p99"} <= set(report["targets"])
    # The long answer: three streamed parts, the first timed from Dify writing its text.
    assert report["long_answer_runs"] == 1
    assert 0 < report["time_to_first_part_ms"] <= report["part_after_text_ms_max"]
    assert "time_to_first_part_ms" in report["targets"]


def test_latency_in_slices_measures_every_path_while_the_users_loop_runs_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["latency", "--users", "2", "--messages", "3", "--warmup", "1", "--think-ms", "5"]
    samples = tmp_path / "samples.json"
    skip = ["--long-answers", "0", "--typing-users", "0"]
    report = run_bench([*argv, "--slice-ms", "50", *skip, "--samples", str(samples)], capsys)
    kept = json.loads(samples.read_text(encoding="utf-8"))
    for path in ("echo", "floor", "bot"):
        # Every path reached its quota (users x --messages), in slices of its own.
        assert sum(len(turn) for turn in kept[path]) >= 2 * 3
        assert len(kept[path]) >= 1
    assert report["samples_per_path"] == sum(len(turn) for turn in kept["bot"])
    if sum(1 for turn in kept["floor"] if turn) >= 2:  # the bridge against itself, turn by turn
        aa = alternate_turns_ratio(kept["floor"], 99)
        assert report["floor_aa_p99"] == pytest.approx(aa, abs=2e-4)
    else:
        assert "floor_aa_p99" not in report
    assert any("50 ms slices" in note for note in report["meta"]["notes"])
    assert report["bot_p99_ms"] > 0 and report["floor_p99_ms"] > 0 and report["echo_p99_ms"] > 0


def test_pool_gives_a_run_s_own_ratio_and_pools_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["latency", "--users", "2", "--messages", "3", "--warmup", "0", "--think-ms", "0"]
    skip = ["--long-answers", "0", "--typing-users", "0", "--slice-ms", "50"]
    runs = [tmp_path / "one.json", tmp_path / "two.json"]
    ratios = [
        run_bench([*argv, *skip, "--samples", str(path)], capsys)["bot_over_floor_p99"]
        for path in runs
    ]
    alone = run_bench(["pool", str(runs[0]), "--resamples", "100"], capsys)
    assert alone["pooled_bot_over_floor_p99"] == pytest.approx(ratios[0], abs=2e-4)
    both = run_bench(["pool", *map(str, runs), "--resamples", "100"], capsys)
    assert both["runs"] == 2 and both["bot_samples"] >= 2 * 2 * 3
    assert both["runs_p99_ratio_min"] == pytest.approx(min(ratios), abs=2e-4)
    assert both["runs_p99_ratio_max"] == pytest.approx(max(ratios), abs=2e-4)
    # Counted from the runs' own unrounded ratios: the JSON's are rounded to 4 places.
    exact = [pool.read_run(path).p99_ratio for path in runs]
    assert exact == pytest.approx(ratios, abs=2e-4)
    assert both["runs_met"] == sum(1 for r in exact if r <= 1.2)
    assert set(both["targets"]) == {"pooled_bot_over_floor_p99"}


def test_throughput_reports_the_bot_and_its_ratios_to_the_floor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["throughput", "--users", "2", "--seconds", "0.5", "--warmup-seconds", "0"]
    report = run_bench([*argv, "--rounds", "2"], capsys)
    assert report["replies"] > 0
    assert any("2 rounds of floor and bot, 0.25 s measured" in n for n in report["meta"]["notes"])
    assert report["throughput_ratio"] == pytest.approx(
        report["im_per_s"] / report["floor_im_per_s"], rel=1e-3
    )
    assert report["cpu_ratio"] > 0
    assert {"im_per_s", "throughput_ratio", "cpu_ratio"} == set(report["targets"])


def test_memory_reports_rss_per_user_and_drift(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["memory", "--users", "2", "--batch", "2", "--messages", "4", "--drift-users", "2"]
    report = run_bench(argv, capsys)
    assert report["rss_before_bytes"] > 0 and report["rss_end_bytes"] > 0
    assert report["messages_per_s"] > 0


def test_chaos_injects_faults_and_accounts_for_every_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["chaos", "--minutes", "0.1", "--users", "3", "--drain-seconds", "10"]
    report, table = run_bench_with_table([*argv, "--think-ms", "100", "--seed", "7"], capsys)
    assert report["seed"] == 7
    assert report["sent"] > 0
    # On failure, the table: its notes give each fault's outcome, the exit code, crash lines.
    assert report["faults_injected"] > 0, table
    assert report["crashes"] == 0, table


def test_parts_reports_the_loop_time_of_each_answer_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["parts", "--chars", "600", "--long-chars", "1200", "--repeat", "1"]
    report = run_bench([*argv, "--max-bytes", "200"], capsys)
    shapes = [key for key in report if key.startswith("ms_per_1k_chars_")]
    assert len(shapes) >= 5 and all(report[key] > 0 for key in shapes)
    assert report["worst_ms_per_1k_chars"] == max(report[key] for key in shapes)
    assert report["parts_linearity"] > 0 and report["worst_feed_ms"] > 0
    assert set(report["targets"]) == {"parts_linearity", "worst_feed_ms"}


def test_ratelimit_reports_waits_fairness_and_the_exempt_speedup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["ratelimit", "--users", "2", "--parts", "1", "--seconds", "1.5"]
    report = run_bench([*argv, "--exempt-seconds", "1"], capsys)
    assert 0 < report["fairness_jain"] <= 1
    assert report["ims_min_user"] <= report["ims_max_user"]
    assert report["ordinary_im_per_s"] > 0 and report["exempt_im_per_s"] > 0
    assert {"fairness_jain", "exempt_speedup"} <= set(report["targets"])


def test_duel_reports_both_bots_cpu_per_reply_over_shared_windows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Against this very checkout: the runner's plumbing, not a comparison.
    argv = ["duel", "--against", str(ROOT), "--users", "2", "--seconds", "0.6", "--windows", "2"]
    report = run_bench([*argv, "--warmup-seconds", "0"], capsys, targets=False)
    assert report["replies"] > 0 and report["other_replies"] > 0
    assert report["cpu_ratio_vs_other"] == pytest.approx(
        report["cpu_s_per_1k"] / report["other_cpu_s_per_1k"], rel=1e-3
    )
    assert report["window_ratio_min"] <= report["window_ratio_max"]
    assert report["targets"] == {}


def test_latency_duel_reports_both_bots_latency_from_alternating_users(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Against this very checkout: the runner's plumbing, not a comparison.
    argv = ["latency-duel", "--against", str(ROOT), "--users", "3", "--messages", "2"]
    report = run_bench([*argv, "--warmup", "1", "--think-ms", "0"], capsys, targets=False)
    assert report["samples"] == 3  # 6 messages, alternating: 3 for each bot
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    assert 0 < report["other_p50_ms"] <= report["other_p99_ms"]
    assert report["p99_ratio_vs_other"] == pytest.approx(
        report["p99_ms"] / report["other_p99_ms"], rel=1e-3
    )
    # /proc counts CPU in 10 ms ticks: three replies may not reach one.
    assert report["cpu_ms_per_msg"] >= 0 and report["other_cpu_ms_per_msg"] >= 0
    assert report["targets"] == {}


def test_latency_duel_against_the_floor_alternates_between_the_bot_and_the_bare_bridge(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["latency-duel", "--floor", "--users", "2", "--messages", "2"]
    report = run_bench([*argv, "--warmup", "1", "--think-ms", "0"], capsys, targets=False)
    assert report["samples"] == 2  # 4 messages, alternating: 2 for the bot, 2 for the bridge
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    assert 0 < report["other_p50_ms"] <= report["other_p99_ms"]
    assert report["p50_ratio_vs_other"] == pytest.approx(
        report["p50_ms"] / report["other_p50_ms"], rel=1e-3
    )
    assert any("the bare bridge" in note for note in report["meta"]["notes"])
    assert report["targets"] == {}


def test_duel_refuses_a_directory_that_is_not_a_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["duel", "--against", str(tmp_path)]) == 1
    assert "no main.py there" in capsys.readouterr().err
