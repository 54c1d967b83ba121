"""Which senders are not people, and must never be answered.

Servers tell a signed-on client about problems (a second login of its screen name, a warning)
with IMs from system screen names; answering them asks Dify on behalf of no one and queues a reply
the server cannot deliver, spending rate budget that real users need. The operator can add names
of their own (other bots, relays) with IGNORED_SENDERS. Such IMs are logged once per sender, with
their text, because that text is how a server explains what went wrong.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Final

from aimbot.oscar.snacs import normalize_screen_name

log = logging.getLogger(__name__)

# Normalised (lower case, no spaces). "OOS System Msg" is Open OSCAR Server's notice sender (seen
# on its duplicate-login notice); "AOL System Msg" is AOL's own; the others are the same idea on
# other revival servers.
SYSTEM_SENDERS: Final = frozenset(
    {
        "oossystemmsg",
        "aolsystemmsg",
        "aimsystemmsg",
        "icqsystemmsg",
        "systemmsg",
    }
)

REASON_SYSTEM: Final = "system_sender"
REASON_CONFIGURED: Final = "ignored_sender"
REASON_AUTO_RESPONSE: Final = "auto_response"

# How many distinct ignored senders are remembered for "log once": a server cannot grow it.
REMEMBERED_SENDERS: Final = 1024
LOGGED_TEXT_CHARS: Final = 500


class IgnoredSenders:
    """Decides whether an IM comes from a non-person, and whether it is worth a log line."""

    def __init__(self, configured: frozenset[str] = frozenset()) -> None:
        self._configured = frozenset(normalize_screen_name(name) for name in configured)
        self._logged: OrderedDict[str, None] = OrderedDict()

    def reason(self, key: str, *, auto_response: bool = False) -> str | None:
        """Why an IM from this normalised sender is ignored, or None if it is a person's IM."""
        if key in SYSTEM_SENDERS:
            return REASON_SYSTEM
        if key in self._configured:
            return REASON_CONFIGURED
        if auto_response:
            return REASON_AUTO_RESPONSE
        return None

    def note(self, key: str, sender: str, text: str, reason: str) -> None:
        """Log the IM at INFO the first time this sender is ignored (bounded memory)."""
        if reason == REASON_AUTO_RESPONSE:
            log.debug("ignoring an auto-response (away message) from %r", sender)
            return
        if key in self._logged:
            self._logged.move_to_end(key)
            log.debug("ignoring another IM from %r (%s)", sender, reason)
            return
        self._logged[key] = None
        while len(self._logged) > REMEMBERED_SENDERS:
            self._logged.popitem(last=False)
        shown = text if len(text) <= LOGGED_TEXT_CHARS else text[:LOGGED_TEXT_CHARS] + "…"
        what = "a system screen name" if reason == REASON_SYSTEM else "listed in IGNORED_SENDERS"
        log.info(
            "not answering %r (%s); it said: %r (further IMs from it are not logged)",
            sender,
            what,
            shown,
        )
