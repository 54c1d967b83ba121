"""Delivery bookkeeping for outgoing replies: order, confirmation, resends, parking and expiry.

Kept free of sockets so the rules are testable on their own. A reply is delivered only when the
server confirms it (ICBM host ack, requested on every send). A server over its rate limit drops an
IM without a word, so silence past `ack_timeout` means "not delivered": the reply is sent again
under the same cookie (a client shows a repeat once), with growing pauses, at most
`max_attempts` times, and then given up. Only a server that has acked nothing at all in a session
after `never_ack_after` such silences is taken to be one that never acks; from then on a written
reply counts as delivered, until an ack proves otherwise. A reply whose session drops before it
is confirmed goes back into the queue, so a dropped connection never loses one.
Only a send that had a fair chance counts toward `max_attempts`: one written while the server
was limiting us (it said so with a 01/0A notice, or our copy of its rate model says the send went
over the limit), and one whose session the server ended for sending too fast, was dropped for
rate, not lost in delivery. Such a send goes back in the queue as soon as the server says the
limit is cleared (or after `ack_timeout` if it never says so), and costs no attempt: a reply is
never given up merely because the server was rate-limiting us.
Replies are scheduled round-robin across users, each user's in the order their answers were
produced (bot/fairqueue.py). A reply parked because its user was offline goes back to the front
of that user's line as soon as the user writes again (`release`), so it arrives before the answer
to the new IM; the periodic retry remains for users who come back without writing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aimbot.bot.fairqueue import FairQueue
from aimbot.oscar.snacs import normalize_screen_name
from aimbot.store import OutboxItem

log = logging.getLogger(__name__)


DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RESEND_DELAY = 5.0
DEFAULT_NEVER_ACK_AFTER = 3


@dataclass(slots=True)
class _InFlight:
    item: OutboxItem
    sent_at: float | None  # None while the send waits for rate budget / the socket
    over_limit: bool = False  # written while the server was limiting us: no attempt spent


@dataclass(slots=True)
class Upkeep:
    """What one maintain() pass decided; the caller updates the store, log and metrics."""

    delivered: list[OutboxItem] = field(default_factory=list)  # silent, on a never-ack server
    resending: list[OutboxItem] = field(default_factory=list)  # no ack in time: sent again later
    given_up: list[OutboxItem] = field(default_factory=list)  # no ack after max_attempts sends
    # sent over the server's rate limit and not acked: queued again, no attempt spent
    rate_dropped: list[OutboxItem] = field(default_factory=list)
    expired: list[OutboxItem] = field(default_factory=list)  # undeliverable for ttl
    learned_never_acks: bool = False  # this pass concluded that the server never acks


@dataclass(slots=True)
class _Parked:
    item: OutboxItem
    retry_at: float
    resend: bool = False  # parked for want of an ack (not because the user is offline)


class DeliveryQueue:
    """What still has to reach a user, and what reached the server but is not confirmed yet."""

    def __init__(
        self,
        *,
        ttl: float,
        offline_retry: float = 60.0,
        ack_timeout: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        resend_delay: float = DEFAULT_RESEND_DELAY,
        never_ack_after: int = DEFAULT_NEVER_ACK_AFTER,
    ):
        self.ttl = ttl
        self.offline_retry = offline_retry
        self.ack_timeout = ack_timeout
        self.max_attempts = max(max_attempts, 1)
        self.resend_delay = resend_delay
        self.never_ack_after = max(never_ack_after, 1)
        self.never_acks = False  # learned: this server sends no host acks at all
        self._attempts: dict[int, int] = {}  # outbox id -> sends so far (kept across requeues)
        self._session_acks = 0
        self._session_silences = 0
        self._queue = FairQueue(lambda item: normalize_screen_name(item.screen_name))
        self._in_flight: dict[bytes, _InFlight] = {}
        self._parked: dict[int, _Parked] = {}
        self._available = asyncio.Event()

    def __len__(self) -> int:
        """Replies not yet confirmed: queued, in flight or parked."""
        return len(self._queue) + len(self._in_flight) + len(self._parked)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def waiting_users(self) -> int:
        """Users with a reply queued: one round of the scheduler."""
        return self._queue.users

    @property
    def parked(self) -> int:
        return len(self._parked)

    def oldest_queued(self) -> float | None:
        """created_at of the oldest reply waiting to be sent, if any."""
        return min((item.created_at for item in self._queue.heads()), default=None)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def push(self, item: OutboxItem, *, urgent: bool = False) -> None:
        if self._queue.push(item, urgent=urgent):
            self._available.set()

    def pop(self) -> OutboxItem | None:
        item = self._queue.pop()
        if not len(self._queue):
            self._available.clear()
        return item

    def pop_many(self, most: int) -> list[OutboxItem]:
        """Up to `most` replies, in the order pop() would give them one by one."""
        items: list[OutboxItem] = []
        while len(items) < most:
            item = self._queue.pop()
            if item is None:
                break
            items.append(item)
        if not len(self._queue):
            self._available.clear()
        return items

    async def get(self) -> OutboxItem:
        while True:
            item = self.pop()
            if item is not None:
                return item
            await self._available.wait()

    async def wait_queued(self) -> None:
        """Until at least one reply is queued (it is not taken: pop() decides which)."""
        while not len(self._queue):
            self._available.clear()
            await self._available.wait()

    def attempts(self, item: OutboxItem) -> int:
        """How many times this reply has been written so far."""
        return self._attempts.get(item.id, 0)

    def sending(self, cookie: bytes, item: OutboxItem) -> None:
        """Register a send BEFORE writing it: the server's answer may beat the write's return."""
        self._in_flight[cookie] = _InFlight(item, None)
        self._attempts[item.id] = self._attempts.get(item.id, 0) + 1

    def written(self, cookie: bytes, now: float, *, over_limit: bool = False) -> None:
        """The IM left for the server; from now on silence counts toward ack_timeout.

        `over_limit`: it went out while the server was limiting us, so silence means "dropped
        for rate" and the send is not counted as one of the reply's attempts.
        """
        entry = self._in_flight.get(cookie)
        if entry is None:
            return
        entry.sent_at = now
        if over_limit and not entry.over_limit:
            entry.over_limit = True
            self._uncount(entry.item)

    def unsent(self, cookie: bytes) -> None:
        """The write failed (the session is going): the reply goes back in the queue."""
        entry = self._in_flight.pop(cookie, None)
        if entry is not None:
            self._uncount(entry.item)
            self.push(entry.item)

    def unsendable(self, cookie: bytes) -> OutboxItem | None:
        """The reply itself cannot be sent (bad recipient, too long): forget it."""
        return self._finish(cookie)

    def acked(self, cookie: bytes) -> OutboxItem | None:
        """The server confirmed it: delivered. Any ack also proves the server acks.

        A late ack (after the reply was queued or parked again for a resend) confirms it all
        the same, so the reply is taken out instead of being sent twice.
        """
        entry = self._in_flight.get(cookie)
        item = self._finish(cookie) if entry is not None else self._late_ack(cookie)
        if item is not None:
            self._session_acks += 1
            self.never_acks = False
        return item

    def _late_ack(self, cookie: bytes) -> OutboxItem | None:
        for item_id, parked in self._parked.items():
            if parked.item.cookie == cookie:
                del self._parked[item_id]
                self._attempts.pop(item_id, None)
                return parked.item
        removed = self._queue.remove_if(lambda item: item.cookie == cookie)
        if not removed:
            return None
        if not len(self._queue):
            self._available.clear()
        for item in removed:
            self._attempts.pop(item.id, None)
        return removed[0]

    def rate_refused(self, cookie: bytes) -> OutboxItem | None:
        """The server said it dropped it for rate: it goes back in the queue (same cookie), and
        the send costs no attempt."""
        entry = self._in_flight.pop(cookie, None)
        if entry is None:
            return None
        if not entry.over_limit:
            self._uncount(entry.item)
        self.push(entry.item)
        return entry.item

    def rejected(self, cookie: bytes) -> OutboxItem | None:
        """The server refused it for good (blocked, refused by client …): forget it."""
        return self._finish(cookie)

    def _finish(self, cookie: bytes) -> OutboxItem | None:
        entry = self._in_flight.pop(cookie, None)
        if entry is None:
            return None
        self._attempts.pop(entry.item.id, None)
        return entry.item

    def _uncount(self, item: OutboxItem) -> None:
        """A write that never happened is not an attempt."""
        left = self._attempts.get(item.id, 0) - 1
        if left > 0:
            self._attempts[item.id] = left
        else:
            self._attempts.pop(item.id, None)

    def recipient_offline(self, cookie: bytes, now: float) -> OutboxItem | None:
        entry = self._in_flight.pop(cookie, None)
        if entry is None:
            return None
        self._attempts.pop(entry.item.id, None)  # the server answered: no attempt was lost
        self._parked[entry.item.id] = _Parked(entry.item, now + self.offline_retry)
        return entry.item

    def release(self, user_key: str) -> list[OutboxItem]:
        """The user is back (they wrote): their held replies go out now, ahead of newer ones."""
        held = [
            p.item
            for p in self._parked.values()
            if not p.resend and normalize_screen_name(p.item.screen_name) == user_key
        ]
        for item in held:
            del self._parked[item.id]
            self.push(item)
        return held

    def written_unconfirmed(self) -> int:
        """Sends written to the server and neither confirmed nor refused yet."""
        return sum(1 for entry in self._in_flight.values() if entry.sent_at is not None)

    def session_lost(self, *, rate_limited: bool = False) -> int:
        """Unconfirmed sends go back in the queue, to be sent again after reconnect.

        `rate_limited`: the server ended the session for sending too fast, so what it left
        unconfirmed was dropped for rate; those sends cost no attempt.
        """
        count = len(self._in_flight)
        for entry in self._in_flight.values():
            if entry.sent_at is None or (rate_limited and not entry.over_limit):
                self._uncount(entry.item)
            self.push(entry.item)
        self._in_flight.clear()
        self._session_acks = 0
        self._session_silences = 0
        return count

    def rate_limited(self) -> int:
        """The server says it is limiting us: what it has left unacknowledged so far was
        dropped for rate (an accepted IM is acked at once), whatever our own model said when it
        was written. Those sends cost no attempt; returns how many there are."""
        count = 0
        for entry in self._in_flight.values():
            if entry.sent_at is not None and not entry.over_limit:
                entry.over_limit = True
                self._uncount(entry.item)
                count += 1
        return count

    def rate_cleared(self, now: float, settle: float = 2.0) -> list[OutboxItem]:
        """The server lifted its rate limit: sends it dropped while limiting go out again now.

        Only sends written over the limit at least `settle` seconds ago (an ack over a live
        connection takes far less): a younger one may have been taken and its ack be on the way.
        """
        cookies = [
            cookie
            for cookie, e in self._in_flight.items()
            if e.over_limit and e.sent_at is not None and now - e.sent_at >= settle
        ]
        items = [self._in_flight.pop(cookie).item for cookie in cookies]
        for item in items:
            self.push(item)
        return items

    def _unpark_resends(self) -> list[OutboxItem]:
        """Replies waiting for a resend, taken out: on a never-ack server they were delivered."""
        items = [p.item for p in self._parked.values() if p.resend]
        for item in items:
            del self._parked[item.id]
            self._attempts.pop(item.id, None)
        return items

    def resend_after(self, attempts: int) -> float:
        """Pause before send number attempts+1: resend_delay, doubled per earlier resend."""
        return float(self.resend_delay * 2 ** max(attempts - 1, 0))

    def maintain(self, now: float) -> Upkeep:
        """Periodic housekeeping: unanswered sends, parked replies whose time has come, expiry."""
        upkeep = Upkeep()
        timed_out = [
            cookie
            for cookie, e in self._in_flight.items()
            if e.sent_at is not None and now - e.sent_at >= self.ack_timeout
        ]
        for cookie in timed_out:
            entry = self._in_flight.pop(cookie)
            item = entry.item
            if entry.over_limit and not self.never_acks:
                # Dropped for rate, not a sign that acks never come: again, no attempt spent.
                self.push(item)
                upkeep.rate_dropped.append(item)
                continue
            if not self.never_acks:
                self._session_silences += 1
                if self._session_acks == 0 and self._session_silences >= self.never_ack_after:
                    self.never_acks = True
                    upkeep.learned_never_acks = True
                    upkeep.delivered.extend(self._unpark_resends())
                    upkeep.resending.clear()
            if self.never_acks:
                self._attempts.pop(item.id, None)
                upkeep.delivered.append(item)
                continue
            attempts = self._attempts.get(item.id, 0)
            if attempts >= self.max_attempts:
                self._attempts.pop(item.id, None)
                upkeep.given_up.append(item)
                continue
            self._parked[item.id] = _Parked(item, now + self.resend_after(attempts), resend=True)
            upkeep.resending.append(item)
        expired = upkeep.expired
        for item_id, parked in list(self._parked.items()):
            if now - parked.item.created_at >= self.ttl:
                expired.append(parked.item)
                self._attempts.pop(item_id, None)
                del self._parked[item_id]
            elif now >= parked.retry_at:
                del self._parked[item_id]
                self.push(parked.item)
        stale = self._queue.remove_if(lambda item: now - item.created_at >= self.ttl)
        if stale:
            for item in stale:
                self._attempts.pop(item.id, None)
            expired.extend(stale)
            if not len(self._queue):
                self._available.clear()
        return upkeep
