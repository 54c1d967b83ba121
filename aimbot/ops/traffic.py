"""The traffic log: one INFO line per answered message, for operators.

It answers "is the bot working, for whom, and how fast" from the log alone: who (escaped), how
much went in and out, in how many parts, how long Dify took, how long the user waited in total,
and which conversation it joined (an id prefix: enough to find it in Dify, short in the log).
What users wrote is theirs: the text is logged only at DEBUG and only when the operator turns
LOG_MESSAGE_TEXT on. JSON logs carry the same figures as keys (see JsonFormatter, `fields`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

CONVERSATION_PREFIX: Final = 8
MAX_SHOWN_CHARS: Final = 2000  # a logged message text is cut here (LOG_MESSAGE_TEXT)


def escape(text: str, limit: int = 64) -> str:
    """User data made safe for one log line: control and non-printable characters escaped
    (a forged newline cannot start a fake record), and cut at `limit` characters."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    if shown.isprintable():  # the usual case, checked in C: nothing to escape
        return shown
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)


@dataclass(frozen=True, slots=True)
class Answered:
    """The figures of one answered message (one Dify query, however many IMs it joined)."""

    user: str
    ims: int
    chars_in: int
    chars_out: int
    parts: int
    dify_seconds: float
    total_seconds: float
    conversation: str
    outcome: str  # "ok", or the Dify error kind whose apology was sent instead


def conversation_prefix(conversation_id: str | None) -> str:
    """Enough of Dify's conversation id to find it there ("-" before the first answer)."""
    return escape((conversation_id or "-")[:CONVERSATION_PREFIX])


def traffic_logged() -> bool:
    """Whether the per-answer line is written (INFO on): callers build nothing otherwise."""
    return log.isEnabledFor(logging.INFO)


def log_answered(
    answered: Answered, *, text_in: str, text_out: str, log_text: bool = False
) -> None:
    """The INFO line (and, when asked for, the texts at DEBUG).

    Nothing is built when INFO is off (it runs once per answer; DEBUG is off then too).
    """
    if not traffic_logged():
        return
    fields: dict[str, object] = {
        "user": escape(answered.user),
        "ims": answered.ims,
        "chars_in": answered.chars_in,
        "chars_out": answered.chars_out,
        "parts": answered.parts,
        "dify_seconds": round(answered.dify_seconds, 3),
        "total_seconds": round(answered.total_seconds, 3),
        "conversation": answered.conversation,
        "outcome": answered.outcome,
    }
    log.info(
        "answered %s: %d chars in, %d out in %d parts; Dify %.2f s, total %.2f s; "
        "conversation %s; %s",
        fields["user"],
        answered.chars_in,
        answered.chars_out,
        answered.parts,
        answered.dify_seconds,
        answered.total_seconds,
        answered.conversation,
        answered.outcome,
        extra={"fields": fields},
    )
    if log_text and log.isEnabledFor(logging.DEBUG):
        log.debug(
            "text from %s: %s",
            fields["user"],
            escape(text_in, MAX_SHOWN_CHARS),
            extra={"fields": {"user": fields["user"], "direction": "in"}},
        )
        log.debug(
            "text to %s: %s",
            fields["user"],
            escape(text_out, MAX_SHOWN_CHARS),
            extra={"fields": {"user": fields["user"], "direction": "out"}},
        )
