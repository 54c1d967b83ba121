"""Who the bot answers and how often: access lists and the per-user rate limit.

Screen names are compared in their normalised form (aimbot.oscar.snacs.normalize_screen_name,
the identity the OSCAR server itself uses), so "Bob Smith" and "bobsmith" are one user.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AccessPolicy:
    allowed: frozenset[str] = frozenset()  # empty = everyone
    blocked: frozenset[str] = frozenset()

    def permits(self, user_key: str) -> bool:
        if user_key in self.blocked:
            return False
        return not self.allowed or user_key in self.allowed


class RateDecision(enum.Enum):
    ALLOW = "allow"
    NOTIFY = "notify"  # over the limit: tell the user once in this window
    DENY = "deny"  # over the limit, already told


class UserRateLimiter:
    """At most `per_minute` messages per user in each 60-second window (0 = unlimited).

    Fixed windows keep the state to three numbers per active user; stale entries are swept so
    that ten thousand one-off users do not stay in memory.
    """

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # key -> [window_start, count, notified]
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, user_key: str) -> RateDecision:
        if self.per_minute <= 0:
            return RateDecision.ALLOW
        now = self._clock()
        self._sweep(now)
        window = self._windows.get(user_key)
        if window is None or now - window[0] >= self.WINDOW:
            self._windows[user_key] = [now, 1.0, 0.0]
            return RateDecision.ALLOW
        window[1] += 1
        if window[1] <= self.per_minute:
            return RateDecision.ALLOW
        if window[2]:
            return RateDecision.DENY
        window[2] = 1.0
        return RateDecision.NOTIFY

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.WINDOW
        stale = [k for k, w in self._windows.items() if now - w[0] >= self.WINDOW]
        for key in stale:
            del self._windows[key]
