"""Round-robin scheduling of replies across users, each user's replies in order.

The server's send budget is shared by everyone the bot talks to; in one arrival-ordered queue a
user whose answer has ten parts (or forty users who wrote first) holds up a one-line answer for
everyone behind them. Here every user with something queued has a place in a ring, and each turn
takes one reply from the user at the front and moves that user to the back: a user who starts
waiting now waits at most one reply per other waiting user before their own goes out. Within one
user, replies go lowest outbox id first, which is the order their answers were produced, so parts
(and a reply held while the user was offline) keep their order.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator

from aimbot.store import OutboxItem


class FairQueue:
    """Queued replies: `push` any order, `pop` one per user per round, per-user id order."""

    def __init__(self, key: Callable[[OutboxItem], str]) -> None:
        self._key = key
        self._per_user: dict[str, list[tuple[int, OutboxItem]]] = {}
        self._ring: deque[str] = deque()
        self._ids: set[int] = set()
        self._urgent: deque[OutboxItem] = deque()  # short notices that jump the line

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._ids

    @property
    def users(self) -> int:
        """Users with at least one queued reply (the length of one round)."""
        return len(self._per_user)

    def push(self, item: OutboxItem, *, urgent: bool = False) -> bool:
        """Queue a reply; False if it was queued already.

        `urgent` replies (a one-line "you are in the queue" notice) go before every round; the
        caller bounds how many there are, or they would starve everyone else.
        """
        if item.id in self._ids:
            return False
        self._ids.add(item.id)
        if urgent:
            self._urgent.append(item)
            return True
        key = self._key(item)
        heap = self._per_user.get(key)
        if heap is None:
            heap = self._per_user[key] = []
            self._ring.append(key)  # a newcomer waits at most one round
        heapq.heappush(heap, (item.id, item))
        return True

    def pop(self) -> OutboxItem | None:
        """The next reply: an urgent one, else the oldest of the user whose turn it is."""
        if self._urgent:
            urgent = self._urgent.popleft()
            self._ids.discard(urgent.id)
            return urgent
        if not self._ring:
            return None
        key = self._ring.popleft()
        heap = self._per_user[key]
        _, item = heapq.heappop(heap)
        self._ids.discard(item.id)
        if heap:
            self._ring.append(key)
        else:
            del self._per_user[key]
        return item

    def heads(self) -> Iterator[OutboxItem]:
        """Each waiting user's next reply (the oldest queued reply is among them)."""
        yield from self._urgent
        for heap in self._per_user.values():
            yield heap[0][1]

    def remove_if(self, doomed: Callable[[OutboxItem], bool]) -> list[OutboxItem]:
        """Take out every queued reply for which `doomed` is true (expiry); returns them."""
        removed = [item for item in self._urgent if doomed(item)]
        if removed:
            self._urgent = deque(item for item in self._urgent if not doomed(item))
        for key in list(self._per_user):
            heap = self._per_user[key]
            kept = [(i, item) for i, item in heap if not doomed(item)]
            if len(kept) == len(heap):
                continue
            removed.extend(item for _, item in heap if doomed(item))
            if kept:
                heapq.heapify(kept)
                self._per_user[key] = kept
            else:
                del self._per_user[key]
                self._ring.remove(key)
        for item in removed:
            self._ids.discard(item.id)
        return removed
