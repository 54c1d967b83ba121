"""AIMHandler: keeps one OSCAR session alive for as long as the process runs.

It owns everything that must survive a dropped connection: the reconnect loop (exponential
back-off with jitter, reset only after a session has stayed up a while, never giving up, never
hammering), the delivery queue of replies (round-robin across users, each user's in order,
confirmed by host acks, resent when the server stays silent, re-sent after a reconnect, handed
over when an offline user comes back) and best-effort typing notifications. The OscarClient paces
each send to the server's advertised rate classes (learning which it enforces), so this layer
only has to keep one sender per session; a session whose sender stops is ended, never left
half alive. Once the server has shown that it drops IMs over its limit (a "limited" notice, a
rate-limit disconnect, or an IM sent over the limit that went unacknowledged), IMs are paced to
its rate model from then on even with AIM_THROTTLE=false: sending into a limit only loses the IM
and brings the disconnect closer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass

from aimbot.bot.delivery import DeliveryQueue
from aimbot.ops.metrics import Metrics
from aimbot.oscar.client import OscarClient, OutgoingIM
from aimbot.oscar.errors import ConnectError, LoginError, NotConnected, OscarError
from aimbot.oscar.events import (
    DisconnectReason,
    HostAck,
    IMError,
    IncomingIM,
    RateChange,
    SessionEnded,
    TypingNotification,
    TypingState,
)
from aimbot.oscar.snacs import RATE_CODE_CLEARED, RATE_CODE_LIMITED, normalize_screen_name
from aimbot.store import OutboxItem, Store
from aimbot.utils.backoff import Backoff

log = logging.getLogger(__name__)

ICBM_FAMILY = 0x0004
MTN_SUBGROUP = 0x0014
SEND_IM_SUBGROUP = 0x0006
ERR_RECIPIENT_OFFLINE = 0x0004
ERR_RATE = frozenset({0x0002, 0x0003})
SIGNED_ON_ELSEWHERE_MIN_DELAY = 60.0
DEFAULT_MAX_MESSAGE_BYTES = 512
SEND_TIME_SMOOTHING = 0.2  # weight of the newest send in the moving average of send time
# Replies written to the server in one go at most, when the rate budget allows that many: under
# load answers finish in bunches, and one write for a bunch saves a system call (and a wake-up of
# the server) per reply.
SEND_BATCH = 32
REMEMBERED_BUSY_USERS = 10_000


@dataclass(frozen=True)
class HandlerOptions:
    screen_name: str
    reconnect_base: float = 1.0
    reconnect_cap: float = 300.0
    # A session must stay up this long before the reconnect back-off starts again from the base;
    # a server that accepts the sign-on and drops at once is backed off like a failed sign-on.
    stable_after: float = 60.0
    outbox_ttl: float = 86400.0
    offline_retry: float = 60.0
    ack_timeout: float = 30.0
    max_send_attempts: int = 3
    resend_delay: float = 5.0
    never_ack_after: int = 3
    maintenance_interval: float = 5.0
    # Tell a user once that their answer is queued when the expected wait is over this (0 = off);
    # at most one such notice per busy_notice_interval over all users, one per user per hour.
    busy_notice_after: float = 30.0
    busy_notice_interval: float = 60.0
    busy_notice_repeat: float = 3600.0


MessageCallback = Callable[[IncomingIM], Awaitable[None]]
TypingCallback = Callable[[TypingNotification], None]


class AIMHandler:
    """One bot screen name's connection to the OSCAR server, kept up with back-off."""

    def __init__(
        self,
        options: HandlerOptions,
        client_factory: Callable[[], OscarClient],
        store: Store,
        on_message: MessageCallback,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_typing: TypingCallback | None = None,
    ) -> None:
        self.options = options
        self._on_typing = on_typing
        self._client_factory = client_factory
        self._store = store
        self._on_message = on_message
        self._metrics = metrics
        self._clock = clock
        self._backoff = Backoff(
            options.reconnect_base, options.reconnect_cap, jitter="equal", rng=rng
        )
        self.queue = DeliveryQueue(
            ttl=options.outbox_ttl,
            offline_retry=options.offline_retry,
            ack_timeout=options.ack_timeout,
            max_attempts=options.max_send_attempts,
            resend_delay=options.resend_delay,
            never_ack_after=options.never_ack_after,
        )
        self._client: OscarClient | None = None
        self._online = asyncio.Event()
        self._offline = asyncio.Event()
        self._offline.set()
        self._stopping = asyncio.Event()
        self._typing: dict[str, tuple[str, TypingState]] = {}
        self._typing_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self.sessions = 0
        # For /healthz: the latest real cause of being offline (a session's end or a failed
        # sign-on), and a refusal that retrying cannot fix (cleared by the next sign-on).
        self.last_disconnect: str | None = None
        self.login_refused: str | None = None
        # Courtesy notices (the restart notice) that lose their point later: dropped, not held,
        # when the recipient turns out to be offline. Cookies, a few per start.
        self._drop_if_offline: set[bytes] = set()
        self._send_seconds = 0.0  # moving average of one send, pacing included
        self._sender_idle = False  # the send loop waits for a reply to be queued
        self._busy_told: OrderedDict[str, float] = OrderedDict()  # user -> when told (clock)
        self._busy_last = float("-inf")
        # The server has dropped IMs for rate: pace them to its model whatever AIM_THROTTLE says.
        self.pace_to_server = False
        if metrics is not None:
            metrics.reply_queue_length.set_function(lambda: self.queue.queued)
            metrics.reply_queue_users.set_function(lambda: self.queue.waiting_users)
            metrics.reply_queue_oldest.set_function(self.oldest_queued_age)
            metrics.reply_queue_wait.set_function(self.expected_wait)
            metrics.outbox_depth.set_function(lambda: len(self.queue))

    # -- public API ----------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._online.wait()

    async def wait_offline(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._offline.wait()

    def oldest_queued_age(self) -> float:
        """Seconds the oldest reply waiting to be sent has waited (0 with an empty queue)."""
        oldest = self.queue.oldest_queued()
        return 0.0 if oldest is None else max(self._clock() - oldest, 0.0)

    def expected_wait(self) -> float:
        """Roughly how long a reply queued now waits: one round of the users ahead of it."""
        return self.queue.waiting_users * self._send_seconds

    async def load_outbox(self) -> int:
        """Queue the replies a previous run could not deliver."""
        items = await self._store.outbox_pending()
        self.deliver(items)
        return len(items)

    def deliver(
        self, items: Iterable[OutboxItem], *, urgent: bool = False, at_once: bool = True
    ) -> None:
        """Queue replies; `urgent` ones (a short notice) go before the round-robin.

        With nothing queued and the sender waiting, the first reply is written here and now, as
        the sender would one loop turn later (docs/benchmarks.md, "Session 11").
        Not under a flood, when the store paces its commits: a paced commit hands over many
        answers at once, and the sender then writes all their replies in one system call. Nor
        near the rate limit (see _send_now). Nor with `at_once` False, for the rest of an
        answer whose first reply send_at_once() wrote: they all wait in the queue, as they
        would have behind that first reply.
        """
        if at_once and self._may_send_now():
            items = self._send_now(list(items))
        for item in items:
            self.queue.push(item, urgent=urgent)

    def send_at_once(self, item: OutboxItem) -> bool:
        """Write one reply now, before its row is stored, if it can go out at once as deliver()
        would write it; True if it was written.

        For an answer whose rows the caller writes right after, in the same step (no await in
        between): the server has it while the commit runs, instead of after (docs/benchmarks.md,
        "Session 13"). Otherwise the caller stores first and delivers after the commit.
        """
        return self._may_send_now() and not self._send_now([item])

    def _may_send_now(self) -> bool:
        return self._sender_idle and not self.queue.queued and not self._store.paced

    def busy_wait(self, user_key: str) -> float | None:
        """The expected wait, if this user should now be told that their answer is queued.

        Only when the queue is really slow (its oldest reply and the expected wait both over
        busy_notice_after), at most once per user per busy_notice_repeat and once per
        busy_notice_interval over all users: the notice spends the same scarce send budget.
        """
        after = self.options.busy_notice_after
        if after <= 0:
            return None
        wait = self.expected_wait()
        if wait < after or self.oldest_queued_age() < after:
            return None
        now = self._clock()
        if now - self._busy_last < self.options.busy_notice_interval:
            return None
        told = self._busy_told.get(user_key)
        if told is not None and now - told < self.options.busy_notice_repeat:
            return None
        self._busy_last = now
        self._busy_told[user_key] = now
        self._busy_told.move_to_end(user_key)
        while len(self._busy_told) > REMEMBERED_BUSY_USERS:
            self._busy_told.popitem(last=False)
        return wait

    def deliver_or_drop(self, items: Iterable[OutboxItem]) -> None:
        """Like deliver, but a reply whose recipient is offline is dropped instead of held."""
        items = list(items)
        self._drop_if_offline.update(item.cookie for item in items)
        self.deliver(items)

    def typing(self, screen_name: str, state: TypingState) -> None:
        """Best effort: the latest state per user wins; dropped while offline."""
        if not self.online:
            return
        self._typing[normalize_screen_name(screen_name)] = (screen_name, state)
        self._typing_ready.set()

    async def run(self) -> None:
        """Sign on, serve, and sign on again after any failure, until stop() is called."""
        while not self._stopping.is_set():
            client = self._client_factory()
            try:
                await client.connect()
            except asyncio.CancelledError:
                await client.close()
                raise
            except LoginError as e:
                await client.close()
                # A wrong password cannot heal by retrying: try again only at the cap.
                delay = self._backoff.next_delay() if e.retryable else self._backoff.cap
                self.last_disconnect = f"sign-on failed: {e}"
                self.login_refused = None if e.retryable else str(e)
                log.error(
                    "cannot sign on as %s: %s; retrying in %.1f s",
                    self.options.screen_name,
                    e,
                    delay,
                )
            except (ConnectError, OscarError, OSError) as e:
                await client.close()
                delay = self._backoff.next_delay()
                self.last_disconnect = f"sign-on failed: {e}"
                log.warning("sign-on failed: %s; retrying in %.1f s", e, delay)
            except Exception:
                # A bug must not end the daemon: log it and keep trying, with back-off.
                await client.close()
                delay = self._backoff.next_delay()
                log.exception("unexpected error while signing on; retrying in %.1f s", delay)
            else:
                started = time.monotonic()
                self.login_refused = None
                reason = await self._serve(client)
                if self._stopping.is_set():
                    break
                if time.monotonic() - started >= self.options.stable_after:
                    self._backoff.reset()
                delay = self._backoff.next_delay()
                if reason is DisconnectReason.SIGNED_ON_ELSEWHERE:
                    delay = max(delay, SIGNED_ON_ELSEWHERE_MIN_DELAY)
                    log.warning(
                        "%s was signed off because another login with the same screen name took "
                        "over (another bot process or AIM client using it; run one process per "
                        "screen name); signing on again in %.0f s",
                        self.options.screen_name,
                        delay,
                    )
                elif reason is DisconnectReason.RATE_LIMITED:
                    log.warning(
                        "the server disconnected %s for sending too fast; reconnecting in %.1f s",
                        self.options.screen_name,
                        delay,
                    )
                else:
                    log.warning("connection lost; reconnecting in %.1f s", delay)
            if self._metrics is not None:
                self._metrics.reconnects.inc()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until every queued reply is confirmed (or timeout); True if all went out."""
        if len(self.queue) == 0:
            return True
        self._drained.clear()
        self._check_drained()
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Sign off; run() returns soon after. Unsent replies stay in the store."""
        self._stopping.set()
        client = self._client
        if client is not None:
            await client.close()

    # -- one session ---------------------------------------------------------------------------

    async def _serve(self, client: OscarClient) -> DisconnectReason:
        self._client = client
        self.sessions += 1
        self.max_message_bytes = client.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
        self._online.set()
        self._offline.clear()
        if self._metrics is not None:
            self._metrics.online.set(1)
        log.info(
            "signed on as %s (session %d; max IM %d bytes; %d replies waiting)",
            client.screen_name,
            self.sessions,
            self.max_message_bytes,
            len(self.queue),
        )
        loops: dict[str, Callable[[], Coroutine[object, object, None]]] = {
            "aim-send": lambda: self._send_loop(client),
            "aim-typing": lambda: self._typing_loop(client),
            "aim-upkeep": self._maintenance_loop,
        }
        workers = [
            asyncio.create_task(self._guard(name, loop, client), name=name)
            for name, loop in loops.items()
        ]
        reason = DisconnectReason.EOF
        try:
            async for event in client.events():
                if isinstance(event, SessionEnded):
                    reason = event.reason
                    self.last_disconnect = f"{event.reason.name}: {event.detail}"
                    log.info("session ended: %s (%s)", event.reason.name, event.detail)
                    break
                try:
                    await self._dispatch(event)
                except Exception:
                    log.exception("could not handle %s; carrying on", type(event).__name__)
        finally:
            self._online.clear()
            self._offline.set()
            if self._metrics is not None:
                self._metrics.online.set(0)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            rate_limited = reason is DisconnectReason.RATE_LIMITED
            if rate_limited:
                self._rate_drops_seen("it signed us off over the rate limit")
            self._count_resent(self.queue.written_unconfirmed())  # they will go out again
            requeued = self.queue.session_lost(rate_limited=rate_limited)
            if requeued:
                log.info("%d unconfirmed replies will be sent again after reconnect", requeued)
            self._typing.clear()
            await client.close()
            self._client = None
        return reason

    async def _guard(
        self, name: str, loop: Callable[[], Coroutine[object, object, None]], client: OscarClient
    ) -> None:
        """Run one of the session's loops; if it ends for any reason, end the session with it.

        A session whose sender (or typing, or upkeep) has stopped must not look alive: the read
        loop would keep `online` true while replies pile up unsent. Closing it makes run() sign on
        afresh, with every unconfirmed reply queued again.
        """
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session worker %s crashed; ending the session to start afresh", name)
        else:
            if client.ended is None:
                log.warning("session worker %s stopped; ending the session to start afresh", name)
            else:
                log.debug("session worker %s stopped with its session", name)
        await client.close()

    async def _dispatch(self, event: object) -> None:
        if isinstance(event, IncomingIM):
            # Whoever writes is online: what was held for them goes out first, in order.
            held = self.queue.release(normalize_screen_name(event.sender))
            if held:
                log.info(
                    "%r is back: %d held replies go out now, before anything newer",
                    event.sender,
                    len(held),
                )
            await self._on_message(event)
        elif isinstance(event, HostAck):
            never_acked = self.queue.never_acks
            item = self.queue.acked(event.cookie)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ack %s -> reply %s", event.cookie.hex(), item.id if item else None)
            if item is not None:
                if never_acked:
                    log.info("the server acks IMs after all; delivery is confirmed by acks again")
                self._confirmed([item], delivered=True)
        elif isinstance(event, IMError):
            self._on_im_error(event)
        elif isinstance(event, RateChange):
            log.info("server rate notice: code %d for class %d", event.code, event.class_id)
            self._on_rate_change(event)
        elif isinstance(event, TypingNotification):
            log.debug("%s typing state %s", event.sender, event.state.name)
            if self._on_typing is not None:
                self._on_typing(event)

    def _on_rate_change(self, event: RateChange) -> None:
        client = self._client
        if client is None or event.class_id != client.rate_class_of(ICBM_FAMILY, SEND_IM_SUBGROUP):
            return
        if event.code == RATE_CODE_LIMITED:
            self._rate_drops_seen("it said it is limiting the IM rate class")
            dropped = self.queue.rate_limited()
            if dropped:
                log.info(
                    "%d unacknowledged replies were dropped for rate; they go out again", dropped
                )
        elif event.code == RATE_CODE_CLEARED:
            items = self.queue.rate_cleared(self._clock())
            if items:
                log.info(
                    "the server lifted its rate limit: %d replies it dropped meanwhile go out "
                    "again now (%s)",
                    len(items),
                    ", ".join(f"{item.id} to {item.screen_name!r}" for item in items[:10]),
                )
                self._count_resent(len(items))

    def _rate_drops_seen(self, why: str) -> None:
        """The server drops IMs over its limit: from now on they are paced to its model."""
        if self.pace_to_server:
            return
        self.pace_to_server = True
        log.warning(
            "the server drops IMs sent over its rate limit (%s): from now on IMs are paced to "
            "the rate limits it advertises, whatever AIM_THROTTLE says",
            why,
        )

    def _on_im_error(self, event: IMError) -> None:
        cookie = event.cookie
        log.debug("IM error 0x%04x for %s", event.code, cookie.hex() if cookie else None)
        if cookie is None:
            log.warning("server reported IM error 0x%04x for an unknown message", event.code)
            return
        now = self._clock()
        if event.code == ERR_RECIPIENT_OFFLINE and cookie in self._drop_if_offline:
            self._drop_if_offline.discard(cookie)
            item = self.queue.rejected(cookie)
            if item is not None:
                log.info("%s is offline; notice %d dropped, not held", item.screen_name, item.id)
                self._confirmed([item], delivered=False, reason="offline_notice")
        elif event.code == ERR_RECIPIENT_OFFLINE:
            item = self.queue.recipient_offline(cookie, now)
            if item is not None:
                log.info(
                    "%s is offline; reply %d kept and retried for up to %.0f s",
                    item.screen_name,
                    item.id,
                    self.options.outbox_ttl,
                )
        elif event.code in ERR_RATE:
            item = self.queue.rate_refused(cookie)
            if item is not None:
                log.warning("server rate-limited reply %d; it will be sent again", item.id)
                self._count_resent()
                self._rate_drops_seen("it refused an IM for rate")
        else:
            item = self.queue.rejected(cookie)
            if item is not None:
                log.warning(
                    "server refused reply %d to %s (error 0x%04x); dropped",
                    item.id,
                    item.screen_name,
                    event.code,
                )
                self._confirmed([item], delivered=False, reason="refused")

    def _confirmed(self, items: list[OutboxItem], *, delivered: bool, reason: str = "") -> None:
        """Forget replies for good: delivered, or given up for `reason` (already logged)."""
        if not items:
            return
        # Bookkeeping first: the items already left the queue, so flush() may return right now.
        if self._metrics is not None:
            if delivered:
                self._metrics.ims_out.inc(len(items))
            else:
                self._metrics.ims_given_up.labels(reason=reason).inc(len(items))
        self._store.outbox_done(item.id for item in items)
        self._check_drained()

    def _check_drained(self) -> None:
        if len(self.queue) == 0:
            self._drained.set()

    def _count_resent(self, amount: int = 1) -> None:
        if self._metrics is not None and amount:
            self._metrics.ims_resent.inc(amount)

    async def _send_loop(self, client: OscarClient) -> None:
        while True:
            self._sender_idle = True
            try:
                await self.queue.wait_queued()
            finally:
                self._sender_idle = False
            started = time.monotonic()
            # Wait for the rate budget first and choose the replies after: the round-robin then
            # decides among everything queued by the time an IM may go, not before the wait.
            delay = client.send_delay(ICBM_FAMILY, SEND_IM_SUBGROUP)
            if self.pace_to_server:
                delay = max(delay, client.rate_delay(ICBM_FAMILY, SEND_IM_SUBGROUP))
            if delay > 0:
                await asyncio.sleep(delay)  # send_ims paces any remainder itself
            # Under load answers finish in bunches: what the rate budget allows goes out in one
            # write, one system call for all of them (docs/benchmarks.md, "Session 5").
            budget = client.send_budget(
                ICBM_FAMILY, SEND_IM_SUBGROUP, SEND_BATCH, server_model=self.pace_to_server
            )
            items = self.queue.pop_many(max(budget, 1))
            if not items:
                continue  # expired meanwhile
            ims = self._sending(items)
            try:
                results = await client.send_ims(ims)
            except (NotConnected, OSError):
                self._unsent(items)
                return
            except BaseException:
                self._unsent(items)
                raise
            self._written(client, items, results, started)

    def _send_now(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """Write the first of `items` now, if the client can without waiting (no send in
        progress, no backlog in the socket) and the rate limit is far off; returns the rest,
        for the queue.

        Only the first: it is what the round-robin would pick from an otherwise empty queue,
        while the rest (more parts of a long answer) share the budget with the replies of
        others that come in meanwhile. Only far from the limit (a whole SEND_BATCH could go
        back to back): near it, the sender paces, and the round-robin shares out what the limit
        allows (measured: sent at once there, `bench ratelimit` fairness fell from 0.924 to
        0.880-0.909).
        """
        client = self._client
        if client is None or not items:
            return items
        budget = client.send_budget(
            ICBM_FAMILY, SEND_IM_SUBGROUP, SEND_BATCH, server_model=self.pace_to_server
        )
        if budget < SEND_BATCH:
            return items
        batch = items[:1]
        started = time.monotonic()
        try:
            # It checks itself whether it can write without waiting (online, no send in
            # progress, no backlog), once.
            results = client.send_ims_now([_outgoing(item) for item in batch])
        except OscarError as e:
            # Nothing was written: they are queued, and the send loop meets whatever this is.
            log.debug("could not write a reply at once (%s); queued", e)
            return items
        # In flight only now: the write was synchronous, so no ack can have come in between.
        self._register(batch)
        self._written(client, batch, results, started)
        return items[1:]

    def _sending(self, items: list[OutboxItem]) -> list[OutgoingIM]:
        """Register the replies as in flight (before the write: while the sender waits for the
        socket to drain, the server's ack may come in) and make their IMs."""
        self._register(items)
        return [_outgoing(item) for item in items]

    def _register(self, items: list[OutboxItem]) -> None:
        for item in items:
            # Each keeps its cookie for every attempt: a resend is the same message.
            self.queue.sending(item.cookie, item)

    def _written(
        self,
        client: OscarClient,
        items: list[OutboxItem],
        results: list[OscarError | None],
        started: float,
    ) -> None:
        # Over the limit, the server drops them without a word: that costs no attempt.
        over_limit = client.over_rate_limit(ICBM_FAMILY, SEND_IM_SUBGROUP)
        now = self._clock()
        for item, error in zip(items, results, strict=True):
            if error is None:
                self.queue.written(item.cookie, now, over_limit=over_limit)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "sent reply %d to %r as %s", item.id, item.screen_name, item.cookie.hex()
                    )
            else:
                # The session is fine, this reply is not (a name the server cannot take, a text
                # too long for one IM): retrying it can never work, so it must not block others.
                self._unsendable(item.cookie, item, error)
        took = (time.monotonic() - started) / len(items)
        self._send_seconds += (took - self._send_seconds) * SEND_TIME_SMOOTHING

    def _unsent(self, items: list[OutboxItem]) -> None:
        """The write did not happen (the session is going): the replies go back in the queue."""
        for item in items:
            self.queue.unsent(item.cookie)

    def _unsendable(self, cookie: bytes, item: OutboxItem, error: Exception) -> None:
        self.queue.unsendable(cookie)
        log.warning(
            "dropping reply %d to %r: it cannot be sent (%s: %s)",
            item.id,
            item.screen_name,
            type(error).__name__,
            error,
        )
        self._confirmed([item], delivered=False, reason="unsendable")

    async def _typing_loop(self, client: OscarClient) -> None:
        while True:
            await self._typing_ready.wait()
            self._typing_ready.clear()
            pending, self._typing = self._typing, {}
            for screen_name, state in pending.values():
                # Typing is a courtesy: never let it wait for rate budget that replies need.
                if state is TypingState.TYPING and client.send_delay(ICBM_FAMILY, MTN_SUBGROUP):
                    continue
                try:
                    await client.send_typing(screen_name, state)
                except (NotConnected, OSError):
                    return
                except Exception as e:
                    if not client.online:
                        return
                    log.debug("cannot send typing to %r: %s", screen_name, e)

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.maintenance_interval)
            self._upkeep()

    def _upkeep(self) -> None:
        upkeep = self.queue.maintain(self._clock())
        if upkeep.learned_never_acks:
            log.warning(
                "the server has acknowledged none of the replies sent in this session (%d "
                "unanswered after %.0f s each): it does not send host acks, so from now on a "
                "reply written to it counts as delivered",
                self.options.never_ack_after,
                self.options.ack_timeout,
            )
        for item in upkeep.resending:
            log.info(
                "no ack from the server for reply %d to %r within %.0f s (send %d of %d); "
                "sending it again",
                item.id,
                item.screen_name,
                self.options.ack_timeout,
                self.queue.attempts(item),
                self.options.max_send_attempts,
            )
        self._count_resent(len(upkeep.resending))
        for item in upkeep.rate_dropped:
            log.info(
                "reply %d to %r went out over the server's rate limit and was not acknowledged "
                "within %.0f s: sending it again (a send dropped for rate is not an attempt)",
                item.id,
                item.screen_name,
                self.options.ack_timeout,
            )
        if upkeep.rate_dropped:
            self._count_resent(len(upkeep.rate_dropped))
            self._rate_drops_seen("IMs sent over its limit went unacknowledged")
        for item in upkeep.given_up:
            log.warning(
                "giving up on reply %d to %r: the server took %d sends within its rate limit "
                "and acknowledged none (each waited %.0f s), so it does not deliver this reply",
                item.id,
                item.screen_name,
                self.options.max_send_attempts,
                self.options.ack_timeout,
            )
        for item in upkeep.expired:
            log.warning(
                "giving up on reply %d to %r: undeliverable for %.0f s (OUTBOX_TTL)",
                item.id,
                item.screen_name,
                self.options.outbox_ttl,
            )
        self._confirmed(upkeep.delivered, delivered=True)
        self._confirmed(upkeep.given_up, delivered=False, reason="no_ack")
        self._confirmed(upkeep.expired, delivered=False, reason="expired")


def _outgoing(item: OutboxItem) -> OutgoingIM:
    """The IM of a stored reply, under its own cookie, with a host ack asked for."""
    return OutgoingIM(item.screen_name, item.text, item.cookie, html=item.is_html, request_ack=True)
