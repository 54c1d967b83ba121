"""Exponential back-off with jitter, shared by the Dify retries and the OSCAR reconnect loop.

A small checked object rather than ad-hoc arithmetic in each retry loop, so that the bounds are
tested once and every loop logs the same kind of delay.
"""

from __future__ import annotations

import random
from typing import Literal

Jitter = Literal["full", "equal"]


class Backoff:
    """Delays base·factor^n capped at cap, randomised so that many clients do not retry in step.

    "full" jitter draws from [0, ceiling] (best spread, used for HTTP retries); "equal" jitter
    draws from [ceiling/2, ceiling] so that a reconnect never happens sooner than half the
    nominal delay (a server that rate-limits logins is never hammered).
    """

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        factor: float = 2.0,
        jitter: Jitter = "full",
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0:
            raise ValueError(f"back-off base must be > 0, got {base}")
        if cap < base:
            raise ValueError(f"back-off cap ({cap}) must be >= base ({base})")
        if factor < 1:
            raise ValueError(f"back-off factor must be >= 1, got {factor}")
        if jitter not in ("full", "equal"):
            raise ValueError(f"unknown jitter mode {jitter!r}")
        self.base = base
        self.cap = cap
        self.factor = factor
        self.jitter: Jitter = jitter
        self._rng = rng or random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset()."""
        return self._attempts

    def ceiling(self, attempt: int | None = None) -> float:
        """The largest delay the given (default: next) attempt can produce."""
        n = self._attempts if attempt is None else attempt
        # Compare exponents instead of computing factor**n, which overflows for large n.
        if self.factor == 1 or n >= 1024:
            return self.cap if self.factor > 1 else min(self.cap, self.base)
        return min(self.cap, self.base * self.factor**n)

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self._attempts += 1
        if self.jitter == "equal":
            return ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        """Call after a success, so the next failure starts from the base delay again."""
        self._attempts = 0
