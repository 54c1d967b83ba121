"""Reading RSS and CPU time from /proc text."""

import os

import pytest

from bench.procstat import ProcError, parse_cpu_ticks, parse_vmrss, sample

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
