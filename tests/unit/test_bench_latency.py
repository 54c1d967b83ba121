"""bench latency's reading of its own noise: the bare bridge against itself (floor_aa_p99)."""

import math

import pytest

from bench.latency import aa_note


@pytest.mark.parametrize("floor_aa", [1.0, 1.2, 1 / 1.2, 0.9])
def test_a_bridge_steady_against_itself_is_said_to_be_so(floor_aa: float) -> None:
    assert "stayed within 1.2x" in aa_note(floor_aa)


@pytest.mark.parametrize("floor_aa", [1.21, 0.82, 3.5, 0.0, math.inf])
def test_a_bridge_that_moved_against_itself_flags_the_run_s_ratio(floor_aa: float) -> None:
    note = aa_note(floor_aa)
    assert "moved by more than the 1.2x" in note and "python -m bench pool" in note
