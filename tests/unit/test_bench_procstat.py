"""Reading RSS and CPU time from /proc text."""

import os

import pytest

from bench.procstat import (
    CpuTotals,
    ProcError,
    cpu_totals,
    parse_cpu_ticks,
    parse_cpu_totals,
    parse_vmrss,
    sample,
    steal_share,
)

STATUS = "Name:\tpython\nVmPeak:\t  300000 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n"


def test_vmrss_is_read_in_bytes() -> None:
    assert parse_vmrss(STATUS) == 51234 * 1024


def test_missing_vmrss_is_an_error_not_zero() -> None:
    with pytest.raises(ProcError, match="VmRSS"):
        parse_vmrss("Name:\tkthreadd\n")


def test_cpu_ticks_count_fields_after_the_last_parenthesis() -> None:
    # A command name with spaces and ")" must not shift the fields.
    fields = ["S", "1"] + ["0"] * 9 + ["150", "25"] + ["0"] * 10
    stat = "4242 (weird ) name) " + " ".join(fields)
    assert parse_cpu_ticks(stat) == 175


def test_truncated_stat_is_an_error() -> None:
    with pytest.raises(ProcError, match="fields"):
        parse_cpu_ticks("1 (x) S 0 0")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_own_process_has_plausible_figures() -> None:
    now = sample()
    assert now.rss_bytes > 1024 * 1024
    assert now.cpu_seconds > 0


def test_a_process_that_is_gone_is_reported() -> None:
    with pytest.raises(ProcError, match="cannot read"):
        sample(2**22 + 12345)


def test_cpu_totals_count_the_first_eight_fields_and_steal_is_the_eighth() -> None:
    text = "cpu  100 2 30 800 4 0 6 8 50 0\ncpu0 50 1 15 400 2 0 3 4 25 0\nintr 1\n"
    # guest (50) is already inside user: not counted twice
    assert parse_cpu_totals(text) == CpuTotals(total=100 + 2 + 30 + 800 + 4 + 0 + 6 + 8, steal=8)


@pytest.mark.parametrize(
    "text", ["", "cpu 1 2 3\n", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3 4 5 6 7 x\n"]
)
def test_an_unreadable_cpu_line_is_an_error_not_zero(text: str) -> None:
    with pytest.raises(ProcError, match="/proc/stat"):
        parse_cpu_totals(text)


def test_steal_share_is_the_stolen_part_of_the_time_between_readings() -> None:
    before, after = CpuTotals(total=1000, steal=10), CpuTotals(total=1400, steal=20)
    assert steal_share(before, after) == pytest.approx(10 / 400)
    assert steal_share(after, after) == 0.0  # no time passed: nothing was taken


def test_this_machine_s_cpu_totals_are_plausible() -> None:
    totals = cpu_totals()
    assert totals.total > 0 and 0 <= totals.steal <= totals.total
