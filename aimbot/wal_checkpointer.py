"""Copies the state file's write-ahead log into the database from a thread of its own.

Why a thread: SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold,
on the event loop's thread, and ends with an fdatasync of the log and of the database file. On
the bench machine that stalled the loop for about 3 ms once a second at 80 IMs/s, and the
message whose commit triggered it waited the whole time: those stalls were the bot's p99
(docs/benchmarks.md, "Session 7"). Here a second connection checkpoints while the loop's
connection goes on writing.

The log's next round begins here too. The first write after a log was copied whole starts it
again from the top, and SQLite syncs its new header then (an fdatasync: 0.5 ms on the bench
machine's disk, several on a slow volume). Left to the loop, that write was the next IM's, so
at a few IMs a minute nearly every IM waited for it. This thread makes that write itself, right
after a complete copy: it rewrites the database header's user_version with its own value (one
page). If the loop's connection is writing just then, it does not wait, and the loop's next
write begins the round as before (docs/benchmarks.md, "Session 18").

Both connections open the file through SQLite's "unix-excl" VFS (see `database_uri`): the file
stays locked against every other process, as one process owns a data directory, and the log's
index lives in this process's heap, shared by the two connections, so a transaction costs no
shared-memory locking.

If checkpointing here fails, the store hands the job back to SQLite's automatic checkpoints
(`failed`); if the log grows past `behind_frames` because writes never pause long enough for it
to restart, the store copies the rest on its own thread (`behind`), which is short, as this
thread has copied the bulk. Either way the log stays bounded.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Seconds between looks at the log. SQLite's own default checkpoints every ~1,000 pages; at the
# bench's 80 IMs/s (8 pages each) that is about once a second, and the log stays as small.
CHECKPOINT_INTERVAL = 1.0
# Seconds to the next look when the last copy could not finish (writes kept coming).
RETRY_INTERVAL = 0.05
# Frames (pages) in the log past which the store is asked to copy the rest itself: under a
# flood of writes the log never restarts (measured: 1.8 GB after 8 s of a write flood, 90 MB in
# `bench throughput`, without this bound). Also the size, in 4 KiB pages, to which a longer log
# file is cut once it restarts.
BEHIND_FRAMES = 4_096  # 16 MiB at SQLite's default 4 KiB page
# Seconds close() waits for a checkpoint in progress (a slow disk) before leaving it behind.
STOP_TIMEOUT = 10.0


def database_uri(path: Path) -> str:
    """The SQLite URI that opens `path` through the "unix-excl" VFS.

    The path is percent-encoded: '?', '#' and '%' are legal in a DATA_DIR and mean something
    in a URI.
    """
    return "file:" + urllib.parse.quote(str(path)) + "?vfs=unix-excl"


def limit_log_file(db: sqlite3.Connection, frames: int) -> None:
    """Have the write that next restarts the log cut a file that grew longer (under a flood)
    back to `frames` pages. Set on each connection that may make that write: the loop's, and
    this thread's (_begin_next_round)."""
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    db.execute(f"PRAGMA journal_size_limit={frames * page_size}")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode that any one thread at a time may use."""
    return sqlite3.connect(
        database_uri(path), uri=True, isolation_level=None, check_same_thread=False
    )


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """What one PASSIVE checkpoint reported: frames in the log, and how many are now copied."""

    log_frames: int
    copied_frames: int

    @property
    def complete(self) -> bool:
        """The whole log is in the database: the next write restarts it from the beginning."""
        return self.copied_frames >= self.log_frames


class WalCheckpointer:
    """Owns the checkpoint thread and its connection; the store starts and stops it."""

    def __init__(
        self,
        path: Path,
        commits: Callable[[], int],
        *,
        interval: float | None = None,
        behind_frames: int | None = None,
    ) -> None:
        self._path = path
        self._commits = commits  # the store's count of committed transactions
        # The module's settings as they are now (tests change them), unless given.
        self._interval = CHECKPOINT_INTERVAL if interval is None else interval
        self._behind_frames = BEHIND_FRAMES if behind_frames is None else behind_frames
        self._db: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # completed PASSIVE checkpoints, for tests and the curious
        self.rounds_begun = 0  # log restarts this thread made (see _begin_next_round)
        # The store's commit count when the log was last copied whole (and its round begun).
        self.copied_up_to = -1
        self._touch = ""  # the statement that begins the log's next round (set by start)
        self.ran = threading.Event()  # set after every checkpoint attempt (tests wait on it)
        # Read by the store after each commit; written only by the thread.
        self.failed: BaseException | None = None
        self.behind = False

    def start(self) -> None:
        """Open the second connection here, so that a failure is the caller's to report."""
        db = connect(self._path)
        try:
            # Never wait for the loop's connection: a write it holds means it begins the
            # round itself (see _begin_next_round).
            db.execute("PRAGMA busy_timeout=0")
            limit_log_file(db, self._behind_frames)
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error:
            db.close()
            raise
        self._db = db
        # The value the store set at open, written back unchanged: only the page is new.
        self._touch = f"PRAGMA user_version={version}"
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint {self._path.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after a checkpoint in progress) and close its connection."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.warning(
                    "a checkpoint of %s is still running after %g s; leaving it",
                    self._path,
                    STOP_TIMEOUT,
                )
                return  # its connection is in use: the process's exit closes it
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def step(self) -> CheckpointResult:
        """One PASSIVE checkpoint: copy what it can, never wait for the writer."""
        if self._db is None:
            raise RuntimeError("the checkpointer is not started")
        row = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        result = CheckpointResult(log_frames=int(row[1]), copied_frames=int(row[2]))
        if result.complete:
            self.checkpoints += 1
        # The log restarts only when a write begins with all of it copied; while writes keep
        # coming (each commit lands during a copy), it never does. Past the bound, the store
        # copies the rest between two of its writes, and this thread waits until it has (two
        # checkpoints at once would only collide).
        self.behind = result.log_frames > self._behind_frames
        return result

    def _begin_next_round(self) -> None:
        """Write one page now that the whole log is copied: the write starts the log again from
        the top and syncs its new header here, not in the loop's next commit."""
        assert self._db is not None
        try:
            self._db.execute(self._touch)
        except sqlite3.OperationalError as e:
            # Busy: the loop's connection is writing, and its commit begins the round.
            # Anything else (a full disk) fails the loop's own writes too, and is said there.
            log.debug("the checkpoint thread did not begin the log's next round: %s", e)
            return
        self.rounds_begun += 1

    def _next_pause(self, frames_per_second: float, complete: bool) -> float:
        """Look again once the log has grown by about half the bound: a flood of writes is
        looked at often, so that the store's share (what came since a copy) stays short."""
        if not complete:
            return RETRY_INTERVAL
        until_half = self._behind_frames / 2 / max(frames_per_second, 1.0)
        return min(self._interval, max(RETRY_INTERVAL, until_half))

    def _run(self) -> None:
        pause = self._interval
        last_frames, last_at, rate = 0, time.monotonic(), 0.0
        try:
            while not self._stop.wait(pause):
                commits = self._commits()
                if commits == self.copied_up_to or self.behind:
                    continue  # nothing written since, or the store copies it (never both)
                result = self.step()
                if result.complete:
                    if result.log_frames:
                        self._begin_next_round()
                    self.copied_up_to = commits
                now = time.monotonic()
                # Frames written since the last look; when the log restarted in between, only
                # those since the restart are known, so a low reading only halves the estimate.
                grown = result.log_frames - last_frames if result.log_frames >= last_frames else 0
                rate = max(grown / max(now - last_at, 1e-3), rate / 2)
                pause = self._next_pause(rate, result.complete)
                last_frames, last_at = result.log_frames, now
                self.ran.set()
        except BaseException as e:  # a thread has no caller: the store reads it and falls back
            self.failed = e
            log.error(
                "checkpointing %s in the background failed (%s); SQLite's automatic "
                "checkpoints take over",
                self._path,
                e,
            )
            self.ran.set()
