"""The devserver's stored buddy lists: upserts and deletes, bounds, and who watches whom."""

from __future__ import annotations

from aimbot.devserver.feedbag import (
    MAX_ITEMS,
    MAX_NAME_BYTES,
    STATUS_INVALID,
    STATUS_LIMIT,
    STATUS_NOT_FOUND,
    STATUS_OK,
    FeedbagStore,
)
from aimbot.oscar.snacs_services import FEEDBAG_BUDDY, FEEDBAG_GROUP, FeedbagItem


def buddy(name: str, item_id: int) -> FeedbagItem:
    return FeedbagItem(name, 1, item_id, FEEDBAG_BUDDY)


def test_a_new_account_has_an_empty_list() -> None:
    store = FeedbagStore(clock=lambda: 1000.0)
    assert store.get("alice").items == {} and store.get("alice").last_modified == 0


def test_insert_update_delete_and_the_watchers_follow() -> None:
    now = [1000.0]
    store = FeedbagStore(clock=lambda: now[0])
    group = FeedbagItem("Buddies", 1, 0, FEEDBAG_GROUP)
    assert store.insert("alice", [group, buddy("Bob Smith", 5)]) == (STATUS_OK, STATUS_OK)
    assert store.watchers_of("bobsmith") == {"alice"}
    assert store.get("alice").last_modified == 1000
    now[0] = 2000.0
    # The same item id now names carol: bob loses a watcher, carol gains one.
    assert store.update("alice", [buddy("carol", 5)]) == (STATUS_OK,)
    assert store.watchers_of("bobsmith") == frozenset()
    assert store.watchers_of("carol") == {"alice"}
    assert store.delete("alice", [buddy("carol", 5), buddy("nobody", 9)]) == (
        STATUS_OK,
        STATUS_NOT_FOUND,
    )
    assert store.watchers_of("carol") == frozenset()
    assert set(store.get("alice").items) == {(1, 0)}
    assert store.get("alice").last_modified == 2000


def test_oversized_items_and_full_lists_are_refused_item_by_item() -> None:
    store = FeedbagStore(clock=lambda: 1.0)
    too_long = buddy("x" * (MAX_NAME_BYTES + 1), 1)
    assert store.insert("alice", [too_long]) == (STATUS_INVALID,)
    store.insert("alice", [buddy(f"user{i}", i) for i in range(MAX_ITEMS)])
    assert store.insert("alice", [buddy("one-more", MAX_ITEMS + 1)]) == (STATUS_LIMIT,)
    assert store.update("alice", [buddy("renamed", 3)]) == (STATUS_OK,)  # replacing is fine
    assert len(store.get("alice").items) == MAX_ITEMS


def test_lists_are_per_account() -> None:
    store = FeedbagStore(clock=lambda: 1.0)
    store.insert("alice", [buddy("carol", 1)])
    store.insert("bob", [buddy("carol", 1)])
    assert store.watchers_of("carol") == {"alice", "bob"}
    store.delete("bob", [buddy("carol", 1)])
    assert store.watchers_of("carol") == {"alice"}
    assert store.get("bob").items == {}
