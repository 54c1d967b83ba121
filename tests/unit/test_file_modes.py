"""Issue 13 item 7: state and logs hold every user's messages, so they are private to the bot's
account: DATA_DIR 0700, the SQLite file, its -wal, the lock file and LOG_FILE 0600.

Run under a permissive umask (022, the usual default) to show that the modes do not depend on
the entry point's umask, and on files an older version left world-readable.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimbot.store import LOCK_FILENAME, Reply, Store
from aimbot.utils.logger import setup_logging


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
async def test_a_new_data_dir_and_its_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = data / "aimbot.sqlite3"
    async with await Store.open(path) as store:
        await store.outbox_add("bob", Reply("written, so the -wal exists", False), 1.0)
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        assert mode(data) == 0o700
        assert mode(path) == 0o600
        assert mode(wal) == 0o600
        assert mode(data / LOCK_FILENAME) == 0o600


@pytest.mark.usefixtures("permissive_umask")
async def test_files_an_older_version_left_world_readable_are_made_private(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aimbot.sqlite3"
    async with await Store.open(path) as store:
        await store.outbox_add("bob", Reply("hi", False), 1.0)
    os.chmod(path, 0o644)
    os.chmod(tmp_path / LOCK_FILENAME, 0o644)
    async with await Store.open(path):
        assert mode(path) == 0o600
        assert mode(tmp_path / LOCK_FILENAME) == 0o600
        assert mode(path.with_name(path.name + "-wal")) == 0o600


@pytest.mark.usefixtures("permissive_umask")
def test_the_log_file_is_private_new_existing_and_after_rotation(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "aimbot.log"
    log_file.parent.mkdir()
    log_file.write_text("an old line\n")
    os.chmod(log_file, 0o644)
    try:
        setup_logging(log_file=log_file, max_bytes=1024, backup_count=2)
        assert mode(log_file) == 0o600
        for n in range(100):  # several rotations
            logging.getLogger("test.modes").warning("line %d %s", n, "x" * 50)
        rotated = sorted(log_file.parent.iterdir())
        assert len(rotated) == 3
        assert {mode(p) for p in rotated} == {0o600}
    finally:
        setup_logging(level="WARNING")


def test_the_cli_entry_sets_a_private_umask() -> None:
    from aimbot import cli

    old = os.umask(0o022)
    try:
        assert cli.main(["--help"]) == 0
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(old)
