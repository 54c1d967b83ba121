"""AIMBot: turns each incoming IM into at most one answer, in order, through Dify.

Each user gets a worker task that exists only while that user has something pending, so the cost
of a user who has gone quiet is zero. One Dify query per user is in flight at a time (the next
batch collects whatever the user sends meanwhile); a semaphore bounds the total across users so
one busy user never delays another beyond that bound.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

from aimbot.api.dify_client import MAX_USER_CHARS, DifyClient
from aimbot.api.errors import ConversationNotFound, DifyAuthError, DifyError, DifyUnavailable
from aimbot.api.sse import TextListener
from aimbot.bot import messages
from aimbot.bot.buffer import BufferMode, MessageBuffer, PendingMessage, Typists
from aimbot.bot.policy import AccessPolicy, RateDecision, UserRateLimiter
from aimbot.bot.senders import IgnoredSenders
from aimbot.bot.streaming import PartCollector
from aimbot.bot.text import (
    ReplyFormat,
    part_stream,
    split_bodies,
    split_reply,
    strip_reasoning,
    with_note,
)
from aimbot.ops.metrics import Metrics
from aimbot.ops.traffic import Answered, conversation_prefix, log_answered, traffic_logged
from aimbot.oscar.client import new_cookie
from aimbot.oscar.events import IncomingIM, TypingNotification, TypingState
from aimbot.oscar.imtext import im_text_size
from aimbot.oscar.snacs import normalize_screen_name
from aimbot.store import InboxItem, OutboxItem, Reply, Store, StoreError

log = logging.getLogger(__name__)


class _Asked(NamedTuple):
    """What one Dify query gave: the answer's Markdown (or an apology), the note that says it is
    not the whole answer, the outcome for the traffic log ("ok", "cut_short", … or the Dify
    error's kind) and the conversation it joined (None before Dify named one)."""

    text: str
    note: str | None
    outcome: str
    conversation_id: str | None


COMMANDS_CLEAR = frozenset({"clear", "/clear"})
COMMANDS_HELP = frozenset({"help", "/help"})


_MAX_SHRINKS = 5  # then only the note is sent: the parts cap holds whatever the text is like


def _cut(text: str, length: int) -> str:
    """The first `length` characters, ended at a space or line break near the end if any."""
    head = text[:length]
    space = max(head.rfind(" "), head.rfind("\n"))
    return head[:space] if space > length * 0.8 else head


def _encodable(text: str) -> bool:
    """Whether the text is valid Unicode (SQLite and the wire need UTF-8: no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _with_note(markdown: str, note: str | None) -> str:
    return markdown if note is None else with_note(markdown, note)


class ReplySink(Protocol):
    """Where finished replies go (the AIMHandler)."""

    max_message_bytes: int

    def deliver(
        self, items: Iterable[OutboxItem], *, urgent: bool = False, at_once: bool = True
    ) -> None:
        """Queue `items`; the first may go out at once unless `at_once` is False."""

    def send_at_once(self, item: OutboxItem) -> bool:
        """Write `item` now if it can go out at once, before it is stored; True if written."""

    def busy_wait(self, user_key: str) -> float | None: ...

    def deliver_or_drop(self, items: Iterable[OutboxItem]) -> None:
        """Like deliver, but dropped instead of held if the recipient is offline."""

    def typing(self, screen_name: str, state: TypingState) -> None: ...


@dataclass(frozen=True)
class BotOptions:
    screen_name: str
    buffer_window: float = 1.5
    buffer_max_wait: float = 6.0
    buffer_mode: BufferMode = "typing"  # "window": ignore the users' typing notifications
    reply_format: ReplyFormat = "html"
    max_reply_bytes: int = 0  # 0 = the server's advertised limit
    allowed_users: frozenset[str] = frozenset()
    blocked_users: frozenset[str] = frozenset()
    ignored_senders: frozenset[str] = frozenset()
    user_rate_limit: int = 20
    max_input_chars: int = 2000
    typing_notifications: bool = True
    typing_refresh: float = 10.0
    dify_user_prefix: str = "aim:"
    dify_max_concurrency: int = 8
    delete_on_clear: bool = False
    inbox_max_age: float = 3600.0
    restart_notice_window: float = 120.0  # 0 = off
    log_message_text: bool = False  # the traffic log shows texts (DEBUG only)
    max_answer_chars: int = 8000
    max_reply_parts: int = 10
    stream_parts: bool = True  # send each part of a streamed answer as soon as it is final


@dataclass(eq=False)
class _User:
    key: str
    screen_name: str  # as the user last wrote it; replies go to this form
    buffer: MessageBuffer
    worker: asyncio.Task[None] | None = None
    commit: asyncio.Future[None] | None = None  # the commit of its last answer (clear waits)
    busy: bool = False


@dataclass
class _Background:
    """Tasks the bot starts but does not await inline; kept so they are never lost."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closed: bool = False  # after AIMBot.close(): nothing new starts that nobody would cancel

    def start(self, coro: Coroutine[object, object, None], name: str) -> None:
        if self.closed:
            coro.close()
            log.info("not starting %s: the bot is shutting down", name)
            return
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s crashed", task.get_name(), exc_info=task.exception())


class AIMBot:
    def __init__(
        self,
        options: BotOptions,
        store: Store,
        dify: DifyClient,
        sink: ReplySink,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._store = store
        self._dify = dify
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._self_key = normalize_screen_name(options.screen_name)
        self._access = AccessPolicy(options.allowed_users, options.blocked_users)
        self._ignored = IgnoredSenders(options.ignored_senders)
        self._rate = UserRateLimiter(options.user_rate_limit)
        self._dify_slots = asyncio.Semaphore(options.dify_max_concurrency)
        self._users: dict[str, _User] = {}
        self._typists = Typists()
        self._workers = 0  # users with a live worker task
        self._staged = 0  # answers written but not yet handed to delivery (commit pending)
        self._buffered = 0  # messages waiting in buffers
        self._background = _Background()
        self._accepting = True
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._seen = 0  # IMs handed to on_message, whatever became of them
        # wait_seen's callers: (count, future); checked only while someone waits.
        self._seen_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Ids of replies sent without an outbox row: negative (no row has one) and ascending, so
        # the parts of one answer keep their order in the delivery queue.
        self._unstored_ids = -(2**62)
        if metrics is not None:
            # Read when scraped, not set on every IM.
            metrics.active_users.set_function(lambda: len(self._users))
            metrics.queue_depth.set_function(lambda: self._buffered)

    # -- intake --------------------------------------------------------------------------------

    @property
    def active_users(self) -> int:
        return len(self._users)

    @property
    def queue_depth(self) -> int:
        return self._buffered

    async def on_message(self, im: IncomingIM) -> None:
        """Called by the AIMHandler for every IM; returns as soon as the IM is stored."""
        try:
            await self._intake(im)
        finally:
            self._seen += 1
            if self._seen_waiters:
                for count, waiter in self._seen_waiters:
                    if self._seen >= count and not waiter.done():
                        waiter.set_result(None)

    def on_typing(self, event: TypingNotification) -> None:
        """Called by the AIMHandler for every typing notification a user's client sends."""
        if self.options.buffer_mode != "typing":
            return
        key = normalize_screen_name(event.sender)
        if key == self._self_key or not self._access.permits(key):
            return
        self._typists.heard(key)
        user = self._users.get(key)
        if user is not None:
            user.buffer.note_typing(event.state)

    async def wait_seen(self, count: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until `count` IMs in total have gone through intake (for tests and benchmarks)."""
        if self._seen >= count:
            return
        entry = (count, asyncio.get_running_loop().create_future())
        self._seen_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        finally:
            self._seen_waiters.remove(entry)

    async def wait_background(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until side jobs (e.g. deleting a cleared conversation in Dify) have finished."""
        tasks = list(self._background.tasks)
        if tasks:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until no user has work pending or in progress."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _intake(self, im: IncomingIM) -> None:
        if not _encodable(im.sender):
            # Not even UTF-8 (lone surrogates): it can be neither stored nor answered.
            log.warning("dropping an IM from a screen name that is not valid text: %r", im.sender)
            self._count_dropped("bad_sender")
            return
        if not _encodable(im.text):
            im = replace(im, text=im.text.encode("utf-8", "replace").decode("utf-8"))
        key = normalize_screen_name(im.sender)
        if key == self._self_key:
            return
        ignored = self._ignored.reason(key, auto_response=im.auto_response)
        if ignored is not None:
            # Not a person (a server notice, another bot, an away message): never stored,
            # never sent to Dify, never answered.
            self._ignored.note(key, im.sender, im.text, ignored)
            self._count_dropped(ignored)
            if self._metrics is not None:
                self._metrics.ims_ignored.labels(reason=ignored).inc()
            return
        if not self._access.permits(key):
            log.debug("ignoring %s (not allowed by ALLOWED_USERS/BLOCKED_USERS)", im.sender)
            self._count_dropped("not_allowed")
            return
        text = im.text.strip()
        if not text:
            self._count_dropped("empty")
            return
        if self._metrics is not None:
            self._metrics.ims_in.inc()
        decision = self._rate.check(key)
        if decision is not RateDecision.ALLOW:
            self._count_dropped("user_rate_limit")
            if decision is RateDecision.NOTIFY:
                log.info("%s is over USER_RATE_LIMIT; told once, skipping until next minute", key)
                await self._say(
                    im.sender, messages.RATE_LIMITED_USER.format(limit=self.options.user_rate_limit)
                )
            return
        command = text.lower()
        if command in COMMANDS_CLEAR:
            await self.clear(im.sender)
            return
        if command in COMMANDS_HELP:
            await self._say(im.sender, messages.HELP)
            return
        if len(text) > self.options.max_input_chars:
            self._count_dropped("too_long")
            await self._say(
                im.sender,
                messages.TOO_LONG.format(length=len(text), limit=self.options.max_input_chars),
            )
            return
        now = self._clock()
        try:
            inbox_id = await self._store.inbox_add(key, im.sender, text, now)
        except StoreError as e:
            await self._not_stored(key, im.sender, 1, e)
            return
        ticket = self._store.commit_ticket()
        if not self._accepting:
            log.info("shutting down: IM from %s kept in the inbox for the next start", key)
            return
        self._enqueue(key, im.sender, PendingMessage(inbox_id, text, now, ticket))
        wait = self._sink.busy_wait(key)
        if wait is not None:
            log.info(
                "replies are queued for about %.0f s: telling %r their answer will wait", wait, key
            )
            minutes = max(round(wait / 60), 1)
            await self._say(im.sender, messages.BUSY.format(minutes=minutes), urgent=True)

    async def _not_stored(self, key: str, screen_name: str, count: int, error: Exception) -> None:
        """An IM that the store could not keep is not answered: say so, to the log and the user."""
        log.error(
            "could not store %d IM(s) from %s (%s): NOT kept and not sent to Dify; "
            "asked them to send it again",
            count,
            key,
            error,
        )
        for _ in range(count):
            self._count_dropped("store_failed")
        await self._say(screen_name, messages.NOT_STORED)

    async def resume(self, *, after_crash: bool = False) -> int:
        """Answer what a previous run accepted but did not answer (younger than INBOX_MAX_AGE).

        After a crash, also tell whoever wrote just before it that their last IM may be lost.
        """
        items, expired = await self._store.inbox_pending(self._clock(), self.options.inbox_max_age)
        if expired:
            log.warning("dropped %d unanswered IMs older than INBOX_MAX_AGE", expired)
        cut = [item for item in items if item.parts_sent]
        items = [item for item in items if not item.parts_sent]
        await self._end_cut_answers(cut)
        for item in items:
            self._enqueue(
                item.user_key,
                item.screen_name,
                PendingMessage(item.id, item.text, item.received_at),
            )
        if items:
            log.info("answering %d IMs left from the previous run", len(items))
        # Read on every start: it also forgets everyone older, so the table stays small.
        recent = await self._store.recently_seen(self.options.restart_notice_window)
        if after_crash and self.options.restart_notice_window > 0:
            await self._notify_after_crash(recent, {item.user_key for item in [*items, *cut]})
        return len(items)

    async def _end_cut_answers(self, items: Sequence[InboxItem]) -> None:
        """IMs whose streamed answer was partly sent when the last run stopped: one note each.

        Dify has that turn already, and its first parts went out; asking again would repeat
        them (a new answer streams from its start). So the user is told to ask for the rest.
        """
        batches: dict[str, list[InboxItem]] = {}
        for item in items:
            batches.setdefault(item.user_key, []).append(item)
        for key, batch in batches.items():
            screen_name = batch[-1].screen_name
            log.warning(
                "the answer to %d IM(s) from %s was cut off by the restart after %d part(s); "
                "told them instead of asking Dify again",
                len(batch),
                key,
                max(item.parts_sent for item in batch),
            )
            replies = await self._render(messages.STREAM_CUT_BY_RESTART)
            try:
                stored = await self._store.complete(
                    [item.id for item in batch], screen_name, replies, self._clock()
                )
            except StoreError as e:
                log.error("could not store the note for %s (%s); sending it anyway", key, e)
                stored = [self._unstored(screen_name, reply) for reply in replies]
            self._sink.deliver(stored)

    async def _notify_after_crash(
        self, recent: Sequence[tuple[str, str]], answering: set[str]
    ) -> None:
        """A notice to everyone who wrote within RESTART_NOTICE_WINDOW of the crash.

        OSCAR has no acknowledgement for incoming IMs: what the server wrote into the socket of
        a process as it died is gone, and only the sender knows what it said. So they are asked
        to send it again, rather than wait for an answer that will never come. Users whose last
        IM was kept (it is being answered now) are not asked; users who are offline by the time
        it goes out are not asked either: the notice is dropped, not held for their return,
        when it would only puzzle them.
        """
        told = 0
        for key, screen_name in recent:
            if key in answering:
                continue
            await self._say(screen_name, messages.RESTARTED, drop_if_offline=True)
            told += 1
        if told:
            log.warning(
                "the last run ended without a clean stop: asking %d users who wrote within "
                "%.0f s of it to send their last message again if it is unanswered (dropped "
                "for those who are offline)",
                told,
                self.options.restart_notice_window,
            )

    def _enqueue(self, key: str, screen_name: str, message: PendingMessage) -> None:
        user = self._users.get(key)
        if user is None:
            buffer = MessageBuffer(
                self.options.buffer_window,
                self.options.buffer_max_wait,
                typist=key in self._typists,
            )
            user = self._users[key] = _User(key, screen_name, buffer)
            self._idle.clear()
        user.screen_name = screen_name
        first = len(user.buffer) == 0 and not user.busy
        user.buffer.add(message)
        self._buffered += 1
        if user.worker is None:
            self._workers += 1
            user.worker = asyncio.create_task(self._work(user), name=f"user-{key}")
        if first:
            self._typing(user.screen_name, TypingState.TYPING)

    # -- commands ------------------------------------------------------------------------------

    async def clear(self, screen_name: str) -> None:
        """Cancel the user's pending and in-flight work, forget the conversation, confirm."""
        key = normalize_screen_name(screen_name)
        user = self._users.pop(key, None)
        if user is not None:
            self._buffered -= len(user.buffer.take_all())
            if user.worker is not None:
                user.worker.cancel()
                await asyncio.gather(user.worker, return_exceptions=True)
            if user.commit is not None:
                # A finished answer is already being written; let it land before the reset.
                # wait(), not gather(): a cancelled clear must not cancel the store's commit.
                await asyncio.wait({user.commit})
        conversation_id = await self._store.get_conversation(key)
        dropped = await self._store.forget_user(key)
        log.info("clear from %s: conversation forgotten, %d pending IMs dropped", key, len(dropped))
        if conversation_id and self.options.delete_on_clear:
            self._background.start(self._delete_conversation(key, conversation_id), f"delete-{key}")
        await self._say(screen_name, messages.CLEARED)
        self._typing(screen_name, TypingState.NONE)

    async def _delete_conversation(self, key: str, conversation_id: str) -> None:
        try:
            await self._dify.delete_conversation(self._dify_user(key), conversation_id)
        except DifyError as e:
            log.info("could not delete conversation in Dify (%s); it is forgotten here", e)

    # -- work ----------------------------------------------------------------------------------

    async def _work(self, user: _User) -> None:
        try:
            while len(user.buffer) and not self._draining:
                batch = await user.buffer.next_batch()
                self._buffered -= len(batch)
                user.busy = True
                try:
                    await self._answer(user, batch)
                except Exception:
                    # Only stored IMs get this far (see _durable): they stay in the inbox, so a
                    # restart answers them; keep serving.
                    log.exception(
                        "could not answer %s; their IMs stay in the inbox for the next start",
                        user.key,
                    )
                finally:
                    user.busy = False
        finally:
            user.worker = None
            self._workers -= 1
            if self._users.get(user.key) is user and not len(user.buffer):
                del self._users[user.key]
            self._check_idle()

    async def _answer(self, user: _User, batch: Sequence[PendingMessage]) -> None:
        batch = await self._durable(user, batch)
        if not batch:
            return
        query = "\n".join(m.text for m in batch)
        inbox_ids = [m.inbox_id for m in batch]
        refresher = None
        if self.options.typing_notifications:
            refresher = asyncio.create_task(self._keep_typing(user), name=f"typing-{user.key}")
        collector = self._collector(user, inbox_ids)
        asked = time.monotonic()
        try:
            async with self._dify_slots:
                if collector is None:
                    asked_dify = await self._ask(user.key, query)
                else:
                    asked_dify = await self._ask_streaming(user, query, collector)
        finally:
            if refresher is not None:
                refresher.cancel()
                await asyncio.gather(refresher, return_exceptions=True)
        dify_seconds = time.monotonic() - asked  # includes waiting for a DIFY_MAX_CONCURRENCY slot
        text, note, outcome, conversation_id = asked_dify
        if collector is not None and collector.started:
            if outcome not in ("ok", "cut_short", "interrupted"):
                note = messages.ANSWER_INTERRUPTED  # an error after parts went out: one note
            replies = await self._render_rest(collector, note)
        else:
            replies = await self._render(text, note)
        # Once the answer exists it must reach the store even if "clear" cancels us now: the
        # swap joins this turn's transaction before any await, and the delivery hangs on its
        # commit, not on this task.
        # Not awaited: the worker is free at once, and "clear" and idleness wait for the
        # commit instead (user.commit, self._staged).
        user.commit = self._stage_commit(user, inbox_ids, replies)
        if not traffic_logged():
            return
        log_answered(
            Answered(
                user=user.screen_name,
                ims=len(batch),
                chars_in=len(query),
                chars_out=len(text),
                parts=len(replies) + (collector.emitted if collector is not None else 0),
                dify_seconds=dify_seconds,
                total_seconds=max(0.0, self._clock() - batch[0].received_at),
                conversation=conversation_prefix(conversation_id),
                outcome=outcome,
            ),
            text_in=query,
            text_out=text,
            log_text=self.options.log_message_text,
        )

    async def _durable(
        self, user: _User, batch: Sequence[PendingMessage]
    ) -> Sequence[PendingMessage]:
        """The messages of the batch whose commit succeeded; the user is told about the rest."""
        kept: list[PendingMessage] = []
        lost: Exception | None = None
        count = 0
        for message in batch:
            stored = message.stored
            if stored is not None:
                try:
                    if stored.done():  # the usual case: committed before this task ran
                        stored.result()
                    else:
                        await asyncio.shield(stored)
                except StoreError as e:
                    lost, count = e, count + 1
                    continue
            kept.append(message)
        if lost is not None:
            await self._not_stored(user.key, user.screen_name, count, lost)
        return kept

    def _collector(self, user: _User, inbox_ids: list[int]) -> PartCollector | None:
        """Progressive delivery's state for one answer, or None when STREAM_PARTS is off."""
        if not self.options.stream_parts:
            return None
        make_stream = functools.partial(
            part_stream,
            self.options.reply_format,
            self._reply_limit,
            im_text_size,
            self.options.max_reply_parts,
        )

        async def send(part: str) -> None:
            await self._commit_part(user, inbox_ids, part)

        return PartCollector(make_stream, send, f"parts-{user.key}")

    async def _ask_streaming(self, user: _User, query: str, collector: PartCollector) -> _Asked:
        """_ask, with each part of the answer stored and sent as soon as it is final.

        On cancellation ("clear", shutdown) the generation is stopped in Dify and nothing more
        is sent; a part already being stored still goes out (clear waits for it).
        """
        try:
            result = await self._ask(user.key, query, collector.hear)
        except asyncio.CancelledError:
            collector.abandon()
            if collector.task_id:
                self._background.start(
                    self._stop_generation(user.key, collector.task_id), f"stop-{user.key}"
                )
            await collector.wait()
            raise
        await collector.wait()
        return result

    async def _stop_generation(self, key: str, task_id: str) -> None:
        try:
            await self._dify.stop(task_id, self._dify_user(key))
        except DifyError as e:
            log.info("could not stop the Dify generation for %s (%s); it may run on", key, e)

    async def _commit_part(self, user: _User, inbox_ids: list[int], part: str) -> None:
        reply = Reply(part, self.options.reply_format == "html")
        try:
            item = await self._store.stream_part(inbox_ids, user.screen_name, reply, self._clock())
        except StoreError as e:
            log.error(
                "could not store a part of the answer for %s (%s): sending it without a durable "
                "copy; a restart may answer their IMs again",
                user.key,
                e,
            )
            item = self._unstored(user.screen_name, reply)
        self._sink.deliver([item])
        self._typing(user.screen_name, TypingState.TYPING)  # an IM clears "typing" in clients

    async def _render_rest(self, collector: PartCollector, note: str | None) -> list[Reply]:
        """The last parts of a streamed answer: what was not sent yet, and the note if any."""
        stream = collector.stream
        limit = self._reply_limit
        fmt = self.options.reply_format

        def split(markdown: str) -> list[str]:
            return split_bodies(markdown, fmt, limit, im_text_size, stream.reserve)

        rest = stream.rest()
        room = self.options.max_reply_parts - stream.emitted
        bodies = await self._fit(rest, note, room, split)
        if not bodies:
            # The last part sent said "(n/...)": the user must not wait for more.
            bodies = split(messages.ANSWER_END)
        return [Reply(part, fmt == "html") for part in stream.number(bodies)]

    async def _ask(self, key: str, query: str, on_text: TextListener | None = None) -> _Asked:
        conversation_id = await self._store.get_conversation(key)
        dify_user = self._dify_user(key)
        started = time.monotonic()
        try:
            try:
                answer = await self._dify.chat(dify_user, query, conversation_id, on_text=on_text)
            except ConversationNotFound:
                log.info("Dify forgot conversation of %s; starting a new one", key)
                answer = await self._dify.chat(dify_user, query, None, on_text=on_text)
        except DifyError as e:
            self._observe_dify(started, type(e).__name__)
            if isinstance(e, DifyAuthError):
                log.error("Dify rejected the API key (%s); check DIFY_API_KEY", e)
            else:
                log.warning("Dify failed for %s: %s: %s", key, type(e).__name__, e)
            if self._metrics is not None:
                self._metrics.friendly_errors.inc()
            return _Asked(messages.for_error(e), None, e.kind, conversation_id)
        self._observe_dify(started, None)
        if answer.conversation_id and answer.conversation_id != conversation_id:
            conversation_id = answer.conversation_id
            await self._store.set_conversation(key, conversation_id, self._clock())
        text = strip_reasoning(answer.text)
        if answer.ending == "complete":
            return _Asked(text or messages.EMPTY_ANSWER, None, "ok", conversation_id)
        if answer.ending == "cut_short":
            return _Asked(
                text or messages.EMPTY_ANSWER,
                messages.ANSWER_CUT_SHORT,
                "cut_short",
                conversation_id,
            )
        if not text:
            # Broken off before anything worth showing: one apology, and no second Dify turn.
            if self._metrics is not None:
                self._metrics.friendly_errors.inc()
            broken = messages.for_error(DifyUnavailable("the answer broke off"))
            return _Asked(broken, None, "broken_off", conversation_id)
        return _Asked(text, messages.ANSWER_INTERRUPTED, "interrupted", conversation_id)

    def _stage_commit(
        self, user: _User, inbox_ids: list[int], replies: list[Reply]
    ) -> asyncio.Future[None] | None:
        """Write the answer in place of its IMs, and hand its replies to delivery.

        A first reply that can go out at once is written to the server first, and its row right
        after, in the same step: the user has it while the commit runs (docs/benchmarks.md,
        "Session 13"). The others go out once the swap is committed. No await lies between
        that write and the commit; a crash between them leaves the IMs in the inbox, and a
        restart answers them again: nothing is lost.

        Returns what to wait for, or None when the write failed and they went out already.
        """
        items = self._store.new_replies(user.screen_name, replies, self._clock())
        sent = 1 if items and self._sink.send_at_once(items[0]) else 0
        try:
            self._store.stage_items(inbox_ids, items)
        except StoreError as e:
            self._send_unstored(user, replies[sent:], e, at_once=not sent)
            return None
        commit = self._store.commit_ticket()
        assert commit is not None  # the write above joined a transaction
        # Handed to delivery inside the commit: a loop turn sooner than a callback on `commit`.
        self._store.after_commit(
            functools.partial(
                self._on_committed, user, items[sent:], replies[sent:], at_once=not sent
            )
        )
        self._staged += 1
        # The rest go out from inside this commit (see AIMHandler.deliver): in this loop turn.
        self._store.commit_now()
        return commit

    def _on_committed(
        self,
        user: _User,
        items: list[OutboxItem],
        replies: list[Reply],
        error: StoreError | None,
        *,
        at_once: bool,
    ) -> None:
        """Hand the answer's replies to delivery once its swap is committed.

        `at_once` is False when the first reply went out before the swap: the rest then queue
        behind it (one reply written at once per answer, see AIMHandler._send_now).
        """
        try:
            if error is not None:
                self._send_unstored(user, replies, error, at_once=at_once)
            elif items:
                self._sink.deliver(items, at_once=at_once)
            self._typing(user.screen_name, TypingState.NONE)
        except Exception:
            # Never into the store's commit: say whose answer it was.
            log.exception("could not hand the answer for %s to delivery", user.key)
        finally:
            self._staged -= 1
            self._check_idle()

    def _send_unstored(
        self, user: _User, replies: list[Reply], error: BaseException, *, at_once: bool = True
    ) -> None:
        log.error(
            "could not store the answer for %s (%s): sending it without a durable copy; "
            "their IMs stay in the inbox, so a restart answers them again",
            user.key,
            error,
        )
        self._sink.deliver(
            [self._unstored(user.screen_name, reply) for reply in replies], at_once=at_once
        )

    def _unstored(self, screen_name: str, reply: Reply) -> OutboxItem:
        """A reply the store could not keep, sent anyway: a negative id no outbox row has."""
        self._unstored_ids += 1
        return OutboxItem(
            self._unstored_ids, screen_name, reply.text, reply.is_html, self._clock(), new_cookie()
        )

    async def _keep_typing(self, user: _User) -> None:
        while True:
            self._sink.typing(user.screen_name, TypingState.TYPING)
            await asyncio.sleep(self.options.typing_refresh)

    async def _say(
        self,
        screen_name: str,
        markdown: str,
        *,
        urgent: bool = False,
        drop_if_offline: bool = False,
    ) -> None:
        """Send one of the bot's own notices, through the same ordered, durable path.

        `urgent`: it goes before the round-robin of replies (a short "you are queued" notice).
        `drop_if_offline`: the notice is dropped, not held, if the recipient is offline.
        """
        for reply in await self._render(markdown):
            try:
                item = await self._store.outbox_add(screen_name, reply, self._clock())
            except StoreError as e:
                log.warning(
                    "could not store a notice for %s (%s); sending it without a durable copy",
                    normalize_screen_name(screen_name),
                    e,
                )
                item = self._unstored(screen_name, reply)
            if drop_if_offline:
                self._sink.deliver_or_drop([item])
            else:
                self._sink.deliver([item], urgent=urgent)

    async def _render(self, markdown: str, note: str | None = None) -> list[Reply]:
        """The answer as at most MAX_REPLY_PARTS IMs; what does not fit is cut, with a note.

        The text is cut BEFORE it is split: splitting is linear in its input, so a huge answer
        is never parsed whole, and each split of what is left takes a few ms. Between attempts
        the loop runs other users' work.
        """
        limit = self._reply_limit
        fmt = self.options.reply_format

        def split(text: str) -> list[str]:
            return split_reply(text, fmt, limit, im_text_size)

        parts = await self._fit(markdown, note, self.options.max_reply_parts, split)
        if not parts:
            parts = split(messages.EMPTY_ANSWER)
        return [Reply(part, fmt == "html") for part in parts]

    async def _fit(
        self,
        markdown: str,
        note: str | None,
        max_parts: int,
        split: Callable[[str], list[str]],
    ) -> list[str]:
        """`markdown` and the note split into at most `max_parts` parts, cut if need be."""
        limit = self._reply_limit
        # More than this cannot fit max_parts parts: at best one byte a character, and Markdown
        # markers (removed when rendered) are allowed to double the source.
        cap = min(self.options.max_answer_chars, 2 * max_parts * limit)
        if len(markdown) > cap:
            markdown, note = _cut(markdown, cap), note or messages.ANSWER_CUT_SHORT
        parts = split(_with_note(markdown, note))
        for attempt in range(_MAX_SHRINKS + 1):
            if len(parts) <= max_parts:
                break
            await asyncio.sleep(0)
            keep = int(len(markdown) * max_parts / len(parts) * 0.9)
            markdown = _cut(markdown, keep) if attempt < _MAX_SHRINKS else ""
            note = note or messages.ANSWER_CUT_SHORT
            parts = split(_with_note(markdown, note))
        return parts

    @property
    def _reply_limit(self) -> int:
        """Bytes of one reply IM: MAX_REPLY_BYTES, or what the server allows."""
        return self.options.max_reply_bytes or self._sink.max_message_bytes

    def _dify_user(self, key: str) -> str:
        """Dify's end-user id: the prefix and the user key, or a digest of the key when that
        would not fit Dify's 255 characters (no AIM name is that long; a hostile server's may be).
        """
        user = f"{self.options.dify_user_prefix}{key}"
        if len(user) <= MAX_USER_CHARS:
            return user
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.options.dify_user_prefix}sha256:{digest}"

    def _typing(self, screen_name: str, state: TypingState) -> None:
        if self.options.typing_notifications:
            self._sink.typing(screen_name, state)

    # -- shutdown ------------------------------------------------------------------------------

    def stop_intake(self) -> None:
        """New IMs are still stored (answered on the next start) but no new work begins."""
        self._accepting = False
        self._draining = True

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Let answers already in progress finish; cancel the rest (they stay in the inbox)."""
        self.stop_intake()
        for user in list(self._users.values()):
            if not user.busy and user.worker is not None:
                user.worker.cancel()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            finished = True
        except TimeoutError:
            finished = False
        await self.close()
        return finished

    async def close(self) -> None:
        """Cancel all work. IMs handed in afterwards are only stored (see stop_intake)."""
        self.stop_intake()
        self._background.closed = True
        workers = [u.worker for u in self._users.values() if u.worker is not None]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        background = list(self._background.tasks)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    def _check_idle(self) -> None:
        if self._workers == 0 and self._staged == 0:
            self._idle.set()

    # -- metrics -------------------------------------------------------------------------------

    def _observe_dify(self, started: float, error_type: str | None) -> None:
        if self._metrics is None:
            return
        self._metrics.dify_latency.observe(time.monotonic() - started)
        if error_type is not None:
            self._metrics.dify_errors.labels(type=error_type).inc()

    def _count_dropped(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.ims_dropped.labels(reason=reason).inc()
