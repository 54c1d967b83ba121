"""The report plumbing: table for people, JSON object on the last line for scripts."""

import io
import json
from pathlib import Path

import pytest

from bench.report import (
    Figure,
    Machine,
    Op,
    Report,
    Target,
    emit,
    make_report,
    parse_cpu_model,
    source_revision,
)

MACHINE = Machine(nproc=2, cpu_model="Test CPU 9000", python="3.11.7", platform="Linux x86_64")


def _report(value: float, *, bound: float = 50) -> Report:
    return make_report(
        "signon",
        ["signon", "--json", "--count", "3"],
        [Figure("signon_ms_p50", value, "sign-on, median", "ms"), Figure("signons", 3, "n")],
        targets=[Target("signon_ms_p50", "<=", bound)],
        notes=["a note"],
        machine=MACHINE,
        date="2026-01-02T03:04:05+00:00",
        revision="abc1234",
    )


def test_json_is_the_last_line_and_carries_figures_targets_and_provenance() -> None:
    out = io.StringIO()
    emit(_report(12.5), with_json=True, out=out)
    last = out.getvalue().rstrip("\n").splitlines()[-1]
    payload = json.loads(last)
    assert payload["bench"] == "signon"
    assert payload["signon_ms_p50"] == 12.5
    assert payload["signons"] == 3
    assert payload["targets"]["signon_ms_p50"] == {"target": "<= 50", "met": True}
    assert payload["all_targets_met"] is True
    meta = payload["meta"]
    assert meta["command_line"] == "python -m bench signon --json --count 3"
    assert meta["date"] == "2026-01-02T03:04:05+00:00"
    assert meta["machine"]["cpu_model"] == "Test CPU 9000"
    assert meta["machine"]["nproc"] == 2
    assert meta["revision"] == "abc1234"


def test_without_json_nothing_but_the_table_is_printed() -> None:
    out = io.StringIO()
    emit(_report(12.5), with_json=False, out=out)
    text = out.getvalue()
    assert "{" not in text
    assert "python -m bench signon --json --count 3" in text
    assert "2 × Test CPU 9000, Python 3.11.7" in text
    assert "[signon_ms_p50]" in text
    assert "code:    abc1234" in text


def test_revision_names_a_commit_or_says_it_cannot(tmp_path: Path) -> None:
    assert source_revision(tmp_path) == "unknown (not a git checkout)"
    here = source_revision()
    assert here.startswith("unknown") or len(here.split()[0]) >= 7


def test_missed_target_is_shown_and_reported() -> None:
    out = io.StringIO()
    emit(_report(80.0), with_json=True, out=out)
    text = out.getvalue()
    assert "MISSED signon_ms_p50 <= 50 (measured 80.0)" in text
    payload = json.loads(text.splitlines()[-1])
    assert payload["targets"]["signon_ms_p50"]["met"] is False
    assert payload["all_targets_met"] is False


def test_undefined_figures_become_null_not_invalid_json() -> None:
    report = make_report(
        "latency",
        ["latency"],
        [Figure("overhead_ratio_p99", float("inf"), "ratio")],
        targets=[Target("overhead_ratio_p99", "<=", 1.5)],
        machine=MACHINE,
    )
    out = io.StringIO()
    emit(report, with_json=True, out=out)
    payload = json.loads(out.getvalue().splitlines()[-1])
    assert payload["overhead_ratio_p99"] is None
    assert payload["targets"]["overhead_ratio_p99"]["met"] is False


def test_a_target_on_an_unmeasured_figure_is_a_bug() -> None:
    with pytest.raises(ValueError, match="not measured"):
        make_report("x", [], [Figure("a", 1, "a")], targets=[Target("b", "==", 0)])


def test_duplicate_figure_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        make_report("x", [], [Figure("a", 1, "a"), Figure("a", 2, "again")])


@pytest.mark.parametrize(
    ("op", "bound", "value", "met"),
    [
        ("<=", 5, 5, True),
        ("<", 5, 5, False),
        (">=", 20, 20, True),
        (">", 20, 20, False),
        ("==", 0, 0, True),
        ("==", 0, 1, False),
        ("<=", 5, float("nan"), False),
    ],
)
def test_target_comparisons(op: Op, bound: float, value: float, met: bool) -> None:
    assert Target("k", op, bound).met(value) is met


def test_cpu_model_comes_from_the_first_model_name_line() -> None:
    text = "processor\t: 0\nvendor_id\t: X\nmodel name\t: AMD EPYC 7B13\n\nmodel name\t: other\n"
    assert parse_cpu_model(text) == "AMD EPYC 7B13"
    assert parse_cpu_model("processor : 0\n") == "unknown"
