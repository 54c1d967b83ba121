"""Delivery bookkeeping for outgoing replies: order, confirmation, parking and expiry.

Kept free of sockets so the rules are testable on their own. A reply is "delivered" only when the
server confirms it (ICBM host ack, requested on every send) or when a server that never acks has
stayed silent about it for `ack_timeout`; a reply whose session drops before that goes back into
the queue. That makes delivery at-least-once, with a duplicate only if a server dies between
relaying an IM and acknowledging it — and it means a reply is never lost to a dropped connection.
Replies are sent lowest outbox id first, i.e. in the order the answers were produced, across users.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass

from aimbot.store import OutboxItem

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    item: OutboxItem
    sent_at: float | None  # None while the send waits for rate budget / the socket


@dataclass(slots=True)
class _Parked:
    item: OutboxItem
    retry_at: float


class DeliveryQueue:
    """What still has to reach a user, and what reached the server but is not confirmed yet."""

    def __init__(self, *, ttl: float, offline_retry: float = 60.0, ack_timeout: float = 30.0):
        self.ttl = ttl
        self.offline_retry = offline_retry
        self.ack_timeout = ack_timeout
        self._heap: list[tuple[int, OutboxItem]] = []
        self._queued_ids: set[int] = set()
        self._in_flight: dict[bytes, _InFlight] = {}
        self._parked: dict[int, _Parked] = {}
        self._available = asyncio.Event()

    def __len__(self) -> int:
        """Replies not yet confirmed: queued, in flight or parked."""
        return len(self._heap) + len(self._in_flight) + len(self._parked)

    @property
    def queued(self) -> int:
        return len(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def push(self, item: OutboxItem) -> None:
        if item.id in self._queued_ids:
            return
        self._queued_ids.add(item.id)
        heapq.heappush(self._heap, (item.id, item))
        self._available.set()

    def pop(self) -> OutboxItem | None:
        if not self._heap:
            self._available.clear()
            return None
        _, item = heapq.heappop(self._heap)
        self._queued_ids.discard(item.id)
        if not self._heap:
            self._available.clear()
        return item

    async def get(self) -> OutboxItem:
        while True:
            item = self.pop()
            if item is not None:
                return item
            await self._available.wait()

    def sending(self, cookie: bytes, item: OutboxItem) -> None:
        """Register a send BEFORE writing it: the server's answer may beat the write's return."""
        self._in_flight[cookie] = _InFlight(item, None)

    def written(self, cookie: bytes, now: float) -> None:
        """The IM left for the server; from now on silence counts toward ack_timeout."""
        entry = self._in_flight.get(cookie)
        if entry is not None:
            entry.sent_at = now

    def unsent(self, cookie: bytes) -> None:
        """The write failed: the reply goes back in the queue."""
        entry = self._in_flight.pop(cookie, None)
        if entry is not None:
            self.push(entry.item)

    def acked(self, cookie: bytes) -> OutboxItem | None:
        entry = self._in_flight.pop(cookie, None)
        return entry.item if entry else None

    def rejected(self, cookie: bytes) -> OutboxItem | None:
        """The server refused it for good (blocked, refused by client …): forget it."""
        return self.acked(cookie)

    def recipient_offline(self, cookie: bytes, now: float) -> OutboxItem | None:
        entry = self._in_flight.pop(cookie, None)
        if entry is None:
            return None
        self._parked[entry.item.id] = _Parked(entry.item, now + self.offline_retry)
        return entry.item

    def session_lost(self) -> int:
        """Unconfirmed sends go back in the queue, to be sent again after reconnect."""
        count = len(self._in_flight)
        for entry in self._in_flight.values():
            self.push(entry.item)
        self._in_flight.clear()
        return count

    def maintain(self, now: float) -> tuple[list[OutboxItem], list[OutboxItem]]:
        """Periodic housekeeping.

        Returns (confirmed_by_silence, expired): the caller deletes both from the store and logs
        the expired ones. Parked replies whose retry time has come are queued again.
        """
        confirmed = [
            cookie
            for cookie, e in self._in_flight.items()
            if e.sent_at is not None and now - e.sent_at >= self.ack_timeout
        ]
        silent = [self._in_flight.pop(cookie).item for cookie in confirmed]
        expired: list[OutboxItem] = []
        for item_id, parked in list(self._parked.items()):
            if now - parked.item.created_at >= self.ttl:
                expired.append(parked.item)
                del self._parked[item_id]
            elif now >= parked.retry_at:
                del self._parked[item_id]
                self.push(parked.item)
        stale = [item for _, item in self._heap if now - item.created_at >= self.ttl]
        if stale:
            stale_ids = {item.id for item in stale}
            self._heap = [(i, item) for i, item in self._heap if i not in stale_ids]
            heapq.heapify(self._heap)
            self._queued_ids -= stale_ids
            expired.extend(stale)
            if not self._heap:
                self._available.clear()
        return silent, expired
