"""Durable state in one SQLite file: conversation ids, the inbox and the outbox.

The inbox and outbox make "never lose a user's message" hold across crashes: an IM is written to
the inbox before any work starts, and its answer replaces it in the outbox in ONE transaction, so
at every instant a message is either waiting for an answer or its answer is waiting for delivery.
WAL mode with synchronous=NORMAL keeps each commit cheap (no fsync per transaction) while staying
consistent after a process crash.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiosqlite

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    user_key        TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_key    TEXT NOT NULL,
    screen_name TEXT NOT NULL,
    text        TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_user ON inbox(user_key);
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    screen_name TEXT NOT NULL,
    text        TEXT NOT NULL,
    is_html     INTEGER NOT NULL,
    created_at  REAL NOT NULL
);
"""


class StoreError(Exception):
    """The state file cannot be opened or used (path, permissions, corruption)."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    user_key: str
    screen_name: str
    text: str
    received_at: float


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    screen_name: str
    text: str
    is_html: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Reply:
    """One IM to deliver: the rendered text and whether it is AIM HTML."""

    text: str
    is_html: bool


class Store:
    """Async access to the state file; one instance per process, one connection."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        # One connection serves every coroutine; without this lock one coroutine's statement
        # could land inside another's open transaction.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the state database {path}: {e}") from e
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} was written by a newer aimbot (schema {version}, "
                    f"this one understands {SCHEMA_VERSION})"
                )
            await db.executescript(_SCHEMA)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as e:
            await db.close()
            raise StoreError(f"cannot use the state database {path}: {e}") from e
        except StoreError:
            await db.close()
            raise
        log.debug("state database open at %s", path)
        return cls(db, path)

    async def close(self) -> None:
        await self._db.close()

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
        async with (
            self._lock,
            self._db.execute(
                "SELECT conversation_id FROM conversations WHERE user_key = ?", (user_key,)
            ) as cur,
        ):
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_conversation(self, user_key: str, conversation_id: str, now: float) -> None:
        async with self._lock:
            await self._db.execute(
                "INSERT INTO conversations(user_key, conversation_id, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(user_key) DO UPDATE SET conversation_id = excluded.conversation_id, "
                "updated_at = excluded.updated_at",
                (user_key, conversation_id, now),
            )

    async def forget_user(self, user_key: str) -> list[int]:
        """Forget the conversation and drop the user's unanswered IMs ("clear").

        Returns the ids of the dropped inbox rows.
        """
        async with self._transaction():
            async with self._db.execute(
                "SELECT id FROM inbox WHERE user_key = ?", (user_key,)
            ) as cur:
                ids = [int(row[0]) for row in await cur.fetchall()]
            await self._db.execute("DELETE FROM inbox WHERE user_key = ?", (user_key,))
            await self._db.execute("DELETE FROM conversations WHERE user_key = ?", (user_key,))
        return ids

    # -- inbox ---------------------------------------------------------------------------------

    async def inbox_add(
        self, user_key: str, screen_name: str, text: str, received_at: float
    ) -> int:
        async with (
            self._lock,
            self._db.execute(
                "INSERT INTO inbox(user_key, screen_name, text, received_at) VALUES (?, ?, ?, ?)",
                (user_key, screen_name, text, received_at),
            ) as cur,
        ):
            rowid = cur.lastrowid
        assert rowid is not None
        return rowid

    async def inbox_pending(self, now: float, max_age: float) -> tuple[list[InboxItem], int]:
        """The IMs still to answer, oldest first, and how many were too old and were dropped."""
        async with self._transaction():
            cur = await self._db.execute(
                "DELETE FROM inbox WHERE received_at < ?", (now - max_age,)
            )
            expired = cur.rowcount
            await cur.close()
            async with self._db.execute(
                "SELECT id, user_key, screen_name, text, received_at FROM inbox ORDER BY id"
            ) as cur:
                rows = await cur.fetchall()
        items = [InboxItem(int(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4])) for r in rows]
        return items, max(expired, 0)

    async def complete(
        self, inbox_ids: Sequence[int], screen_name: str, replies: Sequence[Reply], now: float
    ) -> list[OutboxItem]:
        """Swap answered IMs for their replies atomically: both rows never coexist or vanish."""
        out: list[OutboxItem] = []
        async with self._transaction():
            await self._delete_ids("inbox", inbox_ids)
            for reply in replies:
                out.append(await self._insert_outbox(screen_name, reply, now))
        return out

    async def inbox_discard(self, inbox_ids: Sequence[int]) -> None:
        async with self._transaction():
            await self._delete_ids("inbox", inbox_ids)

    # -- outbox --------------------------------------------------------------------------------

    async def outbox_add(self, screen_name: str, reply: Reply, now: float) -> OutboxItem:
        async with self._lock:
            return await self._insert_outbox(screen_name, reply, now)

    async def _insert_outbox(self, screen_name: str, reply: Reply, now: float) -> OutboxItem:
        async with self._db.execute(
            "INSERT INTO outbox(screen_name, text, is_html, created_at) VALUES (?, ?, ?, ?)",
            (screen_name, reply.text, int(reply.is_html), now),
        ) as cur:
            rowid = cur.lastrowid
        assert rowid is not None
        return OutboxItem(rowid, screen_name, reply.text, reply.is_html, now)

    async def outbox_pending(self) -> list[OutboxItem]:
        async with (
            self._lock,
            self._db.execute(
                "SELECT id, screen_name, text, is_html, created_at FROM outbox ORDER BY id"
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [OutboxItem(int(r[0]), str(r[1]), str(r[2]), bool(r[3]), float(r[4])) for r in rows]

    async def outbox_done(self, outbox_ids: Iterable[int]) -> None:
        ids = list(outbox_ids)
        if ids:
            async with self._transaction():
                await self._delete_ids("outbox", ids)

    async def counts(self) -> dict[str, int]:
        """Row counts, for health and for tests."""
        result: dict[str, int] = {}
        for table in ("conversations", "inbox", "outbox"):
            async with self._lock, self._db.execute(f"SELECT COUNT(*) FROM {table}") as cur:
                row = await cur.fetchone()
            result[table] = int(row[0]) if row else 0
        return result

    # -- helpers -------------------------------------------------------------------------------

    async def _delete_ids(self, table: str, ids: Iterable[int]) -> None:
        await self._db.executemany(
            f"DELETE FROM {table} WHERE id = ?",  # table is one of ours
            [(i,) for i in ids],
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT under the store's lock, rolled back on any error."""

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._db = db
        self._lock = lock

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        try:
            await self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self._db.execute("COMMIT")
            else:
                await self._db.execute("ROLLBACK")
        finally:
            self._lock.release()
