"""Checkpoints happen off the event loop's thread, and the log stays bounded when they cannot.

Each test reads the database file on its own (a copy without its -wal): what is there was put
there by a checkpoint, never by a commit.
"""

import asyncio
import logging
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from aimbot import wal_checkpointer
from aimbot.store import SQLITE_AUTOCHECKPOINT, Reply, Store
from aimbot.wal_checkpointer import CheckpointResult, WalCheckpointer, database_uri

WAIT = 30.0  # generous for a loaded machine; the checkpoint thread looks every 0.01 s here
STALL = 2.5  # a disk stall longer than the 2 s the loop's connection used to wait for a lock


@pytest.fixture(autouse=True)
def quick_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wal_checkpointer, "CHECKPOINT_INTERVAL", 0.01)


def inbox_in_database_file(path: Path, tmp_path: Path) -> list[str]:
    """The inbox as the database file alone has it (its log left out)."""
    alone = tmp_path / "alone.db"
    shutil.copyfile(path, alone)
    db = sqlite3.connect(alone)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'inbox'").fetchall():
            return []  # not even the schema is copied yet
        return [str(row[0]) for row in db.execute("SELECT text FROM inbox ORDER BY id")]
    finally:
        db.close()


def the_checkpointer(store: Store) -> WalCheckpointer:
    checkpointer = store._checkpointer
    assert checkpointer is not None
    return checkpointer


async def store_im(store: Store, text: str) -> None:
    await store.inbox_add("bob", "Bob", text, 1.0)
    ticket = store.commit_ticket()
    if ticket is not None:
        await ticket


async def wait_until(checkpointer: WalCheckpointer, condition: Callable[[], bool]) -> None:
    """Until `condition` holds, looking again after each checkpoint attempt of the thread.

    The event is cleared before each look, so an attempt between the look and the wait is not
    missed; the bounded wait only covers the thread having nothing left to attempt.
    """
    async with asyncio.timeout(WAIT):
        while not condition():
            checkpointer.ran.clear()
            if not condition():
                await asyncio.to_thread(checkpointer.ran.wait, 0.1)


async def test_the_log_reaches_the_database_file_from_the_checkpoint_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        # The loop's connection never checkpoints by itself...
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        checkpointer = the_checkpointer(store)
        await store_im(store, "first")
        await store_im(store, "second")
        await wait_until(
            checkpointer, lambda: inbox_in_database_file(path, tmp_path) == ["first", "second"]
        )
        # ...so the copy was the thread's, while the store stayed open and usable.
        assert checkpointer.checkpoints >= 1
        await store_im(store, "third")
    assert inbox_in_database_file(path, tmp_path) == ["first", "second", "third"]


def wal_file(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def log_header(path: Path) -> bytes:
    """The log file's header. A new one (checkpoint sequence number, salts) marks a restarted
    log, which SQLite syncs: the write that restarts it pays an fdatasync."""
    return wal_file(path).read_bytes()[:32]


async def copied_then_stopped(store: Store) -> WalCheckpointer:
    """The store's checkpointer, once it has copied everything committed so far (and so begun
    the log's next round), then stopped: what follows is the loop's alone."""
    checkpointer = the_checkpointer(store)
    await wait_until(checkpointer, lambda: checkpointer.copied_up_to == store.commits)
    checkpointer.stop()
    return checkpointer


async def test_the_thread_restarts_a_copied_log_so_the_next_im_does_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        await store_im(store, "first")
        checkpointer = await copied_then_stopped(store)
        assert checkpointer.rounds_begun >= 1
        restarted = log_header(path)
        await store_im(store, "second")
        # The IM's commit went on in the thread's round: no new header, so no sync on the loop.
        # Without the thread's write, this commit would have restarted the copied log itself.
        assert log_header(path) == restarted
    assert inbox_in_database_file(path, tmp_path) == ["first", "second"]


async def test_a_log_grown_long_is_cut_back_when_the_thread_restarts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_checkpointer, "BEHIND_FRAMES", 64)
    path = tmp_path / "s.db"
    wal = wal_file(path)
    async with await Store.open(path) as store:
        for i in range(100):  # one turn, one transaction: about 200 pages
            await store.inbox_add(f"u{i}", "U", "long question " * 300, 1.0)
        grown: list[int] = []
        # Read inside the commit, before the thread can have copied and restarted the log.
        store.after_commit(lambda error: grown.append(wal.stat().st_size))
        ticket = store.commit_ticket()
        assert ticket is not None
        await ticket
        page_size = int(store._db.execute("PRAGMA page_size").fetchone()[0])
        assert grown[0] > 64 * page_size
        checkpointer = await copied_then_stopped(store)
        assert checkpointer.rounds_begun >= 1
        # The thread's write restarted the log, and cut its file back to the bound.
        assert wal.stat().st_size <= 64 * page_size


async def test_a_busy_loop_connection_keeps_the_restart_to_itself(tmp_path: Path) -> None:
    """The thread never waits for the loop's connection: while that one writes, the thread's
    write fails at once, nothing is counted, and the loop's commit restarts the log as before."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        the_checkpointer(store).stop()  # its own restarts would take the lock at any moment
        await store_im(store, "first")
        # A second checkpointer whose thread sleeps for the whole test: its connection is ours.
        quiet = WalCheckpointer(path, lambda: store.commits, interval=3600.0)
        quiet.start()
        try:
            assert quiet._db is not None
            assert quiet._db.execute("PRAGMA busy_timeout").fetchone()[0] == 0
            store._db.execute("BEGIN IMMEDIATE")  # the loop's connection holds the write lock
            quiet._begin_next_round()
            assert quiet.rounds_begun == 0
            store._db.execute("ROLLBACK")
            quiet._begin_next_round()  # the lock is free: the write goes through
            assert quiet.rounds_begun == 1
        finally:
            quiet.stop()


async def test_an_im_waits_out_a_slow_restart_by_the_thread_instead_of_failing(
    tmp_path: Path,
) -> None:
    """The thread's restart holds the log's write lock through a header sync; on a stalled
    disk that takes seconds, longer than SQLite's usual waits. Here another connection holds
    the lock for 2.5 s (the stall), and the IM's store waits for it and succeeds."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        holder = wal_checkpointer.connect(path)
        held = threading.Event()

        def stall() -> None:
            holder.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(STALL)  # the slow sync, not a synchronisation: the IM waits on the lock
            holder.execute("ROLLBACK")

        stalling = asyncio.create_task(asyncio.to_thread(stall))
        try:
            await asyncio.to_thread(held.wait, WAIT)
            await store_im(store, "kept despite the stall")
        finally:
            await stalling
            holder.close()
        assert [item.text for item in (await store.inbox_pending(2.0, 3600.0))[0]] == [
            "kept despite the stall"
        ]


async def test_closing_the_store_ends_the_checkpoint_thread(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    thread = the_checkpointer(store)._thread
    assert thread is not None and thread.is_alive()
    await store.close()
    assert not thread.is_alive()


async def test_a_look_from_outside_starts_no_checkpoint_thread(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db"):
        pass
    async with await Store.open(tmp_path / "s.db", owner=False) as look:
        assert look._checkpointer is None


async def read_inbox_from_another_process(path: Path) -> tuple[int, str]:
    """(exit code, stderr) of a plain sqlite3 reader of the file in a process of its own."""
    reader = (
        "import sqlite3, sys\n"
        "sqlite3.connect(sys.argv[1], timeout=0).execute('SELECT count(*) FROM inbox').fetchall()\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", reader, str(path), stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(WAIT):
        _, stderr = await process.communicate()
    return process.returncode or 0, stderr.decode()


async def test_another_process_cannot_open_the_file_while_the_store_has_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        await store_im(store, "mine")
        code, stderr = await read_inbox_from_another_process(path)
    assert code == 1
    assert "database is locked" in stderr
    # Once the store is closed, the same read works: the lock was the store's.
    assert await read_inbox_from_another_process(path) == (0, "")


async def test_a_failed_checkpoint_thread_hands_the_job_back_to_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        checkpointer = the_checkpointer(store)
        thread = checkpointer._thread
        assert thread is not None and checkpointer._db is not None
        real = checkpointer._db
        with caplog.at_level(logging.ERROR, logger="aimbot.wal_checkpointer"):
            checkpointer._db = cast(sqlite3.Connection, cast(Any, _Failing()))
            await store_im(store, "before")
            await wait_until(checkpointer, lambda: checkpointer.failed is not None)
        real.close()
        assert isinstance(checkpointer.failed, sqlite3.OperationalError)
        assert "SQLite's automatic checkpoints take over" in caplog.text
        await store_im(store, "after")  # the first commit after the failure notices it
        assert store._checkpointer is None
        assert not thread.is_alive()
        autocheckpoint = store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert autocheckpoint == SQLITE_AUTOCHECKPOINT
        await store_im(store, "still stored")
    async with await Store.open(path) as store:
        pending, _ = await store.inbox_pending(now=1.0, max_age=10.0)
        assert [p.text for p in pending] == ["before", "after", "still stored"]


async def test_a_log_the_thread_cannot_finish_is_copied_by_the_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        checkpointer = the_checkpointer(store)
        checkpointer.stop()  # no background copies: what reaches the file is the store's
        checkpointer.behind = True  # as step() reports a log too long to catch up with
        await store_im(store, "copied by the store")
        assert checkpointer.behind is False
        assert inbox_in_database_file(path, tmp_path) == ["copied by the store"]


async def test_a_flood_of_writes_keeps_the_log_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes every turn never leave the log still long enough to restart after a copy; the
    store's own copies (between two of its writes) must restart it."""
    monkeypatch.setattr(wal_checkpointer, "BEHIND_FRAMES", 64)
    path = tmp_path / "s.db"
    wal = wal_file(path)
    largest = 0
    async with await Store.open(path) as store:
        async with asyncio.timeout(WAIT):
            while store.loop_checkpoints < 3:
                ids = [
                    await store.inbox_add(f"u{i}", "U", "question " * 20, 1.0) for i in range(20)
                ]
                for inbox_id in ids:
                    await store.complete([inbox_id], "U", [Reply("answer " * 40, False)], 2.0)
                largest = max(largest, wal.stat().st_size)
        written = store.commits
    # Cut back to 64 pages on each restart; between restarts it grows by what a few turns write.
    assert largest <= 16 * 1024 * 1024, (largest, written)


def test_the_pace_follows_how_fast_the_log_grows(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(tmp_path / "s.db", lambda: 0, interval=1.0, behind_frames=4096)
    assert checkpointer._next_pause(10.0, complete=True) == 1.0  # a trickle: once a second
    assert checkpointer._next_pause(100_000.0, complete=True) == wal_checkpointer.RETRY_INTERVAL
    assert checkpointer._next_pause(8_192.0, complete=True) == pytest.approx(0.25)  # half: 2,048
    assert checkpointer._next_pause(10.0, complete=False) == wal_checkpointer.RETRY_INTERVAL


class _Failing:
    """A connection stand-in whose every statement fails as a broken disk makes them fail."""

    def execute(self, sql: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        pass


class _Reporting:
    """A connection stand-in whose checkpoint reports fixed frame counts."""

    def __init__(self, log_frames: int, copied_frames: int) -> None:
        self.row = (0, log_frames, copied_frames)

    def execute(self, sql: str) -> "_Reporting":
        assert sql == "PRAGMA wal_checkpoint(PASSIVE)"
        return self

    def fetchone(self) -> tuple[int, int, int]:
        return self.row

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("log_frames", "copied", "behind", "complete"),
    [
        (100, 100, False, True),  # copied whole: the log restarts
        (100, 40, False, False),  # behind, but short: the next look catches up
        (9_000, 8_000, True, False),  # long and not caught up: the store steps in
        # Copied, but long: writes kept the writer from restarting it, so the store steps in.
        (9_000, 9_000, True, True),
    ],
)
def test_step_reports_whether_the_log_is_behind(
    tmp_path: Path, log_frames: int, copied: int, behind: bool, complete: bool
) -> None:
    fake = _Reporting(log_frames, copied)
    checkpointer = WalCheckpointer(tmp_path / "s.db", lambda: 0, behind_frames=8_192)
    checkpointer._db = cast(sqlite3.Connection, cast(Any, fake))
    result = checkpointer.step()
    assert result == CheckpointResult(log_frames, copied)
    assert (result.complete, checkpointer.behind) == (complete, behind)
    assert checkpointer.checkpoints == int(complete)


@pytest.mark.parametrize("name", ["plain.db", "a?b#c%d.db", "with space.db"])
def test_the_uri_names_the_file_whatever_its_characters(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    db = sqlite3.connect(database_uri(path), uri=True)
    try:
        db.execute("CREATE TABLE t(x)")
    finally:
        db.close()
    assert path.is_file()
    assert "vfs=unix-excl" in database_uri(path)
