import asyncio
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aimbot import store as store_module
from aimbot.store import SCHEMA_VERSION, Reply, Store, StoreError, StoreWriteError
from tests.helpers.store import one_write_per_turn


def _query(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """The file as a second connection reads it (once the store is closed, or after a crash)."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def _old_file(path: Path, script: str) -> None:
    """A state file as an older aimbot left it."""
    db = sqlite3.connect(path)
    try:
        db.executescript(script)
    finally:
        db.close()


async def test_conversations_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bot.sqlite3"
    async with await Store.open(path) as store:
        assert await store.get_conversation("alice") is None
        await store.set_conversation("alice", "c-1", 1.0)
        await store.set_conversation("alice", "c-2", 2.0)
    async with await Store.open(path) as store:
        assert await store.get_conversation("alice") == "c-2"


async def test_complete_swaps_inbox_rows_for_outbox_rows_atomically(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        a = await store.inbox_add("bob", "Bob", "hi", 10.0)
        b = await store.inbox_add("bob", "Bob", "there", 11.0)
        other = await store.inbox_add("carol", "Carol", "yo", 12.0)
        items = await store.complete(
            [a, b], "Bob", [Reply("part 1", True), Reply("part 2", True)], 13.0
        )
        assert [i.text for i in items] == ["part 1", "part 2"]
        assert items[0].id < items[1].id
        pending, expired = await store.inbox_pending(now=13.0, max_age=100.0)
        assert [p.id for p in pending] == [other]
        assert expired == 0
        assert [o.id for o in await store.outbox_pending()] == [i.id for i in items]
        store.outbox_done([items[0].id])
        assert [o.text for o in await store.outbox_pending()] == ["part 2"]


async def test_inbox_pending_drops_entries_older_than_max_age(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.inbox_add("bob", "Bob", "old", 100.0)
        young = await store.inbox_add("bob", "Bob", "young", 950.0)
        pending, expired = await store.inbox_pending(now=1000.0, max_age=100.0)
        assert [p.id for p in pending] == [young]
        assert expired == 1


async def test_forget_user_drops_their_conversation_and_inbox_only(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.set_conversation("bob", "c-b", 1.0)
        await store.set_conversation("carol", "c-c", 1.0)
        dropped = await store.inbox_add("bob", "Bob", "x", 1.0)
        kept = await store.inbox_add("carol", "Carol", "y", 1.0)
        assert await store.forget_user("bob") == [dropped]
        assert await store.get_conversation("bob") is None
        assert await store.get_conversation("carol") == "c-c"
        pending, _ = await store.inbox_pending(now=1.0, max_age=10.0)
        assert [p.id for p in pending] == [kept]


async def test_conversation_reads_stay_true_however_many_users_are_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CONVERSATION_CACHE", 2)
    async with await Store.open(tmp_path / "s.db") as store:
        for i in range(5):
            await store.set_conversation(f"u{i}", f"c-{i}", 1.0)
        assert await store.get_conversation("nobody") is None
        for _ in range(2):  # the second round reads back users the bound made it forget
            for i in range(5):
                assert await store.get_conversation(f"u{i}") == f"c-{i}"
        assert len(store._conversations) <= 2


async def test_purged_and_reset_conversations_are_not_read_back(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.set_conversation("old", "c-old", 1.0)
        await store.set_conversation("new", "c-new", 5.0)
        await store.set_conversation("reset", "c-reset", 5.0)
        for key in ("old", "new", "reset"):
            assert await store.get_conversation(key) is not None
        assert await store.purge_conversations(before=3.0) == 1
        assert await store.forget_conversation("reset") == "c-reset"
        assert await store.get_conversation("old") is None
        assert await store.get_conversation("reset") is None
        assert await store.get_conversation("new") == "c-new"


async def test_unusable_path_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="file is a file, not a directory"):
        await Store.open(blocker / "sub" / "s.db")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer aimbot"):
        await Store.open(path)


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_concurrent_coroutines_never_share_a_transaction(tmp_path: Path) -> None:
    import asyncio

    async with await Store.open(tmp_path / "s.db") as store:

        async def user(n: int) -> None:
            for i in range(10):
                inbox_id = await store.inbox_add(f"u{n}", f"U{n}", f"m{i}", 1.0)
                await store.set_conversation(f"u{n}", f"c{i}", 1.0)
                await store.complete([inbox_id], f"U{n}", [Reply(f"r{n}-{i}", False)], 2.0)

        await asyncio.gather(*(user(n) for n in range(20)))
        counts = await store.counts()
        assert counts == {"conversations": 20, "inbox": 0, "outbox": 200}


async def test_a_second_process_cannot_share_the_data_directory(tmp_path: Path) -> None:
    from aimbot.store import StoreLocked

    async with await Store.open(tmp_path / "s.db"):
        with pytest.raises(StoreLocked, match="each bot needs its own data directory"):
            await Store.open(tmp_path / "s.db")
    # Released on close: the next start opens it.
    async with await Store.open(tmp_path / "s.db") as store:
        assert await store.counts() == {"conversations": 0, "inbox": 0, "outbox": 0}


async def test_a_reply_keeps_its_message_cookie_across_restarts(tmp_path: Path) -> None:
    """A resend after a crash must go out as the same message, so clients can drop the copy."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        first, second = await store.complete([], "Bob", [Reply("a", False), Reply("b", False)], 1.0)
        notice = await store.outbox_add("Carol", Reply("c", False), 2.0)
    assert len({first.cookie, second.cookie, notice.cookie}) == 3
    assert all(len(item.cookie) == 8 for item in (first, second, notice))
    async with await Store.open(path) as store:
        reloaded = await store.outbox_pending()
    assert [(i.id, i.cookie) for i in reloaded] == [
        (i.id, i.cookie) for i in (first, second, notice)
    ]


async def test_a_schema_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _old_file(
        path,
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, screen_name TEXT NOT NULL,"
        " text TEXT NOT NULL, is_html INTEGER NOT NULL, created_at REAL NOT NULL);"
        "INSERT INTO outbox(screen_name, text, is_html, created_at) VALUES ('Bob', 'old', 0, 1);"
        "PRAGMA user_version=1;",
    )
    async with await Store.open(path) as store:
        [old] = await store.outbox_pending()
        assert (old.screen_name, old.text, len(old.cookie)) == ("Bob", "old", 8)
        new = await store.outbox_add("Bob", Reply("new", False), 2.0)
        assert [i.cookie for i in await store.outbox_pending()][1] == new.cookie
    assert _query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


async def test_writes_made_in_one_turn_share_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    # However slow this machine's first write is, the others count as following it closely.
    monkeypatch.setattr(store_module, "LONE_WRITE_GAP", 60.0)
    async with await Store.open(tmp_path / "s.db") as store:
        ids = await asyncio.gather(*(store.inbox_add(f"u{n}", "U", "hi", 1.0) for n in range(50)))
        # Fifty IMs stored by tasks in one turn: the first came alone and was committed at once,
        # the other 49 followed within LONE_WRITE_GAP and share one commit.
        assert store.commits == 2
        items = await asyncio.gather(
            *(store.complete([i], "U", [Reply("re", False)], 2.0) for i in ids)
        )
        assert store.commits == 3  # and the fifty swaps, each awaited, one more
        assert len(items) == 50
        assert await store.counts() == {"conversations": 0, "inbox": 0, "outbox": 50}


async def test_a_failing_operation_leaves_the_rest_of_its_turn_intact(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        kept = await store.inbox_add("bob", "Bob", "kept", 1.0)
        with pytest.raises(StoreWriteError) as info:
            # Half of this operation succeeds (the delete) before the insert fails.
            await store.complete([kept], "Bob", [Reply(None, False)], 2.0)  # type: ignore[arg-type]
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        other = await store.inbox_add("carol", "Carol", "also kept", 3.0)
    async with await Store.open(tmp_path / "s.db") as store:
        pending, _ = await store.inbox_pending(now=3.0, max_age=10.0)
        assert [p.id for p in pending] == [kept, other]
        assert await store.outbox_pending() == []


REPO = Path(__file__).resolve().parents[2]
CRASH_SCRIPT = """
import asyncio, os, sys
from pathlib import Path
from aimbot.store import Reply, Store

async def main(path: Path, wait_for_commit: bool) -> None:
    store = await Store.open(path)
    inbox_id = await store.inbox_add("bob", "Bob", "question", 1.0)
    if wait_for_commit:
        await store.complete([inbox_id], "Bob", [Reply("answer", False)], 2.0)
    os._exit(9)  # like SIGKILL: no close, no flush, no cleanup

asyncio.run(main(Path(sys.argv[1]), sys.argv[2] == "complete"))
"""


@pytest.mark.parametrize("step", ["inbox", "complete"])
async def test_what_a_crash_keeps(tmp_path: Path, step: str) -> None:
    """What complete() returned survives a crash; so does everything written before it."""
    import asyncio
    import sys

    path = tmp_path / "s.db"
    crashing = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_SCRIPT, str(path), step, cwd=REPO
    )
    async with asyncio.timeout(60):
        assert await crashing.wait() == 9
    async with await Store.open(path, owner=False) as look:  # as the doctor does
        assert look.stopped_uncleanly
    async with await Store.open(path) as store:
        pending, _ = await store.inbox_pending(now=2.0, max_age=10.0)
        outbox = await store.outbox_pending()
        assert store.stopped_uncleanly  # still: the look from outside left the marker
    if step == "complete":
        assert (pending, [o.text for o in outbox]) == ([], ["answer"])
    else:
        # Killed before the loop turned: a lone IM is committed by inbox_add itself, so it is
        # kept, and the next start answers it.
        assert ([p.text for p in pending], outbox) == (["question"], [])


async def test_a_clean_close_is_told_apart_from_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        assert not store.stopped_uncleanly  # a new file
    async with await Store.open(path) as store:
        assert not store.stopped_uncleanly  # closed cleanly last time


async def test_recently_seen_is_who_wrote_near_the_last_im_and_forgets_the_rest(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.inbox_add("old", "Old Timer", "long ago", 100.0)
        await store.inbox_add("bob", "bob", "hi", 900.0)
        await store.inbox_add("bob", "Bob", "again", 950.0)  # the latest spelling wins
        await store.inbox_add("amy", "Amy", "last", 1000.0)
        assert await store.recently_seen(120.0) == [("amy", "Amy"), ("bob", "Bob")]
        assert await store.recently_seen(10_000.0) == [("amy", "Amy"), ("bob", "Bob")]  # pruned


def _last_seen(path: Path, user_key: str) -> float | None:
    rows = _query(path, "SELECT last_seen FROM seen WHERE user_key = ?", (user_key,))
    return float(rows[0][0]) if rows else None


async def test_a_busy_users_seen_row_is_rewritten_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        await store.inbox_add("bob", "Bob", "one", 100.0)
        await store.inbox_add("bob", "Bob", "two", 100.5)  # within SEEN_RESOLUTION: skipped
    assert _last_seen(path, "bob") == 100.0
    async with await Store.open(path) as store:
        await store.inbox_add("bob", "Bob", "three", 100.6)  # a new process knows nothing
        await store.inbox_add("bob", "Bob", "four", 100.6 + store_module.SEEN_RESOLUTION)
        await store.inbox_add("bob", "BOB", "five", 101.7)  # a new spelling is written at once
        pending, _ = await store.inbox_pending(now=102.0, max_age=10.0)
        assert [p.text for p in pending] == ["one", "two", "three", "four", "five"]
    assert _last_seen(path, "bob") == 101.7
    async with await Store.open(path) as store:
        assert await store.recently_seen(120.0) == [("bob", "BOB")]


async def test_a_rolled_back_seen_row_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether `seen` needs writing is read from the file, so a row lost with its transaction
    is not taken as written."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        await store.inbox_add("bob", "Bob", "one", 100.0)  # alone: committed, seen at 100.0
        fill_to_the_page_limit(store)
        make_room_for_one_tiny_im(store)
        await store.set_conversation("amy", "conv-1", 1.0)  # opens this turn's transaction
        await store.inbox_add("bob", "Bob", "b", 101.5)  # joins it: seen at 101.5, for now
        with pytest.raises(StoreWriteError, match="database or disk is full"):
            # One INSERT that needs pages the disk does not have: SQLite rolls back the whole
            # transaction, the IM and its `seen` row with it.
            await store.outbox_add("Amy", Reply("x" * 5000, False), 1.0)
        assert _last_seen(path, "bob") == 100.0
        space_returns(store)
        monkeypatch.setattr(store_module, "LONE_WRITE_GAP", 0.0)  # the next IM comes alone
        await store.inbox_add("bob", "Bob", "three", 102.0)  # a second after 100.0: written
    assert _last_seen(path, "bob") == 102.0


async def test_delivered_replies_are_deleted_however_many_at_once(tmp_path: Path) -> None:
    count = 2 * store_module.DELETE_CHUNK + 3
    async with await Store.open(tmp_path / "s.db") as store:
        items = [await store.outbox_add("Bob", Reply(f"r{n}", False), 1.0) for n in range(count)]
        store.outbox_done(item.id for item in items[1:])
        assert [o.text for o in await store.outbox_pending()] == ["r0"]


def _outbox_texts(path: Path) -> list[str]:
    return [str(row[0]) for row in _query(path, "SELECT text FROM outbox ORDER BY id")]


CRASH_AFTER_DONE = """
import asyncio, os, sys
from pathlib import Path
from aimbot.store import Reply, Store

async def main(path: Path) -> None:
    store = await Store.open(path)
    first = await store.outbox_add("Bob", Reply("first", False), 1.0)
    second = await store.outbox_add("Bob", Reply("second", False), 1.0)
    await asyncio.sleep(0)  # their commit
    store.outbox_done([first.id])
    commits = store.commits
    await asyncio.sleep(0)  # the end of the turn: its row goes
    assert store.commits == commits  # deleting took no group commit of its own
    store.outbox_done([second.id])
    os._exit(9)  # before the second one's flush: it stays, and is sent again

asyncio.run(main(Path(sys.argv[1])))
"""


async def test_delivered_replies_are_deleted_without_a_commit_of_their_own(
    tmp_path: Path,
) -> None:
    """With the turn's transaction, or in a statement of their own at the end of the turn; a
    crash before that leaves the row, and the reply goes out again (same cookie)."""
    import asyncio
    import sys

    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        delivered = await store.outbox_add("Bob", Reply("delivered", False), 1.0)
        store.outbox_done([delivered.id])
        commits = store.commits
        await store.inbox_add("amy", "Amy", "hi", 2.0)  # the next write's commit takes it along
        ticket = store.commit_ticket()
        assert ticket is not None
        await ticket
        assert store.commits == commits + 1
    assert _outbox_texts(path) == []
    crashing = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_AFTER_DONE, str(tmp_path / "c.db"), cwd=REPO
    )
    async with asyncio.timeout(60):
        assert await crashing.wait() == 9
    assert _outbox_texts(tmp_path / "c.db") == ["second"]


async def test_delivered_replies_go_at_the_end_of_their_turn_in_one_statement(
    tmp_path: Path,
) -> None:
    """Not with the IM the user sends next (stored alone, in a statement of its own): a crash
    after that IM must not send the reply again."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        first = await store.outbox_add("Bob", Reply("first", False), 1.0)
        second = await store.outbox_add("Bob", Reply("second", False), 1.0)
        await asyncio.sleep(0)  # their commit
        commits = store.commits
        store.outbox_done([first.id])
        store.outbox_done([second.id])  # confirmed in the same turn: the same statement
        assert _outbox_texts(path) == ["first", "second"]  # still in this turn
        await asyncio.sleep(0)
        assert _outbox_texts(path) == []
        assert store.commits == commits  # no group transaction for it


async def test_under_a_flood_delivered_replies_wait_for_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        store.done_flush_seconds = 0.01
        delivered = await store.outbox_add("Bob", Reply("delivered", False), 1.0)
        await asyncio.sleep(0)  # its commit
        store._paced = True  # as a flood leaves it: commits gather several turns' writes
        store.outbox_done([delivered.id])
        await asyncio.sleep(0)
        assert _outbox_texts(path) == ["delivered"]  # not at the end of the turn
        flushed = asyncio.get_running_loop().create_future()
        # Timers due at the same time run in the order they were made: the store's goes first.
        asyncio.get_running_loop().call_later(0.01, flushed.set_result, None)
        await flushed
        assert _outbox_texts(path) == []


async def test_a_staged_swap_is_durable_once_its_ticket_resolves(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        inbox_id = await store.inbox_add("bob", "Bob", "question", 1.0)
        items = store.stage_complete([inbox_id], "Bob", [Reply("answer", False)], 2.0)
        ticket = store.commit_ticket()
        assert ticket is not None and not ticket.done()
        commits = store.commits
        await ticket
        assert store.commits == commits + 1 and [i.text for i in items] == ["answer"]
    async with await Store.open(path) as store:
        assert [o.text for o in await store.outbox_pending()] == ["answer"]
        assert (await store.inbox_pending(now=2.0, max_age=10.0))[0] == []


async def test_nobody_was_seen_in_a_new_file(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        assert await store.recently_seen(120.0) == []


# --- issue 13 item 5: a full disk -----------------------------------------------------------------


def fill_to_the_page_limit(store: Store) -> None:
    """Make the real file 'full': no page may be added, and the inbox's last page is packed.

    SQLite's max_page_count on the store's own connection: an insert that needs one more page
    fails exactly as on a full disk ("database or disk is full", SQLITE_FULL).
    """
    db = store._db  # the store's one connection: the limit is per connection
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    for size in (1000, 100, 10, 1):
        while True:
            try:
                with db:
                    db.execute(  # numbered by the store, which alone writes its file
                        "INSERT INTO inbox(id, user_key, screen_name, text, received_at) "
                        "VALUES (?, 'filler', 'filler', ?, 0.5)",
                        (next(store._inbox_ids), "f" * size),
                    )
            except sqlite3.OperationalError as e:
                assert "full" in str(e)
                break


def make_room_for_one_tiny_im(store: Store) -> None:
    """Free exactly the last filler's cell: an IM no bigger ("amy", "a") fits, nothing more."""
    store._db.execute("DELETE FROM inbox WHERE id = (SELECT MAX(id) FROM inbox)")


def space_returns(store: Store) -> None:
    store._db.execute("PRAGMA max_page_count=1073741823")


async def test_a_full_disk_fails_the_write_and_its_turn_then_recovers(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        fill_to_the_page_limit(store)
        # An IM that comes alone and does not fit: its write fails, and says so.
        with pytest.raises(StoreWriteError, match="database or disk is full") as info:
            await store.inbox_add("bob", "Bob", "x" * 5000, 1.0)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert store.commit_ticket() is None
        # Two writes in one turn: the first fits (its table has room), the second needs a page.
        # SQLite rolls back the whole transaction on SQLITE_FULL, so the first is lost too, and
        # its ticket says so.
        await store.set_conversation("amy", "conv-1", 1.0)
        ticket = store.commit_ticket()
        assert ticket is not None
        with pytest.raises(StoreWriteError, match="database or disk is full") as info:
            await store.outbox_add("Bob", Reply("x" * 5000, False), 1.0)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StoreWriteError):
            await ticket
        assert await store.get_conversation("amy") is None
        pending, _ = await store.inbox_pending(now=1.0, max_age=10.0)
        assert {p.user_key for p in pending} == {"filler"}
        assert await store.outbox_pending() == []
        # Space returns: the very next write works, no restart needed.
        space_returns(store)
        await asyncio.sleep(store_module.LONE_WRITE_GAP)
        kept = await store.inbox_add("bob", "Bob", "x" * 5000, 2.0)
        assert store.commit_ticket() is None  # alone, and committed already
    async with await Store.open(tmp_path / "s.db") as store:
        pending, _ = await store.inbox_pending(now=2.0, max_age=10.0)
        assert kept in [p.id for p in pending]


async def test_a_schema_3_file_is_upgraded_in_place_keeping_its_inbox(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _old_file(
        path,
        "CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, user_key TEXT NOT NULL,"
        " screen_name TEXT NOT NULL, text TEXT NOT NULL, received_at REAL NOT NULL);"
        "INSERT INTO inbox(user_key, screen_name, text, received_at) VALUES ('bob', 'Bob', 'q', 1);"
        "PRAGMA user_version=3;",
    )
    async with await Store.open(path) as store:
        [old] = (await store.inbox_pending(now=2.0, max_age=100.0))[0]
        assert (old.text, old.parts_sent) == ("q", 0)
        await store.stream_part([old.id], "Bob", Reply("part 1", False), 3.0)
    async with await Store.open(path) as store:
        [again] = (await store.inbox_pending(now=4.0, max_age=100.0))[0]
        assert (again.id, again.parts_sent) == (old.id, 1)
    assert _query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


SCHEMA_4 = (
    "CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, user_key TEXT NOT NULL,"
    " screen_name TEXT NOT NULL, text TEXT NOT NULL, received_at REAL NOT NULL,"
    " parts_sent INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX inbox_user ON inbox(user_key);"
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, screen_name TEXT NOT NULL,"
    " text TEXT NOT NULL, is_html INTEGER NOT NULL, created_at REAL NOT NULL, cookie BLOB);"
    "CREATE TABLE seen (user_key TEXT PRIMARY KEY, screen_name TEXT NOT NULL,"
    " last_seen REAL NOT NULL);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE conversations (user_key TEXT PRIMARY KEY, conversation_id TEXT NOT NULL,"
    " updated_at REAL NOT NULL);"
    "INSERT INTO inbox(user_key, screen_name, text, received_at, parts_sent)"
    " VALUES ('bob', 'Bob', 'q1', 1, 0), ('bob', 'Bob', 'q2', 1, 2), ('amy', 'Amy', 'q3', 1, 0);"
    "DELETE FROM inbox WHERE text = 'q3';"  # its id, 3, is the highest AUTOINCREMENT gave
    "INSERT INTO outbox(screen_name, text, is_html, created_at, cookie)"
    " VALUES ('Bob', 'part', 1, 1, X'0102030405060708');"
    "PRAGMA user_version=4;"
)


async def test_a_schema_4_file_is_upgraded_in_place_without_autoincrement(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    _old_file(path, SCHEMA_4)
    async with await Store.open(path) as store:
        pending, _ = await store.inbox_pending(now=2.0, max_age=100.0)
        assert [(p.id, p.text, p.parts_sent) for p in pending] == [(1, "q1", 0), (2, "q2", 2)]
        [part] = await store.outbox_pending()
        assert (part.id, part.text, part.is_html, part.cookie) == (
            1,
            "part",
            True,
            bytes(range(1, 9)),
        )
        newer = await store.inbox_add("cat", "Cat", "q4", 2.0)
        assert newer > 2
    assert _query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION == 5
    tables = dict(_query(path, "SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    assert "AUTOINCREMENT" not in tables["inbox"] + tables["outbox"]
    assert not any(name.endswith("_schema4") for name in tables)
    assert (
        _query(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'inbox_user'")
        == []
    )


async def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    # A schema-4 file whose outbox cannot be copied: a row breaks the new table's NOT NULL.
    _old_file(
        path,
        SCHEMA_4.replace("text TEXT NOT NULL, is_html", "text TEXT, is_html").replace(
            "VALUES ('Bob', 'part',", "VALUES ('Bob', NULL,"
        ),
    )
    with pytest.raises(StoreError, match="NOT NULL"):
        await Store.open(path)
    assert _query(path, "PRAGMA user_version")[0][0] == 4
    tables = dict(_query(path, "SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    assert "AUTOINCREMENT" in tables["inbox"] and "inbox_schema4" not in tables
    assert _query(path, "SELECT COUNT(*) FROM inbox")[0][0] == 2


async def test_no_row_id_is_handed_out_twice_while_the_bot_runs(tmp_path: Path) -> None:
    """Without AUTOINCREMENT SQLite would give the newest row's id again once it is deleted:
    a worker still holding a "clear"ed IM's id would then delete the next IM with it."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        cleared = await store.inbox_add("bob", "Bob", "hi", 1.0)
        assert await store.forget_user("bob") == [cleared]
        after = await store.inbox_add("bob", "Bob", "again", 2.0)
        assert after > cleared
        sent = await store.outbox_add("Bob", Reply("re", False), 2.0)
        store.outbox_done([sent.id])
        assert await store.counts() == {"conversations": 0, "inbox": 1, "outbox": 0}
        assert (await store.outbox_add("Bob", Reply("re 2", False), 3.0)).id > sent.id
    async with await Store.open(path) as store:  # a new process: above every row kept
        assert await store.inbox_add("bob", "Bob", "later", 4.0) > after


async def test_users_count_each_ones_unanswered_ims(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        for n in range(3):
            await store.inbox_add("bob", "Bob", f"q{n}", 10.0 + n)
        await store.inbox_add("amy", "Amy", "q", 20.0)
        await store.set_conversation("cat", "conv-c", 30.0)
        rows = {row.user_key: (row.screen_name, row.pending) for row in await store.users(10)}
    assert rows == {"bob": ("Bob", 3), "amy": ("Amy", 1), "cat": (None, 0)}


async def test_a_streamed_part_and_its_count_are_stored_together(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        a = await store.inbox_add("bob", "Bob", "hi", 1.0)
        b = await store.inbox_add("bob", "Bob", "there", 1.0)
        first = await store.stream_part([a, b], "Bob", Reply("(1/...) one", True), 2.0)
        second = await store.stream_part([a, b], "Bob", Reply("(2/...) two", True), 2.0)
        assert [i.id for i in await store.outbox_pending()] == [first.id, second.id]
        pending, _ = await store.inbox_pending(now=3.0, max_age=100.0)
        assert [(p.id, p.parts_sent) for p in pending] == [(a, 2), (b, 2)]
        await store.complete([a, b], "Bob", [Reply("(3/3) three", True)], 4.0)
        assert await store.counts() == {"conversations": 0, "inbox": 0, "outbox": 3}


async def test_after_commit_hooks_run_inside_the_commit_before_the_tickets_callbacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        with pytest.raises(RuntimeError, match="needs a write pending"):
            store.after_commit(lambda error: None)
        heard: list[str] = []
        await store.set_conversation("bob", "conv-1", 1.0)
        ticket = store.commit_ticket()
        assert ticket is not None
        ticket.add_done_callback(lambda _: heard.append("ticket"))

        def broken(error: StoreError | None) -> None:
            raise RuntimeError("a broken hook")

        store.after_commit(lambda error: heard.append(f"first {error}"))
        store.after_commit(broken)
        store.after_commit(lambda error: heard.append(f"second {error}"))
        commits = store.commits
        await ticket
        assert store.commits == commits + 1
        assert heard == ["first None", "second None", "ticket"]
        assert "a hook run after a commit failed" in caplog.text
        # Hooks belong to their transaction: the next one starts with none.
        await store.set_conversation("bob", "conv-2", 2.0)
        ticket = store.commit_ticket()
        assert ticket is not None
        await ticket
        assert heard == ["first None", "second None", "ticket"]


async def test_after_commit_hooks_hear_why_the_transaction_was_lost(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        fill_to_the_page_limit(store)
        await store.set_conversation("amy", "conv-1", 1.0)
        errors: list[StoreError | None] = []
        store.after_commit(errors.append)
        with pytest.raises(StoreWriteError, match="database or disk is full"):
            await store.outbox_add("Bob", Reply("x" * 5000, False), 1.0)
        assert len(errors) == 1 and isinstance(errors[0], StoreWriteError)
        assert "database or disk is full" in str(errors[0])


async def test_an_answer_whose_second_statement_fails_never_leaves_both_rows(
    tmp_path: Path,
) -> None:
    # The usual answer is written without a savepoint, insert first: if the delete after it
    # fails and SQLite keeps the transaction open, the whole turn is rolled back, so the IM and
    # its answer are never both kept (a restart would send the answer and ask again).
    async with await Store.open(tmp_path / "s.db") as store:
        poison = await store.inbox_add("bob", "Bob", "poison", 1.0)
        assert store.commit_ticket() is None  # alone: committed already
        store._db.execute(
            "CREATE TRIGGER refuse BEFORE DELETE ON inbox WHEN old.text = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        await store.set_conversation("carol", "conv-1", 2.0)
        same_turn = store.commit_ticket()
        assert same_turn is not None
        with pytest.raises(StoreWriteError, match="refused"):
            store.stage_complete([poison], "Bob", [Reply("the answer", False)], 3.0)
        with pytest.raises(StoreWriteError):
            await same_turn
    async with await Store.open(tmp_path / "s.db") as store:
        pending, _ = await store.inbox_pending(now=3.0, max_age=10.0)
        assert [p.id for p in pending] == [poison]
        assert await store.outbox_pending() == []
        assert await store.get_conversation("carol") is None


async def test_a_lone_write_is_committed_in_the_next_turn(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.set_conversation("amy", "conv-1", 1.0)
        ticket = store.commit_ticket()
        assert ticket is not None and not ticket.done()
        await asyncio.sleep(0)  # one turn of the loop
        assert ticket.done() and store.commits == 1


async def test_a_lone_im_is_committed_before_inbox_add_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An IM's intake is one statement: alone, it is its own transaction, with nothing to wait
    for; one that follows another write within LONE_WRITE_GAP joins that write's commit."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        first = await store.inbox_add("amy", "Amy", "hi", 1.0)
        assert store.commit_ticket() is None and store.commits == 1
        assert _query(path, "SELECT id FROM inbox") == [(first,)]  # in the file already
        assert _last_seen(path, "amy") == 1.0  # and its sender noted, in the same statement
        # (the gap made long: this machine's clock has moved on by the checks above)
        monkeypatch.setattr(store_module, "LONE_WRITE_GAP", 60.0)
        second = await store.inbox_add("bob", "Bob", "right after", 1.0)
        ticket = store.commit_ticket()
        assert ticket is not None and not ticket.done()  # a burst: it waits for its turn's end
        await ticket
        assert store.commits == 2
        monkeypatch.setattr(store_module, "LONE_WRITE_GAP", 0.0)
        await store.inbox_add("carol", "Carol", "later", 2.0)
        assert store.commit_ticket() is None and store.commits == 3
        assert _query(path, "SELECT COUNT(*) FROM inbox WHERE id >= ?", (first,)) == [(3,)]
        assert second > first


async def test_under_a_flood_of_writes_commits_are_paced_and_each_gathers_several_turns(
    tmp_path: Path,
) -> None:
    """Past PACE_WRITES writes a second, a commit waits until COMMIT_PACE after the previous
    one; once the flood has passed, commits go at once again."""
    path = tmp_path / "s.db"
    commits: dict[int, float] = {}
    async with await Store.open(path) as store:

        def note(error: StoreWriteError | None) -> None:
            assert error is None
            commits.setdefault(store.commits, store._last_commit)  # when it began

        started = asyncio.get_running_loop().time()
        writes = await one_write_per_turn(store, 4 * store_module.PACE_WINDOW, note)
        flood = [t for t in commits.values() if t - started > 2 * store_module.PACE_WINDOW]
        gaps = [b - a for a, b in itertools.pairwise(flood)]
        assert gaps and min(gaps) >= store_module.COMMIT_PACE * 0.99
        assert store.commits < writes / 3  # several turns' writes in each commit
        # The flood has passed: the next write is measured against a quiet window.
        await asyncio.sleep(store_module.PACE_WINDOW)
        await store.inbox_add("late", "Late", "hi", 2.0)
        ticket = store.commit_ticket()
        assert ticket is not None
        await asyncio.sleep(0)
        assert ticket.done()
    assert _query(path, "SELECT COUNT(*) FROM inbox") == [(writes + 1,)]


async def test_commit_now_commits_within_the_call_and_runs_the_hooks(tmp_path: Path) -> None:
    """A reply about to be sent need not wait for the end of the turn."""
    path = tmp_path / "s.db"
    heard: list[StoreWriteError | None] = []
    async with await Store.open(path) as store:
        inbox_id = await store.inbox_add("amy", "Amy", "hi", 1.0)
        await asyncio.sleep(0)  # that IM's own commit
        items = store.stage_complete([inbox_id], "Amy", [Reply("hello", False)], 2.0)
        ticket = store.commit_ticket()
        store.after_commit(heard.append)
        commits = store.commits
        store.commit_now()
        assert ticket is not None and ticket.done() and ticket.exception() is None
        assert heard == [None] and store.commits == commits + 1
        assert store.commit_ticket() is None  # the next write opens a new transaction
        store.commit_now()  # nothing pending: nothing happens
        assert store.commits == commits + 1
        assert _query(path, "SELECT id FROM outbox") == [(items[0].id,)]
        assert _query(path, "SELECT COUNT(*) FROM inbox") == [(0,)]


async def test_commit_now_leaves_a_paced_transaction_to_its_pace(tmp_path: Path) -> None:
    """Under a flood a commit gathers several turns' writes: commit_now does not break that."""
    async with await Store.open(tmp_path / "s.db") as store:
        await one_write_per_turn(store, 2 * store_module.PACE_WINDOW)
        ticket = store.commit_ticket()
        assert ticket is not None and not ticket.done()  # waiting for its pace
        store.commit_now()
        assert not ticket.done()
        await ticket
        assert ticket.exception() is None


async def test_close_commits_a_paced_transaction_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await Store.open(path)
    writes = await one_write_per_turn(store, 2 * store_module.PACE_WINDOW)
    ticket = store.commit_ticket()
    assert ticket is not None and not ticket.done()  # waiting for its pace
    await store.close()
    assert ticket.done() and ticket.exception() is None
    assert _query(path, "SELECT COUNT(*) FROM inbox") == [(writes,)]
