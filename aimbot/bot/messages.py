"""Everything the bot says on its own behalf, in one place so the tone stays consistent.

Users see one short, friendly sentence per failure; the technical detail goes to the log.
"""

from __future__ import annotations

from aimbot.api.errors import (
    ConversationNotFound,
    DifyAuthError,
    DifyBadRequest,
    DifyCircuitOpen,
    DifyError,
    DifyRateLimited,
    DifyTimeout,
    DifyUnavailable,
)

HELP = (
    "Hi! I'm a bot: send me a message and I'll answer.\n"
    "Commands:\n"
    "  clear - forget our conversation and start fresh\n"
    "  help - show this message"
)
CLEARED = "Okay, I've forgotten our conversation. Your next message starts a new one."
EMPTY_ANSWER = "Sorry, I don't have an answer to that."
RESTARTED = (
    "Sorry, I had to restart and may have missed your last message. "
    "If I haven't answered it, please send it again."
)
RATE_LIMITED_USER = (
    "You're sending messages faster than I can keep up with ({limit} a minute). "
    "I'll skip messages until the minute is over - please wait a moment."
)
BUSY = (
    "Lots of people are writing to me right now: your answer is in the queue and should "
    "reach you in about {minutes} min. No need to send your message again."
)
TOO_LONG = (
    "Your message is too long for me ({length} characters; the limit is {limit}). "
    "Please send a shorter one."
)
NOT_STORED = (
    "Sorry, I couldn't save your message because of a problem on my side, so I can't answer "
    "it. Please send it again in a few minutes."
)
ANSWER_CUT_SHORT = "(answer cut short)"
ANSWER_INTERRUPTED = "(answer cut short: my answer service stopped mid-way; ask again for more)"
ANSWER_END = "(end of answer)"
STREAM_CUT_BY_RESTART = "(my answer was cut off by a restart; ask again for the rest)"

_FOR_ERROR: list[tuple[type[DifyError], str]] = [
    (DifyRateLimited, "I'm getting a lot of questions right now. Please try again in a minute."),
    (DifyCircuitOpen, "My answer service is temporarily unavailable. Please try again shortly."),
    (DifyUnavailable, "My answer service is temporarily unavailable. Please try again shortly."),
    (
        DifyTimeout,
        "That took too long to answer. Please try again, perhaps with a shorter question.",
    ),
    (DifyAuthError, "I can't answer right now because of a configuration problem on my side."),
    (ConversationNotFound, "I lost track of our conversation. Please send your message again."),
    (DifyBadRequest, "Sorry, I couldn't process that message. Please rephrase it."),
]
_GENERIC = "Sorry, something went wrong on my side. Please try again."


def for_error(error: DifyError) -> str:
    for kind, text in _FOR_ERROR:
        if isinstance(error, kind):
            return text
    return _GENERIC
