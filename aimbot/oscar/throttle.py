"""AIM_THROTTLE=auto: learn, per rate class, whether the server enforces the limits it advertises.

A server advertises rate classes to every account, but some accounts are exempt (Open OSCAR
Server's `is_bot` flag): pacing those is throttling for nothing. An enforcing server tracks the
same moving average we do and sends a rate notice (01/0A code 2 "alert") when the session's level
falls below the class's alert level, which lies above the limit level, so crossing it costs no
IM. So while a class is unproven we pace to a level between the two: a burst crosses the alert
line on purpose and stays clear of the limit. If an alert (or any status notice) comes, the
class is enforced and paced as usual, just above the alert line. If our model has been past the
alert line for `grace_ms` and no notice came, the server is not enforcing that class for this
account: pacing stops, and the first status notice that ever arrives puts it back.

Sans-IO: the client feeds it sends, notices and the time; it answers how long to wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Final

from aimbot.oscar.ratelimit import (
    DEFAULT_MARGIN,
    RateMeter,
    RateStatus,
    never_limits,
    throttle_target,
)

log = logging.getLogger(__name__)

# Open OSCAR Server reports status changes from a periodic monitor (measured: the alert came
# about 1 s after the crossing), not at once: allow three times that.
DEFAULT_GRACE_MS: Final = 3000
# 01/0A codes that report a session's status in a class (1 only says the parameters changed).
STATUS_NOTICE_CODES: Final = frozenset({2, 3, 4})


class Enforcement(Enum):
    UNKNOWN = "unknown"  # paced below the alert line, to see whether the server notices
    ENFORCED = "enforced"  # the server sent a status notice for this class: paced as usual
    EXEMPT = "exempt"  # past the alert line without a notice: not paced


@dataclass(slots=True)
class _ClassState:
    enforcement: Enforcement = Enforcement.UNKNOWN
    crossed_at_ms: int | None = None  # when our model first went past the alert line


def probe_target(meter: RateMeter) -> int:
    """The level an unproven class is paced to: halfway between the limit and the alert line."""
    rate_class = meter.rate_class
    return (rate_class.limit_level + rate_class.alert_level) // 2


class ThrottleLearner:
    """Per-class enforcement, learned from our rate model and the server's notices."""

    def __init__(self, *, grace_ms: int = DEFAULT_GRACE_MS, margin: int = DEFAULT_MARGIN) -> None:
        self.grace_ms = grace_ms
        self.margin = margin
        self._classes: dict[int, _ClassState] = {}

    def enforcement(self, class_id: int) -> Enforcement:
        return self._state(class_id).enforcement

    def sent(self, class_id: int | None, status: RateStatus, now_ms: int) -> None:
        """One SNAC was counted against `class_id`; `status` is what our model says now."""
        if class_id is None or status is RateStatus.CLEAR:
            return
        state = self._state(class_id)
        if state.enforcement is Enforcement.UNKNOWN and state.crossed_at_ms is None:
            state.crossed_at_ms = now_ms

    def notice(self, class_id: int, code: int) -> None:
        """A 01/0A notice arrived: a status notice proves the server enforces the class."""
        if code not in STATUS_NOTICE_CODES:
            return
        state = self._state(class_id)
        if state.enforcement is Enforcement.EXEMPT:
            log.info(
                "the server sent a rate notice for class %d after all: pacing it again", class_id
            )
        elif state.enforcement is Enforcement.UNKNOWN:
            log.debug("the server enforces rate class %d (notice code %d)", class_id, code)
        state.enforcement = Enforcement.ENFORCED
        state.crossed_at_ms = None

    def check(self, now_ms: int) -> None:
        """Decide the classes whose grace has run out without a notice: not enforced."""
        for class_id, state in self._classes.items():
            if state.enforcement is not Enforcement.UNKNOWN or state.crossed_at_ms is None:
                continue
            if now_ms - state.crossed_at_ms < self.grace_ms:
                continue
            state.enforcement = Enforcement.EXEMPT
            log.info(
                "the server sent no rate alert although this session went past the alert level "
                "of rate class %d %.1f s ago: it does not enforce that class for this account "
                "(exempt, e.g. a bot account), so sends in it are no longer paced",
                class_id,
                (now_ms - state.crossed_at_ms) / 1000,
            )

    def delay_ms(self, meter: RateMeter | None, now_ms: int) -> int:
        """How long the next SNAC of this meter's class should wait."""
        return 0 if meter is None else meter.wait_ms(now_ms, self.target(meter, now_ms))

    def target(self, meter: RateMeter, now_ms: int) -> int | None:
        """The lowest level this meter's class may be taken to now; None: it is not paced."""
        self.check(now_ms)
        rate_class = meter.rate_class
        if never_limits(rate_class):
            return None
        enforcement = self._state(rate_class.class_id).enforcement
        if enforcement is Enforcement.EXEMPT:
            return None
        if enforcement is Enforcement.ENFORCED:
            return throttle_target(rate_class, self.margin)
        return probe_target(meter)

    def _state(self, class_id: int) -> _ClassState:
        state = self._classes.get(class_id)
        if state is None:
            state = self._classes[class_id] = _ClassState()
        return state
