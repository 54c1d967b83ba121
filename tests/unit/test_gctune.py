"""The bot process's garbage-collector settings (aimbot/utils/gctune.py).

Run in a child interpreter: freezing the objects of the test process itself would keep every
test's garbage cycles alive until the session ends.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc
from aimbot.utils import gctune
before = gc.get_threshold()
gctune.tune_for_daemon()
after = gc.get_threshold()
print(before[0], after[0], after[1:] == before[1:], gc.get_freeze_count() > 0)
"""


def test_the_daemon_collects_its_young_generation_rarely_and_freezes_start_up_objects() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, after, rest_kept, frozen = result.stdout.split()
    assert int(before) == 700  # the interpreter's default: the child is a fresh process
    assert int(after) == 20_000
    assert rest_kept == "True" and frozen == "True"
