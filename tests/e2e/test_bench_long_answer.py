"""``bench latency``'s long-answer scenario at the smallest size, so that its code cannot rot.

Speed is not checked here (targets belong to the benchmark); only that it measures what it says:
three streamed parts, the first timed from the moment Dify wrote its text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bench import cli
from tests.helpers.ops import root_logging_restored


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """bench's main() quiets the aimbot loggers for its own output; give other tests them back."""
    aimbot_logger = logging.getLogger("aimbot")
    level = aimbot_logger.level
    with root_logging_restored():
        yield
    aimbot_logger.setLevel(level)


def test_latency_times_the_first_part_of_a_streamed_long_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["latency", "--users", "1", "--messages", "1", "--warmup", "0", "--think-ms", "0"]
    code = cli.main([*argv, "--long-answers", "1", "--long-pause", "0", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["long_answer_runs"] == 1
    assert 0 < report["time_to_first_part_ms"] <= report["part_after_text_ms_max"]
    assert "time_to_first_part_ms" in report["targets"]
