"""A circuit breaker for calls to Dify.

When Dify is down, every user would otherwise wait through the whole retry schedule before
hearing "try again later", and the bot would keep hammering a struggling server. After
``threshold`` consecutive failures the breaker opens: calls fail at once for ``cooldown``
seconds, then exactly one probe is let through, whose outcome closes or re-opens it.

The clock is injected so that tests (and health checks) never wait for a real cool-down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Admission:
    """Proof that a call was let through; ``probe`` marks the single half-open trial call.

    Calls admitted before the circuit opened may still finish afterwards; the ticket keeps their
    outcome from being mistaken for the probe's.
    """

    probe: bool
    generation: int = 0  # which probe: a newer one supersedes a probe stuck on a hung stream


_REGULAR = Admission(probe=False)


class CircuitBreaker:
    """Counts consecutive failures; the caller reports each outcome exactly once per admission.

    Outcomes are reported as success (the server answered sensibly — even a 4xx proves it is up),
    failure (server-side trouble), or neutral (no verdict: cancelled, or rate-limited but still
    retrying), which only frees the probe slot.
    """

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float]) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be >= 1, got {threshold}")
        if cooldown <= 0:
            raise ValueError(f"breaker cooldown must be > 0, got {cooldown}")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._probe_started = 0.0
        self._probe_generation = 0
        self.last_failure: BaseException | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until a probe may pass (0 when calls are admitted)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def admit(self) -> Admission | None:
        """Let a call go out, or None to fail fast. Half-open admits only one caller: the probe."""
        state = self.state
        if state == "closed":
            return _REGULAR
        if state == "open":
            return None
        now = self._clock()
        if self._probe_in_flight and now - self._probe_started < self.cooldown:
            return None
        # A probe stuck on a hung stream must not keep everyone failing fast until its deadline:
        # after another cool-down a new probe supersedes it.
        self._probe_in_flight = True
        self._probe_started = now
        self._probe_generation += 1
        logger.info("Dify circuit half-open: letting one probe through")
        return Admission(probe=True, generation=self._probe_generation)

    def _is_current_probe(self, admission: Admission) -> bool:
        return admission.probe and admission.generation == self._probe_generation

    def record_success(self, admission: Admission) -> None:
        del admission  # any sensible answer proves the server is back, probe or not
        if self._opened_at is not None:
            logger.info("Dify circuit closed: Dify answered again")
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False
        self.last_failure = None

    def record_failure(self, admission: Admission, error: BaseException) -> None:
        self._failures += 1
        self.last_failure = error
        if self._is_current_probe(admission) and self._opened_at is not None:
            self._probe_in_flight = False
            self._opened_at = self._clock()
            logger.warning(
                "Dify circuit re-opened: the probe failed (%s); next probe in %.1f s",
                type(error).__name__,
                self.cooldown,
            )
        elif self._opened_at is None and self._failures >= self.threshold:
            self._opened_at = self._clock()
            logger.warning(
                "Dify circuit opened after %d consecutive failures (last: %s); "
                "failing fast for %.1f s",
                self._failures,
                type(error).__name__,
                self.cooldown,
            )

    def record_neutral(self, admission: Admission) -> None:
        if self._is_current_probe(admission):
            self._probe_in_flight = False
