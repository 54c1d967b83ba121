"""Bookkeeping of the chaos run: every message a user sent, and every reply, attributed.

Each message carries a unique token ("q<user>x<seq>") and the Dify stand-in's answer quotes the
query, so an answer names the message(s) it answers, even when the bot joined several into one
query. The bot's friendly error notices carry no token, so they are matched to messages only when
counting: each one accounts for ONE message of that user that has no answer (arrival order proves
nothing: a user's older reply may still be parked in the bot's outbox while a newer message fails).
A friendly notice for two joined messages therefore leaves one counted as lost: the count errs
toward "lost", never toward "answered". Pure: no I/O and no clock, so the rules are testable.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

# No leading word boundary: the stand-in quotes a joined query with repr(), so a token can follow
# a literal backslash-n ("...q3x7\\nq3x8...").
TOKEN = re.compile(r"q(\d+)x(\d+)(?!\d)")


def token_for(user_index: int, seq: int) -> str:
    return f"q{user_index}x{seq}"


def tokens_in(text: str) -> list[str]:
    return [f"q{m.group(1)}x{m.group(2)}" for m in TOKEN.finditer(text)]


@dataclass
class Message:
    token: str
    user: str
    sent_at: float
    acked: bool = False  # the server confirmed relaying it to the bot's screen name
    acked_at: float | None = None
    refused: int | None = None  # the server's IM error code (0x0004: the bot was offline)
    unconfirmed: bool = False  # the user's session ended before the server said anything
    to_intruder: bool = False  # relayed to the duplicate login, not to the bot
    answers: list[str] = field(default_factory=list)
    friendly: int = 0
    resend_asked: bool = False  # its only reply is the bot's "please resend" after a restart

    @property
    def replied(self) -> bool:
        return bool(self.answers) or self.friendly > 0

    @property
    def sent(self) -> bool:
        """Reached the bot: confirmed by the server, or proven by a reply."""
        return not self.to_intruder and (self.acked or self.replied)


@dataclass(frozen=True)
class Duplicate:
    user: str
    text: str
    first_at: float
    again_at: float


@dataclass(frozen=True)
class Totals:
    sent: int
    answered: int
    friendly_errors: int
    lost: int
    duplicates: int
    send_failed: int
    reanswered: int
    to_intruder: int
    unattributed: int
    redelivered: int
    restart_notices: int
    resend_asked: int


class Ledger:
    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}
        self._by_user: defaultdict[str, list[Message]] = defaultdict(list)
        self._answers_seen: dict[tuple[str, str], float] = {}
        # Each user's notices: (received at, is a restart notice).
        self._friendly_by_user: defaultdict[str, list[tuple[float, bool]]] = defaultdict(list)
        self._replies_by_user: Counter[str] = Counter()
        self._spare_friendly = 0
        self._resend_asked = 0
        self.duplicates: list[Duplicate] = []
        self.friendly_errors = 0
        self.unattributed: list[tuple[str, str]] = []
        self.redelivered = 0  # copies a user's client dropped: same sender, same cookie

    def new(self, user: str, token: str, now: float) -> Message:
        if token in self.messages:
            raise ValueError(f"token {token} used twice")
        message = Message(token, user, now)
        self.messages[token] = message
        self._by_user[user].append(message)
        return message

    def replies_to(self, user: str) -> int:
        """IMs from the bot this user has received so far (answers and notices alike)."""
        return self._replies_by_user[user]

    def reply(self, user: str, text: str, at: float, *, restart_notice: bool = False) -> str:
        """Record one IM from the bot (received `at`); returns "answer", "friendly" or
        "unattributed". A restart notice (the bot asking, after being killed, to resend an
        unanswered message) is a friendly reply, counted apart."""
        self._replies_by_user[user] += 1
        tokens = tokens_in(text)
        if restart_notice or not tokens:
            self.friendly_errors += 1
            self._friendly_by_user[user].append((at, restart_notice))
            return "friendly"
        key = (user, text)
        first = self._answers_seen.get(key)
        if first is None:
            self._answers_seen[key] = at
        else:
            self.duplicates.append(Duplicate(user, text, first, at))
        matched = False
        for token in tokens:
            message = self.messages.get(token)
            if message is not None and message.user == user:
                if text not in message.answers:
                    message.answers.append(text)
                matched = True
        if not matched:
            self.unattributed.append((user, text))
            return "unattributed"
        return "answer"

    def _settle_friendly(self) -> None:
        """Match each user's friendly notices to their messages without an answer.

        Notices are taken in the order they arrived, each answering the oldest message still
        waiting that was sent before it (never a later one). Messages the server confirmed
        come first; a notice left over proves that one of the user's unconfirmed messages did
        reach the bot after all.
        """
        self._spare_friendly = 0
        self._resend_asked = 0
        for user in self._by_user.keys() | self._friendly_by_user.keys():
            # .get: a user who sent nothing still counts the notices they got (unattributed).
            messages = self._by_user.get(user, [])
            waiting = [m for m in messages if not m.answers and not m.to_intruder]
            for m in waiting:
                m.friendly = 0
                m.resend_asked = False
            candidates = [m for m in waiting if m.acked] + [
                m for m in waiting if not m.acked and m.refused is None
            ]
            notices = sorted(self._friendly_by_user.get(user, []))
            for at, restart in notices:
                match = next((m for m in candidates if not m.friendly and m.sent_at <= at), None)
                if match is None:
                    self._spare_friendly += 1
                    continue
                match.friendly = 1
                if restart:
                    match.resend_asked = True
                    self._resend_asked += 1

    def resend_asked(self) -> list[Message]:
        """Messages answered only by a restart notice (the bot lost them as it was killed)."""
        self._settle_friendly()
        return [m for m in self.messages.values() if m.resend_asked]

    def outstanding(self) -> int:
        """Messages the bot got that have no reply yet (what the drain waits for)."""
        return len(self.lost())

    def lost(self) -> list[Message]:
        self._settle_friendly()
        return [m for m in self.messages.values() if m.sent and not m.replied]

    def totals(self) -> Totals:
        self._settle_friendly()
        messages = list(self.messages.values())
        sent = [m for m in messages if m.sent]
        answered = [m for m in sent if m.replied]
        return Totals(
            sent=len(sent),
            answered=len(answered),
            friendly_errors=self.friendly_errors,
            lost=len(sent) - len(answered),
            duplicates=len(self.duplicates),
            send_failed=sum(1 for m in messages if not m.sent and not m.to_intruder),
            reanswered=sum(1 for m in sent if len(m.answers) > 1),
            to_intruder=sum(1 for m in messages if m.to_intruder),
            unattributed=len(self.unattributed) + self._spare_friendly,
            redelivered=self.redelivered,
            restart_notices=sum(
                restart for notices in self._friendly_by_user.values() for _, restart in notices
            ),
            resend_asked=self._resend_asked,
        )


def reached_socket_at(acked_at: float, stalls: Sequence[tuple[float, float]]) -> float:
    """When the server wrote an IM into the bot's socket: at once, or when a stall held it."""
    for start, end in stalls:
        if start <= acked_at <= end:
            return end
    return acked_at


def in_kill_window(at: float, kills: Sequence[float], window: float) -> bool:
    """Whether the bot was SIGKILLed within `window` seconds of `at` (before or after).

    An IM the server writes into the socket of a process that dies before reading and storing
    it is lost whatever the client does (OSCAR has no end-to-end ack for incoming IMs); a
    reply the server relays around the kill, whose ack the dead bot never processed, is sent
    again after the restart (at-least-once). Such cases are counted apart, not excused.
    """
    return any(abs(kill - at) <= window for kill in kills)
