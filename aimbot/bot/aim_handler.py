"""AIMHandler: keeps one OSCAR session alive for as long as the process runs.

It owns everything that must survive a dropped connection: the reconnect loop (exponential
back-off with jitter, reset after a successful sign-on, never giving up, never hammering), the
delivery queue of replies (sent in order, confirmed by host acks, re-sent after a reconnect) and
best-effort typing notifications. The OscarClient paces each send to the server's advertised rate
classes, so this layer only has to keep one sender per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass

from aimbot.bot.delivery import DeliveryQueue
from aimbot.ops.metrics import Metrics
from aimbot.oscar.client import OscarClient
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
from aimbot.oscar.snacs import normalize_screen_name
from aimbot.store import OutboxItem, Store
from aimbot.utils.backoff import Backoff

log = logging.getLogger(__name__)

ICBM_FAMILY = 0x0004
MTN_SUBGROUP = 0x0014
ERR_RECIPIENT_OFFLINE = 0x0004
ERR_RATE = frozenset({0x0002, 0x0003})
SIGNED_ON_ELSEWHERE_MIN_DELAY = 60.0
DEFAULT_MAX_MESSAGE_BYTES = 512


@dataclass(frozen=True)
class HandlerOptions:
    screen_name: str
    reconnect_base: float = 1.0
    reconnect_cap: float = 300.0
    outbox_ttl: float = 86400.0
    offline_retry: float = 60.0
    ack_timeout: float = 30.0
    maintenance_interval: float = 5.0


MessageCallback = Callable[[IncomingIM], Awaitable[None]]


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
    ) -> None:
        self.options = options
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

    # -- public API ----------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self._online.wait(), timeout)

    async def wait_offline(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self._offline.wait(), timeout)

    async def load_outbox(self) -> int:
        """Queue the replies a previous run could not deliver."""
        items = await self._store.outbox_pending()
        self.deliver(items)
        return len(items)

    def deliver(self, items: Iterable[OutboxItem]) -> None:
        for item in items:
            self.queue.push(item)
        self._update_depth()

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
                self._backoff.reset()
                self.login_refused = None
                reason = await self._serve(client)
                if self._stopping.is_set():
                    break
                delay = self._backoff.next_delay()
                if reason is DisconnectReason.SIGNED_ON_ELSEWHERE:
                    delay = max(delay, SIGNED_ON_ELSEWHERE_MIN_DELAY)
                    log.warning(
                        "%s signed on somewhere else (another bot instance with the same screen "
                        "name?); signing on again in %.0f s",
                        self.options.screen_name,
                        delay,
                    )
                else:
                    log.warning("connection lost; reconnecting in %.1f s", delay)
            if self._metrics is not None:
                self._metrics.reconnects.inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until every queued reply is confirmed (or timeout); True if all went out."""
        if len(self.queue) == 0:
            return True
        self._drained.clear()
        self._check_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
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
        workers = [
            asyncio.create_task(self._guard(self._send_loop(client), client), name="aim-send"),
            asyncio.create_task(self._guard(self._typing_loop(client), client), name="aim-typing"),
            asyncio.create_task(self._guard(self._maintenance_loop(), client), name="aim-upkeep"),
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
            requeued = self.queue.session_lost()
            if requeued:
                log.info("%d unconfirmed replies will be sent again after reconnect", requeued)
            self._typing.clear()
            await client.close()
            self._client = None
        return reason

    async def _guard(self, loop: Coroutine[object, object, None], client: OscarClient) -> None:
        """Run one of the session's loops; if it crashes, end the session so it starts afresh."""
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session worker crashed; reconnecting")
            await client.close()

    async def _dispatch(self, event: object) -> None:
        if isinstance(event, IncomingIM):
            await self._on_message(event)
        elif isinstance(event, HostAck):
            item = self.queue.acked(event.cookie)
            log.debug("ack %s -> reply %s", event.cookie.hex(), item.id if item else None)
            if item is not None:
                await self._confirmed([item], delivered=True)
        elif isinstance(event, IMError):
            await self._on_im_error(event)
        elif isinstance(event, RateChange):
            log.info("server rate notice: code %d for class %d", event.code, event.class_id)
        elif isinstance(event, TypingNotification):
            log.debug("%s typing state %s", event.sender, event.state.name)

    async def _on_im_error(self, event: IMError) -> None:
        cookie = event.cookie
        log.debug("IM error 0x%04x for %s", event.code, cookie.hex() if cookie else None)
        if cookie is None:
            log.warning("server reported IM error 0x%04x for an unknown message", event.code)
            return
        now = self._clock()
        if event.code == ERR_RECIPIENT_OFFLINE:
            item = self.queue.recipient_offline(cookie, now)
            if item is not None:
                log.info(
                    "%s is offline; reply %d kept and retried for up to %.0f s",
                    item.screen_name,
                    item.id,
                    self.options.outbox_ttl,
                )
        elif event.code in ERR_RATE:
            item = self.queue.acked(cookie)
            if item is not None:
                log.warning("server rate-limited reply %d; it will be sent again", item.id)
                self.queue.push(item)
        else:
            item = self.queue.rejected(cookie)
            if item is not None:
                log.warning(
                    "server refused reply %d to %s (error 0x%04x); dropped",
                    item.id,
                    item.screen_name,
                    event.code,
                )
                await self._confirmed([item], delivered=False)

    async def _confirmed(self, items: list[OutboxItem], *, delivered: bool) -> None:
        """Forget replies for good: delivered, or refused/expired (already logged)."""
        if not items:
            return
        # Bookkeeping first: the items already left the queue, so flush() may return right now.
        if self._metrics is not None and delivered:
            self._metrics.ims_out.inc(len(items))
        self._update_depth()
        await self._store.outbox_done(item.id for item in items)
        self._check_drained()

    def _check_drained(self) -> None:
        if len(self.queue) == 0:
            self._drained.set()

    def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.outbox_depth.set(len(self.queue))

    async def _send_loop(self, client: OscarClient) -> None:
        while True:
            item = await self.queue.get()
            cookie = item.cookie  # the same for every attempt: a resend is the same message
            self.queue.sending(cookie, item)
            try:
                await client.send_im(
                    item.screen_name,
                    item.text,
                    html=item.is_html,
                    request_ack=True,
                    cookie=cookie,
                )
            except (NotConnected, OscarError, OSError):
                self.queue.unsent(cookie)
                return
            except BaseException:
                self.queue.unsent(cookie)
                raise
            self.queue.written(cookie, self._clock())
            log.debug("sent reply %d to %s as %s", item.id, item.screen_name, cookie.hex())

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
                except (NotConnected, OscarError, OSError):
                    return

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.maintenance_interval)
            silent, expired = self.queue.maintain(self._clock())
            for item in expired:
                log.warning(
                    "dropping reply %d to %s: undeliverable for %.0f s (OUTBOX_TTL)",
                    item.id,
                    item.screen_name,
                    self.options.outbox_ttl,
                )
            await self._confirmed(silent, delivered=True)
            await self._confirmed(expired, delivered=False)
