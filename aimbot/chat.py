"""A terminal AIM client: talk to a bot from a shell, by hand or from a script.

It exists so that the demo needs nothing but this repository, and so that an operator can check a
live bot from the machine it runs on without installing an AIM client. Typed lines go out as IMs;
replies, typing notices and errors come back as plain English. With stdin not a terminal it reads
line by line and flushes every line it prints, so tests and scripts can drive it through pipes;
`--send TEXT --wait-reply SECONDS` is the one-shot form for health checks.

Usage: python -m aimbot.chat --peer aimbot [--screen-name you] [--server H] [--port N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

from aimbot.oscar.client import OscarClient
from aimbot.oscar.errors import ConnectError, LoginError, NotConnected, OscarError
from aimbot.oscar.events import (
    DisconnectReason,
    Event,
    IMError,
    IncomingIM,
    SessionEnded,
    TypingNotification,
    TypingState,
)
from aimbot.oscar.imtext import html_to_plain
from aimbot.oscar.repeats import RepeatFilter
from aimbot.oscar.snacs import normalize_screen_name
from aimbot.utils.logger import setup_logging

log = logging.getLogger(__name__)

PASSWORD_ENV: Final = "AIM_CHAT_PASSWORD"
QUIT_COMMANDS: Final = frozenset({"/quit", "/exit"})
DEFAULT_WAIT: Final = 30.0
SETTLE: Final = 3.0  # quiet seconds after an answer that end piped input (see interactive)
MAX_QUEUED_LINES: Final = 100
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

# The ICBM error codes a user can actually run into, in words (docs/oscar-protocol.md §7).
_IM_ERRORS: Final = {
    0x0002: "you are sending too fast (server rate limit); wait a few seconds",
    0x0003: "you are sending too fast (server rate limit); wait a few seconds",
    0x0004: "{peer} is not signed on; the message was not delivered",
    0x0005: "the server's messaging service is unavailable right now",
    0x0009: "{peer}'s client does not accept this kind of message",
    0x000A: "{peer}'s client refused the message",
    0x000E: "the server rejected the message as malformed",
    0x0010: "{peer} cannot receive messages from you (blocked)",
}

_SESSION_ENDS: Final = {
    DisconnectReason.EOF: "the server closed the connection",
    DisconnectReason.SIGNED_OFF: "the server signed you off",
    DisconnectReason.SIGNED_ON_ELSEWHERE: (
        "you signed on somewhere else with this screen name, so the server closed this session"
    ),
    DisconnectReason.TIMEOUT: "the server stopped answering (connection timed out)",
    DisconnectReason.PROTOCOL_ERROR: "the server sent something this client cannot understand",
    DisconnectReason.WRITE_ERROR: "the connection broke while sending",
    DisconnectReason.CLOSED: "you closed the session",
}

_PART_PREFIX: Final = re.compile(r"\s*\((\d{1,4})/(\d{1,4}|\.\.\.)\)\s")


@dataclass(frozen=True)
class ChatOptions:
    screen_name: str
    password: str = field(repr=False)
    server: str
    port: int
    peer: str
    send: str | None = None
    wait_reply: float | None = None


def describe_im_error(code: int, peer: str) -> str:
    """The server's refusal of an IM, as a sentence a person can act on."""
    template = _IM_ERRORS.get(code, "the server refused the message (ICBM error 0x{code:04x})")
    return template.format(peer=peer, code=code)


def describe_session_end(reason: DisconnectReason, detail: str) -> str:
    text = _SESSION_ENDS.get(reason, "the session ended")
    return f"{text} ({detail})" if detail else text


def describe_login_error(error: LoginError) -> str:
    code = f" (code 0x{error.code:04x})" if error.code is not None else ""
    advice = " — try again in a few minutes" if error.retryable else ""
    return f"{error.reason}{code}{advice}"


def part_position(text: str) -> tuple[int, int] | None:
    """(i, n) when the text starts with the bot's "(i/n) " split-reply prefix, else None;
    (i, 0) for "(i/...) ", a part of an answer sent while it streams (more parts follow).

    The one-shot mode uses it to wait for every part of a long answer, not just the first.
    """
    match = _PART_PREFIX.match(text)
    if match is None:
        return None
    index = int(match.group(1))
    total = 0 if match.group(2) == "..." else int(match.group(2))
    if index < 1 or (total and index > total):
        return None
    return index, total


def same_screen_name(a: str, b: str) -> bool:
    """Servers ignore case and spaces in screen names ("Aim Bot" is "aimbot")."""
    return normalize_screen_name(a) == normalize_screen_name(b)


def incoming_text(im: IncomingIM) -> str:
    return html_to_plain(im.html) if im.html else im.text


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aimbot.chat",
        description="Talk to an AIM screen name (e.g. your bot) from the terminal.",
        epilog=(
            f"The password comes from --password, else ${PASSWORD_ENV}, else a prompt (on a "
            "terminal). Type a line to send it; /quit or end of input leaves."
        ),
    )
    parser.add_argument("--screen-name", default="you", help="your screen name (default: you)")
    parser.add_argument("--password", help=f"your password (default: ${PASSWORD_ENV} or a prompt)")
    parser.add_argument("--server", default="127.0.0.1", help="OSCAR server host")
    parser.add_argument("--port", type=_port, default=5190, help="OSCAR server port (5190)")
    parser.add_argument("--peer", default="aimbot", help="who to talk to (default: aimbot)")
    parser.add_argument("--send", metavar="TEXT", help="send one message, print the reply, exit")
    parser.add_argument(
        "--wait-reply",
        metavar="SECONDS",
        type=_seconds,
        help=(
            "how long to wait for the reply to --send, or to the last line of piped input "
            "(default 30); exit 1 if it does not come"
        ),
    )
    args = parser.parse_args(list(argv))
    if args.send is not None and not args.send.strip():
        parser.error("--send needs a non-empty message")
    return args


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from e
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from e
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, got {value:g}")
    return value


def _password(args: argparse.Namespace, stdin: TextIO) -> str | None:
    if args.password:
        return str(args.password)
    from_env = os.environ.get(PASSWORD_ENV, "")
    if from_env:
        return from_env
    if stdin.isatty():
        try:
            return getpass.getpass(f"Password for {args.screen_name}: ")
        except (EOFError, KeyboardInterrupt):
            return None
    return None


class Printer:
    """Every line goes out flushed: a script reading our stdout must see each reply at once."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def note(self, line: str) -> None:
        print(line, file=self.err, flush=True)


class ChatSession:
    """One signed-on client plus one queue that merges server events and typed lines."""

    def __init__(self, options: ChatOptions, printer: Printer) -> None:
        self.options = options
        self.printer = printer
        self.client = OscarClient(
            options.screen_name, options.password, options.server, options.port
        )
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._typing: dict[str, TypingState] = {}
        self._repeats = RepeatFilter()  # a reply resent after a lost ack is shown once

    async def connect(self) -> bool:
        o = self.options
        try:
            await self.client.connect()
        except LoginError as e:
            self.printer.note(f"cannot sign on as {o.screen_name}: {describe_login_error(e)}")
            return False
        except ConnectError as e:
            self.printer.note(f"cannot reach the AIM server at {o.server}:{o.port}: {e}")
            return False
        except (OscarError, OSError) as e:
            self.printer.note(f"signing on to {o.server}:{o.port} failed: {e}")
            return False
        self._pump = asyncio.create_task(self._pump_events(), name="chat-events")
        self._pump.add_done_callback(_log_crash)
        return True

    async def close(self) -> None:
        await self.client.close()
        if self._pump is not None:
            try:
                async with asyncio.timeout(5.0):
                    await self._pump
            except TimeoutError:
                log.debug("event reader did not stop after close(); cancelled")
            except Exception:  # already logged by _log_crash
                log.debug("event reader had crashed", exc_info=True)

    async def _pump_events(self) -> None:
        async for event in self.client.events():
            if isinstance(event, IncomingIM) and self._repeats.is_repeat(
                event.sender, event.cookie
            ):
                log.debug("dropped a repeat of an IM from %s", event.sender)
                continue
            self._events.put_nowait(event)

    async def next_event(self, within: float | None) -> Event | None:
        """The next server event, or None when `within` seconds pass without one."""
        try:
            async with asyncio.timeout(within):
                return await self._events.get()
        except TimeoutError:
            return None

    async def send(self, text: str) -> bool:
        try:
            await self.client.send_im(self.options.peer, text)
        except (NotConnected, OscarError, OSError) as e:
            self.printer.note(f"could not send (not connected: {e})")
            return False
        return True

    def show(self, event: Event, *, one_shot: bool) -> None:
        """Print an event that is not a reply the one-shot mode is waiting for.

        In one-shot mode stdout carries the reply alone (scripts compare it), so everything
        else goes to stderr.
        """
        conversation = self.printer.note if one_shot else self.printer.say
        if isinstance(event, IncomingIM):
            self._typing.pop(normalize_screen_name(event.sender), None)
            tag = " (auto-response)" if event.auto_response else ""
            conversation(f"{event.sender}{tag}: {incoming_text(event)}")
        elif isinstance(event, TypingNotification):
            # Bots refresh "typing" every few seconds; one line per change is enough.
            key = normalize_screen_name(event.sender)
            before = self._typing.get(key, TypingState.NONE)
            self._typing[key] = event.state
            if event.state is TypingState.TYPING and before is not TypingState.TYPING:
                conversation(f"{event.sender} is typing…")
        elif isinstance(event, IMError):
            self.printer.note(describe_im_error(event.code, event.recipient or self.options.peer))
        elif isinstance(event, SessionEnded):
            self.printer.note(f"disconnected: {describe_session_end(event.reason, event.detail)}")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the event reader crashed", exc_info=exc)


class ReplyTracker:
    """How many of our messages still await an answer (each "(i/n)" part counted once).

    Scripts that pipe lines in must see the answers before the client leaves, so the end of input
    waits on this. A bot may join messages that arrive while it is busy into one query, so fewer
    answers than messages can be complete: `settled` says the peer has answered since our last
    message and has stopped typing, which the end of input also accepts after a quiet spell.
    """

    def __init__(self) -> None:
        self.pending = 0
        self.unsent = 0  # typed, not yet through the client's pacing
        self.undelivered = 0
        self.answered_since_sent = False
        self.peer_typing = False
        self._parts: set[int] = set()
        self._total: int | None = None

    @property
    def waiting(self) -> bool:
        return self.pending > 0

    @property
    def settled(self) -> bool:
        return self.answered_since_sent and not self.peer_typing

    def queued(self) -> None:
        self.unsent += 1

    def sent(self) -> None:
        self.unsent = max(0, self.unsent - 1)
        self.pending += 1
        self.answered_since_sent = False

    def answered(self, text: str) -> None:
        self.peer_typing = False
        position = part_position(text)
        if position is not None:
            index, total = position
            if not total:  # streamed, count still unknown: more parts follow
                self._parts.add(index)
                return
            if self._total is not None and self._total != total:
                self._parts.clear()
            self._parts.add(index)
            self._total = total
            if len(self._parts) < total:
                return
        self._parts.clear()
        self._total = None
        self.pending = max(0, self.pending - 1)
        self.answered_since_sent = True

    def typing(self, state: TypingState) -> None:
        self.peer_typing = state is TypingState.TYPING

    def not_delivered(self) -> None:
        self.undelivered += 1
        self.pending = max(0, self.pending - 1)

    def shortfall(self, peer: str, wait: float) -> str:
        if self._total is not None:
            return f"only {len(self._parts)} of {self._total} reply parts arrived in {wait:g} s"
        if self.pending > 1:
            return f"{self.pending} messages got no reply from {peer} within {wait:g} s"
        return f"no reply from {peer} within {wait:g} s"


def is_reply(event: Event, peer: str) -> bool:
    return (
        isinstance(event, IncomingIM)
        and same_screen_name(event.sender, peer)
        and not event.auto_response
    )


async def send_and_wait(session: ChatSession, text: str, wait: float) -> int:
    """Send one IM and print the peer's reply (all its "(i/n)" parts); 1 if it does not come."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    if not await session.send(text):
        return EXIT_FAILED
    peer = session.options.peer
    tracker = ReplyTracker()
    tracker.sent()
    while tracker.waiting:
        remaining = deadline - loop.time()
        event = await session.next_event(remaining) if remaining > 0 else None
        if event is None:
            session.printer.note(tracker.shortfall(peer, wait))
            return EXIT_FAILED
        if isinstance(event, IncomingIM) and is_reply(event, peer):
            body = incoming_text(event)
            session.printer.say(body)
            tracker.answered(body)
            continue
        session.show(event, one_shot=True)
        if isinstance(event, SessionEnded | IMError):
            return EXIT_FAILED
    return EXIT_OK


_EOF: Final = object()


def start_line_reader(stdin: TextIO, queue: asyncio.Queue[str | object]) -> threading.Thread:
    """Read stdin in a daemon thread, because a blocking readline cannot be cancelled.

    asyncio's pipe readers refuse regular files and behave differently per platform; a thread
    works for terminals, pipes and redirected files alike, and being a daemon it never keeps the
    process alive after the chat ends.
    """
    loop = asyncio.get_running_loop()

    def read() -> None:
        try:
            for line in stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        except (OSError, ValueError) as e:  # stdin closed under us
            log.debug("stdin reader stopped: %s", e)
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(queue.put_nowait, _EOF)

    thread = threading.Thread(target=read, name="chat-stdin", daemon=True)
    thread.start()
    return thread


async def _send_in_order(
    session: ChatSession, outgoing: asyncio.Queue[str], tracker: ReplyTracker
) -> None:
    """Send typed lines one by one, apart from the loop that shows what arrives.

    The client paces its sends to the server's rate limits, which can take seconds; replies that
    arrive meanwhile are shown at once instead of after the pacing. Ends at the first failure.
    """
    while True:
        text = await outgoing.get()
        if not await session.send(text):
            return
        tracker.sent()


async def interactive(
    session: ChatSession, stdin: TextIO, *, wait: float, settle: float = SETTLE
) -> int:
    """Send each typed line; show everything that arrives, until /quit, end of input or a drop.

    When the input is piped and ends while answers are outstanding, wait up to `wait` seconds
    for them: a script's `printf 'hi\\n' | python -m aimbot.chat` must print the replies. A peer
    that answered since our last line and then stayed quiet (not typing) for `settle` seconds
    has joined the rest into that answer. The exit code is 1 if a message could not be delivered
    or the replies did not come.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | object] = asyncio.Queue()
    start_line_reader(stdin, lines)
    o = session.options
    session.printer.note(
        f"signed on as {o.screen_name}; talking to {o.peer}. Type a message and press Enter "
        "(/quit to leave)."
    )
    tracker = ReplyTracker()
    outgoing: asyncio.Queue[str] = asyncio.Queue(maxsize=MAX_QUEUED_LINES)
    sender = asyncio.create_task(_send_in_order(session, outgoing, tracker), name="chat-send")
    outcome = EXIT_OK
    input_ended_at: float | None = None
    next_line = asyncio.create_task(lines.get())
    next_event = asyncio.create_task(session.next_event(None))
    try:
        while True:
            if sender.done():
                return EXIT_FAILED  # the send failed (already said why)
            if input_ended_at is None:
                done, _ = await asyncio.wait(
                    {next_line, next_event, sender}, return_when=asyncio.FIRST_COMPLETED
                )
            else:
                unsent = tracker.unsent
                if not unsent and (not tracker.waiting):
                    break
                remaining = input_ended_at + wait - loop.time()
                quiet = settle if (tracker.settled and not unsent) else remaining
                done, _ = await asyncio.wait(
                    {next_event, sender},
                    timeout=max(0.0, min(remaining, quiet)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    if tracker.settled and not unsent:
                        break  # answered, and quiet since: the rest was joined into it
                    session.printer.note(tracker.shortfall(o.peer, wait))
                    outcome = EXIT_FAILED
                    break
            if next_event in done:
                event = next_event.result()
                if event is not None:
                    if isinstance(event, IncomingIM) and is_reply(event, o.peer):
                        tracker.answered(incoming_text(event))
                    elif isinstance(event, TypingNotification) and same_screen_name(
                        event.sender, o.peer
                    ):
                        tracker.typing(event.state)
                    elif isinstance(event, IMError):
                        tracker.not_delivered()
                    session.show(event, one_shot=False)
                    if isinstance(event, SessionEnded):
                        return EXIT_FAILED
                next_event = asyncio.create_task(session.next_event(None))
            if input_ended_at is None and next_line in done:
                line = next_line.result()
                if line is _EOF:
                    if _is_terminal(stdin):
                        break
                    input_ended_at = loop.time()
                    continue
                assert isinstance(line, str)
                text = line.strip()
                if text.lower() in QUIT_COMMANDS:
                    break
                if text:
                    tracker.queued()
                    await outgoing.put(text)  # bounded: a flood of lines waits for the sends
                next_line = asyncio.create_task(lines.get())
    finally:
        for task in (next_line, next_event, sender):
            task.cancel()
        await asyncio.gather(next_line, next_event, sender, return_exceptions=True)
    return EXIT_FAILED if tracker.undelivered else outcome


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


async def run_chat(options: ChatOptions, *, stdin: TextIO, printer: Printer) -> int:
    session = ChatSession(options, printer)
    if not await session.connect():
        return EXIT_FAILED
    try:
        wait = options.wait_reply if options.wait_reply is not None else DEFAULT_WAIT
        if options.send is not None:
            return await send_and_wait(session, options.send, wait)
        return await interactive(session, stdin, wait=wait)
    finally:
        await session.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    printer = Printer(sys.stdout, sys.stderr)
    password = _password(args, sys.stdin)
    if not password:
        printer.note(
            f"no password for {args.screen_name}: pass --password, set ${PASSWORD_ENV}, "
            "or run on a terminal to be asked"
        )
        return EXIT_USAGE
    # The client says what went wrong in its own words; the library's warnings would only
    # repeat it first in log syntax. Errors (a bug) still show.
    setup_logging(level="ERROR", secrets=[password])
    options = ChatOptions(
        screen_name=args.screen_name,
        password=password,
        server=args.server,
        port=args.port,
        peer=args.peer,
        send=args.send,
        wait_reply=args.wait_reply,
    )
    try:
        return asyncio.run(run_chat(options, stdin=sys.stdin, printer=printer))
    except KeyboardInterrupt:
        printer.note("bye")
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
