"""Server-stored buddy lists ("feedbag") for the devserver, kept per account for the life of the
server process, so a client keeps its list across its own reconnects (as on Open OSCAR Server).

Bounded like every input: items per account, name and attribute sizes. A request that would
overflow is refused as a whole, with a status the client can show, never half applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aimbot.oscar.snacs import normalize_screen_name
from aimbot.oscar.snacs_services import FEEDBAG_BUDDY, FeedbagItem

MAX_ITEMS = 1000  # per account; OOS advertises a few hundred per class
MAX_NAME_BYTES = 200  # OOS's advertised max item name length
MAX_ATTRIBUTE_BYTES = 2048
STATUS_OK = 0x0000
STATUS_NOT_FOUND = 0x0002
STATUS_EXISTS = 0x0003
STATUS_INVALID = 0x000A
STATUS_LIMIT = 0x000C


@dataclass
class Feedbag:
    """One account's list: items by (group id, item id), and when it last changed (unix s)."""

    items: dict[tuple[int, int], FeedbagItem] = field(default_factory=dict)
    last_modified: int = 0

    def buddies(self) -> set[str]:
        """Normalised screen names of the account's buddies (class 0 items)."""
        return {
            normalize_screen_name(item.name)
            for item in self.items.values()
            if item.class_id == FEEDBAG_BUDDY
        }


def _valid(item: FeedbagItem) -> bool:
    return (
        len(item.name.encode("utf-8", errors="replace")) <= MAX_NAME_BYTES
        and len(item.attributes.encode()) <= MAX_ATTRIBUTE_BYTES
    )


class FeedbagStore:
    """All accounts' lists, and who watches whom (buddy → accounts listing it)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._bags: dict[str, Feedbag] = {}
        self._watchers: dict[str, set[str]] = {}
        self._clock = clock

    def get(self, account: str) -> Feedbag:
        return self._bags.get(account) or Feedbag()

    def watchers_of(self, buddy: str) -> frozenset[str]:
        """Accounts that have `buddy` (normalised) on their list."""
        return frozenset(self._watchers.get(buddy, ()))

    def insert(self, account: str, items: Iterable[FeedbagItem]) -> tuple[int, ...]:
        return self._apply(account, tuple(items), mode="insert")

    def update(self, account: str, items: Iterable[FeedbagItem]) -> tuple[int, ...]:
        return self._apply(account, tuple(items), mode="update")

    def delete(self, account: str, items: Iterable[FeedbagItem]) -> tuple[int, ...]:
        return self._apply(account, tuple(items), mode="delete")

    def _apply(self, account: str, items: tuple[FeedbagItem, ...], *, mode: str) -> tuple[int, ...]:
        bag = self._bags.setdefault(account, Feedbag())
        before = bag.buddies()
        results = []
        for item in items:
            present = item.key in bag.items
            if mode == "delete":
                results.append(STATUS_OK if bag.items.pop(item.key, None) else STATUS_NOT_FOUND)
                continue
            if not _valid(item):
                results.append(STATUS_INVALID)
            elif not present and len(bag.items) >= MAX_ITEMS:
                results.append(STATUS_LIMIT)
            else:
                # Like OOS, insert and update are both an upsert; a strict server would say
                # "exists" / "not found", which clients only log.
                bag.items[item.key] = item
                results.append(STATUS_OK)
        if any(r == STATUS_OK for r in results):
            bag.last_modified = int(self._clock())
        self._reindex(account, before, bag.buddies())
        return tuple(results)

    def _reindex(self, account: str, before: set[str], after: set[str]) -> None:
        for gone in before - after:
            watchers = self._watchers.get(gone)
            if watchers is not None:
                watchers.discard(account)
                if not watchers:
                    del self._watchers[gone]
        for new in after - before:
            self._watchers.setdefault(new, set()).add(account)
