"""Recognising an IM delivered twice: the same sender and the same ICBM cookie.

OSCAR has no end-to-end acknowledgement, so a sender that must not lose a message delivers it at
least once: aimbot sends a reply again when a reconnect or a crash swallowed its host ack, and
always under the cookie it chose the first time. A receiver that shows each (sender, cookie)
once therefore shows every message exactly once. Our chat client and the benchmarks' simulated
users do; other clients may show the copy.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from aimbot.oscar.snacs import normalize_screen_name

DEFAULT_CAPACITY: Final = 4096


class RepeatFilter:
    """The last `capacity` (sender, cookie) pairs seen; the oldest are forgotten first.

    A resend comes within minutes of the original (at most OUTBOX_TTL), so a few thousand
    remembered messages cover it for any one person's client.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    def is_repeat(self, sender: str, cookie: bytes) -> bool:
        """Whether this IM was seen before; remembers it when it was not."""
        key = (normalize_screen_name(sender), cookie)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._seen)
