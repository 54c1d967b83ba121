"""Durable state in one SQLite file: conversation ids, the inbox and the outbox.

The inbox and outbox make "never lose a user's message" hold across crashes: an IM is committed
to the inbox before any work on it starts, and its answer replaces it in the outbox atomically,
so at every instant a message is either waiting for an answer or its answer is waiting for
delivery. WAL mode with synchronous=NORMAL keeps each commit cheap (no fsync per transaction)
while staying consistent after a process crash.

Statements run directly on the event loop's thread: each is a few microseconds against a local
WAL file, far less than handing it to a worker thread and back (measured: the thread hand-off
dominated the bot's per-message cost). Checkpoints, which end in fdatasync, are the exception:
a thread of their own does them (aimbot/wal_checkpointer.py).

Group commit: every write made during one turn of the event loop joins one transaction, which is
committed by a callback queued at the first of them, so it runs before anything those writes
cause (the task that answers a stored IM is created after the write, and queued behind the
commit). Under load one commit covers dozens of messages instead of three commits for each.
One exception: an IM that comes alone (no transaction open, none paced, no other write for
LONE_WRITE_GAP) is stored by one statement that is a transaction of its own, its sender's `seen`
row written inside it by a trigger: durable when inbox_add returns, with no BEGIN, COMMIT or
scheduled commit for its worker to wait for (docs/benchmarks.md, "Session 19").
Writes whose effect leaves the process (a reply about to be sent) wait for that commit, or,
when commits are not being paced, commit at once (commit_now) so that the reply leaves in the
same turn; the rest (an IM stored, a delivered reply deleted) need not, since nothing outside
depends on them yet.
Deleting a delivered reply does not open a transaction: it rides on the turn's, or is one
statement at the end of the turn (under a flood: on the next transaction, or within
DONE_FLUSH_SECONDS).
Each operation is atomic on its own (a savepoint, or a single statement, which SQLite makes
atomic), so one failing statement never takes the others' writes with it. One process owns a
data directory; an exclusive lock file makes a second one fail loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from aimbot import wal_checkpointer
from aimbot.oscar.client import new_cookie
from aimbot.wal_checkpointer import WalCheckpointer

log = logging.getLogger(__name__)

_V = TypeVar("_V")

SCHEMA_VERSION = 5
LOCK_FILENAME = "aimbot.lock"
# Conversation ids kept in memory (least recently stored dropped first): each answer reads its
# user's twice, and a read outside a transaction costs a read snapshot of its own.
CONVERSATION_CACHE = 10_000
# A user's row in `seen` is rewritten at most once in this many seconds: it serves the restart
# notice (RESTART_NOTICE_WINDOW, minutes) and the operator's `users` list, for which a second is
# exact enough, and skipping the rewrite saves work on most IMs of a busy user (see _SEEN_TRIGGER).
SEEN_RESOLUTION = 1.0
# Ids per DELETE ... IN (...) statement, well under SQLite's limit on bound parameters.
DELETE_CHUNK = 500
# Under a flood (commits paced), delivered replies' rows are deleted with the next transaction, or
# after this many seconds when none comes. Otherwise they go at once, in the turn's transaction
# or in one statement of their own (see Store.outbox_done). A crash in between only sends them
# again, under their cookies (shown once).
DONE_FLUSH_SECONDS = 0.5
# Group commit under load. A busy bot commits once per turn of the event loop, and when turns
# come back to back a turn holds one or two messages' writes: each commit then costs more than
# the writes it carries. Past PACE_WRITES writes a second (measured over PACE_WINDOW), a commit
# waits until COMMIT_PACE after the previous one, gathering the writes of several turns; below
# it (every real bot's normal load) commits go at once. The wait is the cost: at most
# COMMIT_PACE before an IM is asked about, and again before its answer is sent, under a load
# where a user's answer already waits far longer in the queue (docs/benchmarks.md, "Session 9").
PACE_WRITES = 1_000
PACE_WINDOW = 0.1
COMMIT_PACE = 0.002
# A one-statement write this long after the last write made with no transaction open is taken
# to come alone, and is committed on its own (Store._write_one); one sooner (a burst: several
# IMs in one read) joins the group transaction, so that a burst still shares one commit.
LONE_WRITE_GAP = 0.001
# How long a write of the loop's connection waits for the log's write lock. Only the checkpoint
# thread ever holds it besides (the file is ours alone), for the one-page write that restarts
# the log, through a sync of the log's header (aimbot/wal_checkpointer.py). On a stalled disk
# that sync can take seconds; the loop waits it out, as it waited out the same sync when it
# made that write itself, instead of failing an IM's store over it.
BUSY_TIMEOUT_MS = 30_000
# SQLite's default wal_autocheckpoint (pages), restored if the checkpoint thread fails.
SQLITE_AUTOCHECKPOINT = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    user_key        TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY,
    user_key    TEXT NOT NULL,
    screen_name TEXT NOT NULL,
    text        TEXT NOT NULL,
    received_at REAL NOT NULL,
    parts_sent  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY,
    screen_name TEXT NOT NULL,
    text        TEXT NOT NULL,
    is_html     INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    cookie      BLOB
);
CREATE TABLE IF NOT EXISTS seen (
    user_key    TEXT PRIMARY KEY,
    screen_name TEXT NOT NULL,
    last_seen   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_INSERT_INBOX = (
    "INSERT INTO inbox(id, user_key, screen_name, text, received_at) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox(id, screen_name, text, is_html, created_at, cookie) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# Every stored IM notes its sender in `seen` (unless their row is younger than SEEN_RESOLUTION
# and names them alike), inside the IM's own INSERT: an IM's intake is then one statement, which
# can be a transaction of its own (see Store._write_one; docs/benchmarks.md, "Session 19").
_SEEN_TRIGGER = f"""
CREATE TRIGGER IF NOT EXISTS inbox_seen AFTER INSERT ON inbox
WHEN NOT EXISTS (
    SELECT 1 FROM seen WHERE user_key = NEW.user_key AND screen_name = NEW.screen_name
    AND NEW.received_at >= last_seen AND NEW.received_at < last_seen + {SEEN_RESOLUTION!r}
)
BEGIN
    INSERT INTO seen(user_key, screen_name, last_seen)
    VALUES (NEW.user_key, NEW.screen_name, NEW.received_at)
    ON CONFLICT(user_key) DO UPDATE SET
        screen_name = excluded.screen_name, last_seen = excluded.last_seen;
END;
"""


def _remember(cache: dict[str, _V], key: str, value: _V) -> None:
    """Put `key` last in a cache of at most CONVERSATION_CACHE entries (oldest dropped first)."""
    cache.pop(key, None)
    while len(cache) >= CONVERSATION_CACHE:
        del cache[next(iter(cache))]
    cache[key] = value


def _add_column(db: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    columns = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}  # ours
    if columns and column not in columns:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _without_autoincrement(db: sqlite3.Connection) -> None:
    """Schema 4 -> 5: inbox and outbox rebuilt without AUTOINCREMENT, and inbox's user index
    dropped: the store numbers the rows itself (see Store.__init__), and each of the two cost
    every transaction one more page to write (docs/benchmarks.md, session 8)."""
    db.execute("DROP INDEX IF EXISTS inbox_user")
    for table in ("inbox", "outbox"):
        row = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if row is None or "AUTOINCREMENT" not in str(row[0]).upper():
            continue
        old = f"{table}_schema4"
        db.execute(f"ALTER TABLE {table} RENAME TO {old}")  # ours, as are the names below
        db.execute(_table_definition(table))
        columns = ", ".join(str(c[1]) for c in db.execute(f"PRAGMA table_info({table})"))
        db.execute(f"INSERT INTO {table}({columns}) SELECT {columns} FROM {old}")
        db.execute(f"DROP TABLE {old}")


def _max_id(db: sqlite3.Connection, table: str) -> int:
    row = db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()  # ours
    return int(row[0])


def _table_definition(table: str) -> str:
    """The CREATE TABLE statement of `table` in _SCHEMA."""
    start = _SCHEMA.index(f"CREATE TABLE IF NOT EXISTS {table} (")
    return _SCHEMA[start : _SCHEMA.index(");", start) + 1]


def _upgrade(db: sqlite3.Connection, version: int) -> None:
    """Bring a file of schema `version` up to SCHEMA_VERSION, all in one transaction.

    Each step is what CREATE TABLE IF NOT EXISTS cannot do (a table an old file lacks is
    created whole by _SCHEMA afterwards). 1 -> 2: each reply keeps one message cookie for every
    attempt (see OutboxItem). 2 -> 3 only adds tables (seen, meta). 3 -> 4: an IM records how
    many parts of its streamed answer are already in the outbox (see stream_part). 4 -> 5: see
    _without_autoincrement.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        if version <= 1:
            _add_column(db, "outbox", "cookie", "BLOB")
        if version <= 3:
            _add_column(db, "inbox", "parts_sent", "INTEGER NOT NULL DEFAULT 0")
        if version <= 4:
            _without_autoincrement(db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class StoreError(Exception):
    """The state file cannot be opened or used (path, permissions, corruption, locked)."""


class StoreCorrupt(StoreError):
    """The file is not a SQLite database, or a damaged one: it needs an operator, not a retry."""


# SQLite's names for "this is not (or no longer) a database file".
_CORRUPTION: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


@functools.lru_cache(maxsize=256)
def _delete_statement(table: str, count: int) -> str:
    """DELETE of `count` ids, built once per size: most deletes are of one IM, or of the few
    replies delivered since the last commit."""
    return f"DELETE FROM {table} WHERE id IN ({','.join('?' * count)})"  # ours


def _is_corruption(error: BaseException) -> bool:
    name = getattr(error, "sqlite_errorname", "")
    return isinstance(name, str) and (name in _CORRUPTION or name.startswith("SQLITE_CORRUPT_"))


class StoreWriteError(StoreError):
    """A write did not reach the file (disk full, I/O error): it, and its turn's others, are gone.

    SQLite answers a full disk or a failing device by rolling back the whole open transaction,
    so every write of the same group commit is lost with it; the commit ticket of that group
    (see ``commit_ticket``) fails with this error too. Nothing is left half-written, and the
    next write starts afresh, so the bot recovers on its own once space returns.
    """


class StoreLocked(StoreError):
    """Another process holds the data directory (a running bot, or a second one by mistake)."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    user_key: str
    screen_name: str
    text: str
    received_at: float
    parts_sent: int = 0  # parts of its streamed answer already stored for delivery


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A reply waiting for delivery.

    `cookie` is its ICBM message cookie, chosen once and stored with it, so that a reply sent
    again (its ack lost to a reconnect or a crash) goes out as the same message: a client that
    has already shown that cookie from us can drop the copy.
    """

    id: int
    screen_name: str
    text: str
    is_html: bool
    created_at: float
    cookie: bytes


@dataclass(frozen=True, slots=True)
class UserRow:
    """One user as the operator commands list them (times are epoch seconds)."""

    user_key: str
    screen_name: str | None
    conversation_id: str | None
    conversation_updated_at: float | None
    last_seen: float | None
    pending: int


@dataclass(frozen=True, slots=True)
class Reply:
    """One IM to deliver: the rendered text and whether it is AIM HTML."""

    text: str
    is_html: bool


CommitHook = Callable[[StoreWriteError | None], None]
"""Told how a group transaction ended: None once committed, else why it was lost."""


class Store:
    """The bot's state file; one instance per process, one connection."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        lock_fd: int | None,
        *,
        owner: bool = True,
        stopped_uncleanly: bool = False,
    ) -> None:
        self._db = db
        self.path = path
        self._lock_fd = lock_fd
        self._batch: asyncio.Future[None] | None = None  # the open group transaction's commit
        self._hooks: list[CommitHook] = []  # run as the open group transaction ends
        self._commit_handle: asyncio.Handle | None = None  # the open transaction's commit
        self._last_commit = -math.inf  # loop time of the last commit
        self._window_start = 0.0  # loop time the write rate is measured from
        self._window_writes = 0  # writes since then
        self._last_write = -math.inf  # loop time of the last write made with none open
        self._paced = False  # commits wait for COMMIT_PACE (see PACE_WRITES)
        # Transactions committed: group ones (each covers a turn's writes) and lone IMs'.
        self.commits = 0
        self.loop_checkpoints = 0  # checkpoints the loop's thread had to do (see wal_checkpointer)
        # user key -> conversation id (None: none) as this connection sees the table; see
        # get_conversation. Emptied whenever a write may have been rolled back.
        self._conversations: dict[str, str | None] = {}
        # Delivered replies whose rows are still to be deleted (see outbox_done).
        self._done: list[int] = []
        # Row ids, numbered here: above every row the file had when opened, and never handed
        # out twice while this process runs, even for a row since deleted or rolled back. What
        # SQLite picks without AUTOINCREMENT (the largest id + 1) would give a deleted row's id
        # to the next row while a worker may still hold the old one: a "clear" deletes a user's
        # IMs under a worker answering them, whose swap would then delete the newcomer.
        self._inbox_ids = itertools.count(_max_id(db, "inbox") + 1)
        self._outbox_ids = itertools.count(_max_id(db, "outbox") + 1)
        self._done_timer: asyncio.Handle | None = None
        self.done_flush_seconds = DONE_FLUSH_SECONDS
        self._owner = owner  # this process runs the bot (see open)
        self._checkpointer: WalCheckpointer | None = None
        # The previous process using this file ended without close(): killed, crashed, power.
        self.stopped_uncleanly = stopped_uncleanly

    @classmethod
    async def open(cls, path: Path, *, owner: bool = True) -> Store:
        """Open (creating or upgrading) the state file.

        `owner=False` is for a look from outside (the doctor): it leaves the clean-stop
        marker as it was, so a crash is still noticed by the bot's next start.
        """
        lock_fd = _lock_directory(path.parent)
        try:
            _private_file(path)
            db = wal_checkpointer.connect(path)
        except (OSError, sqlite3.Error) as e:
            _unlock(lock_fd)
            raise StoreError(f"cannot open the state database {path}: {e}") from e
        try:
            # The "unix-excl" VFS (wal_checkpointer.connect) keeps other processes out and the
            # WAL index in our heap, where the checkpoint thread's connection shares it.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} was written by a newer aimbot (schema {version}, "
                    f"this one understands {SCHEMA_VERSION})"
                )
            if version and version < SCHEMA_VERSION:
                _upgrade(db, version)
                log.info("state database %s upgraded to schema %d", path, SCHEMA_VERSION)
            db.executescript(_SCHEMA + _SEEN_TRIGGER)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            row = db.execute("SELECT value FROM meta WHERE key = 'running'").fetchone()
            unclean = row is not None and row[0] == "1"
            if owner:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('running', '1')")
            wal = path.with_name(path.name + "-wal")
            if wal.exists():  # SQLite gives it the database file's mode; an old one may differ
                os.chmod(wal, 0o600)
        except (OSError, sqlite3.Error, StoreError) as e:
            db.close()
            _unlock(lock_fd)
            if isinstance(e, StoreError):
                raise
            if _is_corruption(e):
                raise StoreCorrupt(f"the state database {path} is damaged: {e}") from e
            raise StoreError(f"cannot use the state database {path}: {e}") from e
        store = cls(db, path, lock_fd, owner=owner, stopped_uncleanly=unclean)
        if owner:
            try:
                store._start_checkpointer()
            except (OSError, sqlite3.Error) as e:
                db.close()
                _unlock(lock_fd)
                raise StoreError(f"cannot use the state database {path}: {e}") from e
        log.debug("state database open at %s", path)
        return store

    def _start_checkpointer(self) -> None:
        """Checkpoints move to a thread of their own (see aimbot/wal_checkpointer.py)."""
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # ours now, off the event loop
        wal_checkpointer.limit_log_file(self._db, wal_checkpointer.BEHIND_FRAMES)
        # Last, so that nothing above can fail with the thread already running.
        checkpointer = WalCheckpointer(self.path, lambda: self.commits)
        checkpointer.start()
        self._checkpointer = checkpointer

    def _help_checkpointer(self, checkpointer: WalCheckpointer) -> None:
        """The checkpoint thread failed, or cannot keep the log bounded: do it here."""
        try:
            if checkpointer.failed is not None:
                self._checkpointer = None
                checkpointer.stop()
                self._db.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT}")
                return
            log.debug("the state database's log outgrew background checkpoints; copying it")
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.loop_checkpoints += 1
        except sqlite3.Error as e:
            log.warning("could not checkpoint the state database %s: %s", self.path, e)
        finally:
            checkpointer.behind = False  # after the copy: the thread waits for this

    async def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        if self._done_timer is not None:
            self._done_timer.cancel()
            self._done_timer = None
        with contextlib.suppress(StoreWriteError):  # logged; the rows are sent again next start
            self._delete_done()
        self._cancel_commit()
        self._commit_batch()
        if self._owner:
            with contextlib.suppress(sqlite3.Error):  # a broken file was reported when it broke
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('running', '0')")
        self._db.close()
        _unlock(self._lock_fd)
        self._lock_fd = None

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- conversations -------------------------------------------------------------------------

    async def get_conversation(self, user_key: str) -> str | None:
        try:
            return self._conversations[user_key]
        except KeyError:
            pass
        row = self._db.execute(
            "SELECT conversation_id FROM conversations WHERE user_key = ?", (user_key,)
        ).fetchone()
        conversation_id = str(row[0]) if row else None
        self._cache_conversation(user_key, conversation_id)
        return conversation_id

    def _cache_conversation(self, user_key: str, conversation_id: str | None) -> None:
        _remember(self._conversations, user_key, conversation_id)

    async def set_conversation(self, user_key: str, conversation_id: str, now: float) -> None:
        with self._write():
            self._db.execute(
                "INSERT INTO conversations(user_key, conversation_id, updated_at) "
                "VALUES (?, ?, ?) ON CONFLICT(user_key) DO UPDATE SET "
                "conversation_id = excluded.conversation_id, updated_at = excluded.updated_at",
                (user_key, conversation_id, now),
            )
            self._cache_conversation(user_key, conversation_id)

    async def forget_user(self, user_key: str) -> list[int]:
        """Forget the conversation and drop the user's unanswered IMs ("clear").

        Returns the ids of the dropped inbox rows.
        """
        with self._write():
            ids = [
                int(row[0])
                for row in self._db.execute("SELECT id FROM inbox WHERE user_key = ?", (user_key,))
            ]
            self._db.execute("DELETE FROM inbox WHERE user_key = ?", (user_key,))
            self._db.execute("DELETE FROM conversations WHERE user_key = ?", (user_key,))
            self._cache_conversation(user_key, None)
        await self._committed()
        return ids

    # -- inbox ---------------------------------------------------------------------------------

    async def inbox_add(
        self, user_key: str, screen_name: str, text: str, received_at: float
    ) -> int:
        inbox_id = next(self._inbox_ids)
        # One statement (`seen` is written by _SEEN_TRIGGER, inside it).
        self._write_one(_INSERT_INBOX, (inbox_id, user_key, screen_name, text, received_at))
        return inbox_id

    async def recently_seen(self, window: float) -> list[tuple[str, str]]:
        """(user key, screen name) of everyone who wrote within `window` seconds of the last
        IM stored, most recent first; and forget everyone older (nothing needs them)."""
        with self._write():
            row = self._db.execute("SELECT MAX(last_seen) FROM seen").fetchone()
            if row is None or row[0] is None:
                return []
            since = float(row[0]) - window
            self._db.execute("DELETE FROM seen WHERE last_seen < ?", (since,))
            rows = self._db.execute(
                "SELECT user_key, screen_name FROM seen ORDER BY last_seen DESC"
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def inbox_pending(self, now: float, max_age: float) -> tuple[list[InboxItem], int]:
        """The IMs still to answer, oldest first, and how many were too old and were dropped."""
        with self._write():
            expired = self._db.execute(
                "DELETE FROM inbox WHERE received_at < ?", (now - max_age,)
            ).rowcount
            rows = self._db.execute(
                "SELECT id, user_key, screen_name, text, received_at, parts_sent "
                "FROM inbox ORDER BY id"
            ).fetchall()
        items = [
            InboxItem(int(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]), int(r[5]))
            for r in rows
        ]
        return items, max(expired, 0)

    async def complete(
        self, inbox_ids: Sequence[int], screen_name: str, replies: Sequence[Reply], now: float
    ) -> list[OutboxItem]:
        """Swap answered IMs for their replies atomically: both rows never coexist or vanish.

        Returns once committed, so the replies may be sent.
        """
        items = self.stage_complete(inbox_ids, screen_name, replies, now)
        await self._committed()
        return items

    def stage_complete(
        self, inbox_ids: Sequence[int], screen_name: str, replies: Sequence[Reply], now: float
    ) -> list[OutboxItem]:
        """complete() without waiting for the commit: the swap joins this turn's transaction,
        and `commit_ticket()` tells when it is durable (for a caller that must not be cancelled
        between the two, and need not be a task of its own to ensure that)."""
        items = self.new_replies(screen_name, replies, now)
        self.stage_items(inbox_ids, items)
        return items

    def new_replies(
        self, screen_name: str, replies: Sequence[Reply], now: float
    ) -> list[OutboxItem]:
        """Outbox items for `replies`, numbered and given their cookies, not yet written.

        For an answer whose first reply is written to the server before its row (see
        stage_items): the row then holds the very id and cookie that went out.
        """
        return [
            OutboxItem(next(self._outbox_ids), screen_name, r.text, r.is_html, now, new_cookie())
            for r in replies
        ]

    def stage_items(self, inbox_ids: Sequence[int], items: Sequence[OutboxItem]) -> None:
        """Write `items` (from new_replies) in place of the answered IMs, atomically, in this
        turn's transaction."""
        # Inserts first: the usual answer (one reply, one delete) then needs no savepoint, as
        # only its first statement can fail on its data (see _write).
        alone = len(items) == 1 and len(inbox_ids) <= DELETE_CHUNK
        with self._write(savepoint=not alone):
            for item in items:
                self._insert_item(item)
            self._delete_ids("inbox", inbox_ids)

    async def stream_part(
        self, inbox_ids: Sequence[int], screen_name: str, reply: Reply, now: float
    ) -> OutboxItem:
        """Store one part of an answer still streaming, and count it on the IMs it answers.

        Atomic, like complete(): after a restart the IMs show that part of their answer went
        out, so they are not asked again (Dify has the turn; asking again would repeat the
        parts already sent). Returns once committed, so the part may be sent.
        """
        with self._write():
            self._db.executemany(
                "UPDATE inbox SET parts_sent = parts_sent + 1 WHERE id = ?",
                [(i,) for i in inbox_ids],
            )
            item = self._insert_outbox(screen_name, reply, now)
        await self._committed()
        return item

    # -- outbox --------------------------------------------------------------------------------

    async def outbox_add(self, screen_name: str, reply: Reply, now: float) -> OutboxItem:
        """Store one reply; returns once committed, so it may be sent."""
        with self._write():
            item = self._insert_outbox(screen_name, reply, now)
        await self._committed()
        return item

    async def outbox_pending(self) -> list[OutboxItem]:
        self._delete_done()  # what is delivered is not pending
        rows = self._db.execute(
            "SELECT id, screen_name, text, is_html, created_at, cookie FROM outbox ORDER BY id"
        ).fetchall()
        return [
            OutboxItem(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                bool(r[3]),
                float(r[4]),
                # A row from schema 1 has none; it gets one now (its earlier attempt had another).
                bytes(r[5]) if r[5] is not None else new_cookie(),
            )
            for r in rows
        ]

    def outbox_done(self, outbox_ids: Iterable[int]) -> None:
        """Forget delivered (or abandoned) replies.

        Their rows go with this turn's transaction if one is open, else at the end of the turn,
        in one statement (which is its own transaction), taking along the other replies
        confirmed in the same turn. The IM a user sends next is stored by a statement of its
        own (see _write_one), so it no longer carries them, and they must not wait for it: a
        crash would send them again. Under a flood, they go with the next paced transaction, or
        within `done_flush_seconds` (nothing is waited for): a row a crash leaves behind is
        sent again under its cookie, which the client shows once.
        """
        self._done.extend(outbox_ids)
        if self._done and self._batch is None and self._done_timer is None:
            loop = asyncio.get_running_loop()
            if self._paced:
                self._done_timer = loop.call_later(self.done_flush_seconds, self._flush_done_later)
            else:
                self._done_timer = loop.call_soon(self._flush_done_later)

    def _flush_done_later(self) -> None:
        self._done_timer = None
        with contextlib.suppress(StoreWriteError):  # logged; the rows are sent again next start
            self._delete_done()

    def _delete_done(self) -> None:
        """Delete the rows outbox_done was told of: in the open transaction if there is one."""
        ids, self._done = self._done, []
        try:
            self._delete_ids("outbox", ids)
        except sqlite3.Error as e:
            log.warning(
                "could not delete %d delivered replies from %s (%s): they are sent again after "
                "a restart",
                len(ids),
                self.path,
                e,
            )
            raise StoreWriteError(f"could not write to {self.path}: {e}") from e

    async def counts(self) -> dict[str, int]:
        """Row counts, for health and for tests."""
        self._delete_done()
        return {
            table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("conversations", "inbox", "outbox")
        }

    # -- operator queries (aimbot/admin.py) ---------------------------------------------------

    async def users(self, limit: int) -> list[UserRow]:
        """Everyone the state file knows (a conversation, unanswered IMs, or a recent IM),
        most recently active first, at most `limit` of them."""
        rows = self._db.execute(
            "SELECT k.user_key, COALESCE(s.screen_name, p.screen_name), "
            "c.conversation_id, c.updated_at, s.last_seen, COALESCE(p.n, 0) "
            "FROM (SELECT user_key FROM conversations UNION SELECT user_key FROM inbox "
            "UNION SELECT user_key FROM seen) k "
            "LEFT JOIN conversations c ON c.user_key = k.user_key "
            "LEFT JOIN seen s ON s.user_key = k.user_key "
            # The inbox has no index on user_key (see _without_autoincrement): read it once.
            "LEFT JOIN (SELECT user_key, MIN(screen_name) AS screen_name, COUNT(*) AS n "
            "FROM inbox GROUP BY user_key) p ON p.user_key = k.user_key "
            "ORDER BY MAX(COALESCE(c.updated_at, 0), COALESCE(s.last_seen, 0)) DESC, k.user_key "
            "LIMIT ?",
            (max(0, limit),),
        ).fetchall()
        return [
            UserRow(
                user_key=str(r[0]),
                screen_name=None if r[1] is None else str(r[1]),
                conversation_id=None if r[2] is None else str(r[2]),
                conversation_updated_at=None if r[3] is None else float(r[3]),
                last_seen=None if r[4] is None else float(r[4]),
                pending=int(r[5]),
            )
            for r in rows
        ]

    async def forget_conversation(self, user_key: str) -> str | None:
        """Forget one user's conversation id (the next IM starts a new one); returns the old id.

        Unlike forget_user ("clear"), unanswered IMs stay: an operator's reset loses nothing.
        """
        with self._write():
            row = self._db.execute(
                "SELECT conversation_id FROM conversations WHERE user_key = ?", (user_key,)
            ).fetchone()
            self._db.execute("DELETE FROM conversations WHERE user_key = ?", (user_key,))
            self._cache_conversation(user_key, None)
        await self._committed()
        return None if row is None else str(row[0])

    async def purge_conversations(self, before: float) -> int:
        """Forget conversations untouched since `before` (epoch seconds); returns how many."""
        with self._write():
            count = self._db.execute(
                "DELETE FROM conversations WHERE updated_at < ?", (before,)
            ).rowcount
            self._forget_caches()
            self._db.execute("DELETE FROM seen WHERE last_seen < ?", (before,))
        await self._committed()
        return max(count, 0)

    # -- helpers -------------------------------------------------------------------------------

    def _insert_outbox(self, screen_name: str, reply: Reply, now: float) -> OutboxItem:
        (item,) = self.new_replies(screen_name, (reply,), now)
        self._insert_item(item)
        return item

    def _insert_item(self, item: OutboxItem) -> None:
        self._db.execute(
            _INSERT_OUTBOX,
            (item.id, item.screen_name, item.text, int(item.is_html), item.created_at, item.cookie),
        )

    def _delete_ids(self, table: str, ids: Sequence[int]) -> None:
        """One statement per DELETE_CHUNK ids, each atomic on its own (deleting part of the ids
        of a failed call is harmless: the caller's savepoint, if any, undoes it)."""
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk = ids[start : start + DELETE_CHUNK]
            self._db.execute(_delete_statement(table, len(chunk)), chunk)

    def commit_ticket(self) -> asyncio.Future[None] | None:
        """What the writes made so far in this turn wait for: resolves when they are committed
        and fails with StoreWriteError when they are lost. None when nothing is pending.

        For a caller that must not act on a write (e.g. ask Dify about a stored IM) until it is
        durable, without making the write itself wait for its commit.
        """
        return self._batch

    @property
    def paced(self) -> bool:
        """Whether commits are being paced: writes are coming faster than PACE_WRITES a second,
        and each commit gathers several turns' writes."""
        return self._paced

    def commit_now(self) -> None:
        """Commit this turn's writes here, not at the end of the turn; under load, when commits
        are paced to gather several turns' writes, leave them to the paced commit.

        For a caller whose next step leaves the process (a reply to send): its after_commit
        hooks run before this returns, so the reply goes out in this loop turn, not the next.
        """
        if self._batch is None or self._paced:
            return
        self._cancel_commit()
        self._commit_batch()

    def after_commit(self, hook: CommitHook) -> None:
        """Run `hook` when the writes made so far in this turn are committed (with None) or lost
        (with the error): inside the commit itself, a loop turn before the ticket's callbacks.

        For a caller whose next step leaves the process (a reply to send) and should not wait
        a turn more. A hook must not raise; if it does, the error is logged and the others run.
        """
        if self._batch is None:
            raise RuntimeError("after_commit() needs a write pending in this turn")
        self._hooks.append(hook)

    def _write_error(self, cause: BaseException) -> StoreWriteError:
        return StoreWriteError(f"could not write to the state database {self.path}: {cause}")

    def _run_hooks(self, error: StoreWriteError | None) -> None:
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            try:
                hook(error)
            except Exception:
                log.exception("a hook run after a commit failed (ignored)")

    def _write(self, *, savepoint: bool = True) -> _Op:
        """One atomic operation inside the group transaction: all of it, or none of it.

        `savepoint=False` is for an operation whose first statement is the only one that can
        fail alone (SQLite undoes a failed statement, and the others' writes stay): it saves
        the two statements of a savepoint on the hottest writes. Should a later statement of
        such an operation fail and leave the transaction open, the whole group is rolled back.
        sqlite3 errors leave as StoreWriteError (the cause chained).
        """
        return _Op(self, savepoint)

    def _undo_op(self, error: BaseException, *, savepoint: bool, wrote: bool) -> None:
        """Roll back one failed operation, or the whole group if SQLite already did (or if an
        operation without a savepoint had written something before it failed)."""
        self._forget_caches()
        if not self._db.in_transaction:
            # SQLITE_FULL / SQLITE_IOERR roll back the whole transaction, not the statement.
            self._abort_batch(error)
            return
        if not savepoint:
            if wrote:
                self._abort_batch(error)
            return  # else SQLite undid the failed statement; nothing else was written
        try:
            self._db.execute("ROLLBACK TO op")
            self._db.execute("RELEASE op")
        except sqlite3.Error as e:
            self._abort_batch(e)

    def _forget_caches(self) -> None:
        """A write may have been rolled back: what memory says of the tables may be wrong."""
        self._conversations.clear()

    def _cancel_commit(self) -> None:
        handle, self._commit_handle = self._commit_handle, None
        if handle is not None:
            handle.cancel()

    def _abort_batch(self, error: BaseException) -> None:
        """The group transaction is lost: everyone holding its ticket is told, the next write
        starts a new one."""
        batch, self._batch = self._batch, None
        self._cancel_commit()
        self._forget_caches()
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        log.error(
            "could not write to the state database %s (%s): this turn's writes were rolled back",
            self.path,
            error,
        )
        lost = self._write_error(error)
        if batch is not None and not batch.done():
            batch.set_exception(lost)
            batch.exception()  # retrieved here: nobody may be waiting, and it is logged
        self._run_hooks(lost)

    def _write_one(self, sql: str, params: Sequence[object]) -> None:
        """A write of one statement, the whole of its operation (statement-level atomicity).

        When it comes alone (no group transaction open, commits not paced, no other write for
        LONE_WRITE_GAP), the statement is a transaction of its own (SQLite's autocommit),
        durable when this returns: it saves the BEGIN and COMMIT statements, and a scheduled
        commit that the IM's worker would wait for (docs/benchmarks.md, "Session 19").
        Otherwise it joins the group transaction, as every other write does.
        """
        if self._batch is None:
            now = asyncio.get_running_loop().time()
            alone = now - self._last_write >= LONE_WRITE_GAP
            self._last_write = now
            if alone and not self._pace(now):
                self._window_writes += 1
                try:
                    self._db.execute(sql, params)
                except sqlite3.Error as e:
                    # SQLite rolled the statement back, and with it its transaction; the caller
                    # reports what was not kept.
                    raise self._write_error(e) from e
                self._committed_alone(now)
                return
        with self._write(savepoint=False):
            self._db.execute(sql, params)

    def _pace(self, now: float) -> bool:
        """Whether commits are paced: decided afresh every PACE_WINDOW from the writes since."""
        elapsed = now - self._window_start
        if elapsed >= PACE_WINDOW:
            self._paced = self._window_writes >= PACE_WRITES * elapsed
            self._window_start = now
            self._window_writes = 0
        return self._paced

    def _join_batch(self) -> None:
        """Open the group transaction if none is, and queue its commit behind this turn (or,
        under load, COMMIT_PACE after the last commit)."""
        self._window_writes += 1
        if self._batch is not None:
            return
        loop = asyncio.get_running_loop()
        self._db.execute("BEGIN IMMEDIATE")
        self._batch = loop.create_future()
        now = self._last_write = loop.time()
        self._pace(now)
        due = self._last_commit + COMMIT_PACE
        if self._paced and due > now:
            self._commit_handle = loop.call_at(due, self._commit_batch)
        else:
            self._commit_handle = loop.call_soon(self._commit_batch)

    async def _committed(self) -> None:
        """Until the group transaction holding this caller's writes is committed."""
        if self._batch is not None:
            # Shielded: a cancelled caller must not cancel the commit the others wait for.
            await asyncio.shield(self._batch)

    def _commit_batch(self) -> None:
        batch, self._batch = self._batch, None
        self._commit_handle = None  # this call, or close() which cancelled it
        if batch is None:
            return
        self._last_commit = batch.get_loop().time()
        try:
            if self._done:
                with contextlib.suppress(StoreWriteError):  # logged; only those rows stay
                    self._delete_done()
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._forget_caches()
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            log.error(
                "could not commit to the state database %s (%s): this turn's writes were "
                "rolled back",
                self.path,
                e,
            )
            lost = StoreWriteError(f"could not commit to {self.path}: {e}")
            if not batch.done():
                batch.set_exception(lost)
                batch.exception()  # retrieved here: nobody may be waiting, and it is logged
            self._run_hooks(lost)
            return
        self.commits += 1
        if not batch.done():
            batch.set_result(None)
        self._run_hooks(None)
        self._check_checkpointer()

    def _committed_alone(self, now: float) -> None:
        """A statement committed as a transaction of its own (_write_one) at loop time `now`."""
        self._last_commit = now
        self.commits += 1
        self._check_checkpointer()

    def _check_checkpointer(self) -> None:
        checkpointer = self._checkpointer
        if checkpointer is not None and (checkpointer.behind or checkpointer.failed is not None):
            self._help_checkpointer(checkpointer)


class _Op:
    """Store._write's context: a class rather than a generator, as it wraps every write."""

    __slots__ = ("_changes", "_savepoint", "_store")

    def __init__(self, store: Store, savepoint: bool) -> None:
        self._store = store
        self._savepoint = savepoint
        self._changes = 0

    def __enter__(self) -> None:
        store = self._store
        try:
            store._join_batch()
            if self._savepoint:
                store._db.execute("SAVEPOINT op")
        except sqlite3.Error as e:
            store._abort_batch(e)
            raise store._write_error(e) from e
        self._changes = store._db.total_changes

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        store = self._store
        if error is not None:
            wrote = store._db.total_changes != self._changes
            store._undo_op(error, savepoint=self._savepoint, wrote=wrote)
            if isinstance(error, sqlite3.Error):
                raise store._write_error(error) from error
            return
        if not self._savepoint:
            return
        try:
            store._db.execute("RELEASE op")
        except sqlite3.Error as e:
            store._abort_batch(e)
            raise store._write_error(e) from e


def _private_file(path: Path) -> None:
    """Create the file 0600 (SQLite gives its -wal file the same mode), or make it 0600.

    It holds every user's messages: not for other accounts on the machine, whatever the umask.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _private_directory(directory: Path) -> None:
    """Create the data directory 0700; an existing one is left as the operator made it, with a
    warning if other accounts may look into it (its files are 0600 either way)."""
    if directory.is_dir():
        mode = directory.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "data directory %s is accessible to other accounts (mode %o); "
                "chmod 700 it (its files are private either way)",
                directory,
                mode,
            )
        return
    directory.mkdir(parents=True, mode=0o700)
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask; this is not


def _lock_directory(directory: Path) -> int:
    """Take the data directory for this process, or fail with a message an operator can act on."""
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise StoreError(
            f"cannot open the state database: DATA_DIR {directory}: {blocker} is a file, "
            "not a directory"
        )
    try:
        _private_directory(directory)
        fd = os.open(directory / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
    except OSError as e:
        raise StoreError(f"cannot open the state database in {directory}: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise StoreLocked(
            f"another aimbot process is using {directory} (DATA_DIR); "
            "each bot needs its own data directory"
        ) from e
    return fd


def _file_in_the_way(directory: Path) -> Path | None:
    """The data directory itself or the nearest ancestor, when it exists but is not a directory
    (mkdir would only say "File exists" or "Not a directory")."""
    for path in (directory, *directory.parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases the flock
