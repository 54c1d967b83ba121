"""Argument parsing of `python -m bench`: defaults from the issue, bad values refused clearly."""

from pathlib import Path

import pytest

from aimbot.bot.bot import BotOptions
from bench.cli import COMMANDS, BenchError, parse_args
from bench.latency import open_samples
from bench.rig import dify_concurrency
from bench.throughput import measured_seconds


def test_latency_takes_the_issue_s_command_line() -> None:
    args = parse_args(["latency", "--json", "--users", "100", "--dify-ms", "0"])
    assert args.command == "latency"
    assert args.json is True
    assert args.users == 100
    assert args.dify_ms == 0.0


def test_defaults_match_the_issue() -> None:
    assert parse_args(["signon"]).count == 20
    assert parse_args(["latency"]).users == 100
    memory = parse_args(["memory"])
    assert (memory.users, memory.messages) == (10_000, 100_000)
    assert parse_args(["chaos", "--minutes", "2"]).minutes == 2.0
    # These need more: the other side (--against or --floor), or the files to pool.
    need_more = {"duel", "latency-duel", "pool"}
    assert all(parse_args([c]).json is False for c in COMMANDS if c not in need_more)
    duel = parse_args(["duel", "--against", "."])
    assert (duel.users, duel.seconds, duel.windows, duel.json) == (200, 40.0, 8, False)
    lat = parse_args(["latency-duel", "--against", "."])
    assert (lat.users, lat.messages, lat.warmup, lat.think_ms) == (100, 30, 4, 1000.0)
    assert lat.floor is False
    floor = parse_args(["latency-duel", "--floor"])
    assert (floor.floor, floor.against) == (True, None)


def test_issue_15_options_default_to_the_full_measurement() -> None:
    assert parse_args(["signon"]).flood == 20_000
    assert parse_args(["latency"]).typing_users == 20
    assert parse_args(["latency", "--typing-users", "0"]).typing_users == 0
    assert parse_args(["throughput"]).no_floor is False
    assert parse_args(["throughput", "--no-floor"]).no_floor is True


def test_the_paths_compared_take_turns_by_default() -> None:
    assert parse_args(["latency"]).rounds is None  # slices, not phases
    assert parse_args(["latency"]).slice_ms == 250.0
    assert parse_args(["latency", "--rounds", "4"]).rounds == 4
    assert parse_args(["throughput"]).rounds == 10
    assert parse_args(["throughput", "--rounds", "1"]).rounds == 1


def test_throughput_measures_longer_when_the_bot_takes_turns_with_the_floor() -> None:
    assert measured_seconds(parse_args(["throughput"])) == 50.0  # 10 rounds of 5 s
    assert measured_seconds(parse_args(["throughput", "--no-floor"])) == 15.0
    assert measured_seconds(parse_args(["throughput", "--peer", "echo"])) == 15.0
    assert measured_seconds(parse_args(["throughput", "--seconds", "7"])) == 7.0


@pytest.mark.parametrize(
    ("messages", "rounds", "sizes"),
    [(20, 4, [5, 5, 5, 5]), (10, 4, [3, 3, 2, 2]), (2, 4, [1, 1]), (7, 1, [7])],
)
def test_latency_rounds_share_the_messages_and_none_is_empty(
    messages: int, rounds: int, sizes: list[int]
) -> None:
    from bench.latency import round_sizes

    assert round_sizes(messages, rounds) == sizes


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["latency", "--users", "0"], "must be at least 1"),
        (["latency", "--rounds", "0"], "must be at least 1"),
        (["latency", "--slice-ms", "0"], "must be a finite number > 0"),
        (["latency", "--slice-ms", "10", "--rounds", "2"], "not allowed with argument"),
        (["throughput", "--rounds", "0"], "must be at least 1"),
        (["latency", "--users", "many"], "not a whole number"),
        (["latency", "--dify-ms", "-1"], "must be a finite number >= 0"),
        (["chaos", "--minutes", "0"], "must be a finite number > 0"),
        (["chaos", "--minutes", "inf"], "must be a finite number > 0"),
        (["signon", "--count", "1"], "must be at least 2"),
        (["latency-duel"], "one of the arguments --against --floor is required"),
        (["latency-duel", "--floor", "--against", "."], "not allowed with argument"),
    ],
)
def test_bad_values_are_refused_with_the_reason(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    assert "COMMAND" in capsys.readouterr().err


def test_bot_env_overrides_collect_in_order() -> None:
    args = parse_args(
        ["throughput", "--bot-env", "DIFY_RESPONSE_MODE=blocking", "--bot-env", "LOG_FILE="]
    )
    assert args.bot_env == [("DIFY_RESPONSE_MODE", "blocking"), ("LOG_FILE", "")]
    assert parse_args(["memory"]).bot_env == []


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("DIFY_API_URL=http://example.invalid", "set by the bench rig"),
        ("AIM_PASSWORD=x", "set by the bench rig"),
        ("lower=1", "upper-case NAME"),
        ("NO_EQUALS_SIGN", "NAME=VALUE"),
        ("DIFY_MAX_CONCURRENCY=many", "whole number of at least 1, got 'many'"),
        ("DIFY_MAX_CONCURRENCY=0", "whole number of at least 1, got '0'"),
        ("DIFY_MAX_CONCURRENCY=\u00b2", "whole number of at least 1"),
    ],
)
def test_bot_env_cannot_point_the_bot_away_from_the_rig(
    setting: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["latency", "--bot-env", setting])
    assert complaint in capsys.readouterr().err


def test_the_floor_takes_the_bots_cap_on_dify_requests_or_the_bots_default() -> None:
    args = parse_args(["throughput", "--bot-env", "DIFY_MAX_CONCURRENCY=12"])
    assert dify_concurrency(dict(args.bot_env)) == 12
    assert dify_concurrency({}) == BotOptions.dify_max_concurrency


def test_a_samples_file_that_cannot_be_written_fails_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"--samples: cannot write .*nowhere.*samples\.json"):
        open_samples(tmp_path / "nowhere" / "samples.json")
