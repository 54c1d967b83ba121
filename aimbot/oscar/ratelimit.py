"""The OSCAR rate model (docs/oscar-protocol.md §6), shared by the client's throttle and the
devserver's enforcement.

Both ends run the same integer moving average, so a client that paces itself with this model
never trips a server that enforces it, and the devserver's behaviour in tests is exactly the
behaviour the client is tuned for. Time is in integer milliseconds, as on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

# LP keeps the level this far above the alert line before it sends
# (docs/oscar-protocol.md §6, "throttle").
DEFAULT_MARGIN = 100


@dataclass(frozen=True, slots=True)
class RateClass:
    """One class record of the 01/07 rate reply (30 bytes, 35 with last_time and dropping)."""

    class_id: int
    window: int
    clear_level: int
    alert_level: int
    limit_level: int
    disconnect_level: int
    current_level: int
    max_level: int
    last_time: int = 0
    dropping: int = 0


@dataclass(frozen=True, slots=True)
class RateGroup:
    """Which SNACs (family, subgroup) count against a class."""

    class_id: int
    members: tuple[tuple[int, int], ...]


class RateStatus(Enum):
    CLEAR = "clear"
    ALERT = "alert"
    LIMITED = "limited"
    DISCONNECT = "disconnect"


def next_level(rate_class: RateClass, current: int, elapsed_ms: int) -> int:
    """The class's level after one more SNAC `elapsed_ms` after the previous one."""
    window = max(rate_class.window, 1)  # a zero window from a broken server must not divide by 0
    elapsed = max(elapsed_ms, 0)  # a clock that steps back must not raise the level
    return min((current * (window - 1) + elapsed) // window, rate_class.max_level)


def classify(rate_class: RateClass, level: int, was_limited: bool) -> RateStatus:
    """Status for a level; leaving "limited" needs the clear level, not just the limit
    (docs/oscar-protocol.md §6)."""
    if level < rate_class.disconnect_level:
        return RateStatus.DISCONNECT
    if was_limited:
        return RateStatus.CLEAR if level >= rate_class.clear_level else RateStatus.LIMITED
    if level < rate_class.limit_level:
        return RateStatus.LIMITED
    if level < rate_class.alert_level:
        return RateStatus.ALERT
    return RateStatus.CLEAR


def wait_ms_for_level(rate_class: RateClass, current: int, elapsed_ms: int, target: int) -> int:
    """How much longer to wait so that the next SNAC leaves the level at or above `target`."""
    window = max(rate_class.window, 1)
    needed = target * window - current * (window - 1)
    return max(needed - max(elapsed_ms, 0), 0)


def burst_size(rate_class: RateClass, level: int, elapsed_ms: int, target: int, most: int) -> int:
    """How many SNACs can go out back to back now, each leaving the level at or above `target`
    (0: even the first must wait). Bounded by `most`, so the loop is too."""
    count = 0
    while count < most and wait_ms_for_level(rate_class, level, elapsed_ms, target) == 0:
        level = next_level(rate_class, level, elapsed_ms)
        elapsed_ms = 0  # the rest of the burst follows at once
        count += 1
    return count


def never_limits(rate_class: RateClass) -> bool:
    """A class with no alert, limit or disconnect level cannot limit anyone.

    Servers advertise such classes to accounts they exempt (our devserver does so for is_bot
    accounts and when enforcement is off), and a client must not pace itself against them.
    """
    return max(rate_class.alert_level, rate_class.limit_level, rate_class.disconnect_level) <= 0


def unlimited(rate_class: RateClass) -> RateClass:
    """The same class with every threshold removed (see never_limits)."""
    return replace(rate_class, clear_level=0, alert_level=0, limit_level=0, disconnect_level=0)


def throttle_target(rate_class: RateClass, margin: int = DEFAULT_MARGIN) -> int:
    """The lowest level a throttled sender lets a class reach: alert + margin, capped at max."""
    return min(rate_class.alert_level + margin, rate_class.max_level)


def paced_target(rate_class: RateClass, margin: int = DEFAULT_MARGIN) -> int | None:
    """throttle_target, or None for a class that never limits (nothing to pace)."""
    return None if never_limits(rate_class) else throttle_target(rate_class, margin)


class RateMeter:
    """One class's running level, as the server tracks it for one session."""

    __slots__ = ("last_ms", "level", "limited", "over_limit_ms", "rate_class", "status")

    def __init__(self, rate_class: RateClass, now_ms: int, level: int | None = None) -> None:
        self.rate_class = rate_class
        self.level = rate_class.current_level if level is None else level
        self.last_ms = now_ms
        self.limited = False
        self.over_limit_ms: int | None = None  # when a SNAC last left us limited or worse
        self.status = RateStatus.CLEAR  # what the last SNAC counted left the class in

    def peek(self, now_ms: int) -> tuple[int, RateStatus]:
        level = next_level(self.rate_class, self.level, now_ms - self.last_ms)
        return level, classify(self.rate_class, level, self.limited)

    def record(self, now_ms: int) -> RateStatus:
        """Count one SNAC now; dropped SNACs count too (docs/oscar-protocol.md §6), so call this
        for every one."""
        level, status = self.peek(now_ms)
        self.level = level
        self.last_ms = now_ms
        self.limited = status is RateStatus.LIMITED
        self.status = status
        if status in (RateStatus.LIMITED, RateStatus.DISCONNECT):
            self.over_limit_ms = now_ms
        return status

    def delay_ms(self, now_ms: int, margin: int = DEFAULT_MARGIN) -> int:
        return self.wait_ms(now_ms, paced_target(self.rate_class, margin))

    def wait_ms(self, now_ms: int, target: int | None) -> int:
        """How long the next SNAC waits to keep the level at or above `target` (None: 0)."""
        if target is None:
            return 0
        return wait_ms_for_level(self.rate_class, self.level, now_ms - self.last_ms, target)

    def burst(self, now_ms: int, target: int | None, most: int) -> int:
        """How many SNACs can go now, back to back, keeping the level at or above `target`
        (None: no pacing, so `most`)."""
        if target is None:
            return most
        return burst_size(self.rate_class, self.level, now_ms - self.last_ms, target, most)

    def adopt(self, rate_class: RateClass, now_ms: int) -> None:
        """Take over the server's view from a 01/0A notice (its record carries the level)."""
        self.rate_class = rate_class
        self.level = rate_class.current_level
        self.last_ms = now_ms


class RateTable:
    """Every class of a session and the (family, subgroup) -> class map from the rate groups.

    SNACs that no group lists count against the lowest class id, which is the "default" class
    on every server we know (RAS class 1).
    """

    def __init__(
        self, classes: Iterable[RateClass], groups: Iterable[RateGroup], now_ms: int
    ) -> None:
        self._meters = {c.class_id: RateMeter(c, now_ms) for c in classes}
        self._members: dict[tuple[int, int], int] = {}
        for group in groups:
            if group.class_id not in self._meters:
                continue
            for member in group.members:
                self._members.setdefault(member, group.class_id)
        self._default = min(self._meters) if self._meters else None

    @property
    def classes(self) -> Mapping[int, RateClass]:
        return {class_id: meter.rate_class for class_id, meter in self._meters.items()}

    def class_for(self, family: int, subgroup: int) -> int | None:
        return self._members.get((family, subgroup), self._default)

    def meter(self, class_id: int) -> RateMeter | None:
        return self._meters.get(class_id)

    def meter_for(self, family: int, subgroup: int) -> RateMeter | None:
        class_id = self.class_for(family, subgroup)
        return None if class_id is None else self._meters[class_id]

    def record(self, family: int, subgroup: int, now_ms: int) -> tuple[int | None, RateStatus]:
        meter = self.meter_for(family, subgroup)
        if meter is None:
            return None, RateStatus.CLEAR
        return meter.rate_class.class_id, meter.record(now_ms)

    def delay_ms(
        self, family: int, subgroup: int, now_ms: int, margin: int = DEFAULT_MARGIN
    ) -> int:
        meter = self.meter_for(family, subgroup)
        return 0 if meter is None else meter.delay_ms(now_ms, margin)

    def adopt(self, rate_class: RateClass, now_ms: int) -> None:
        meter = self._meters.get(rate_class.class_id)
        if meter is None:
            self._meters[rate_class.class_id] = RateMeter(rate_class, now_ms)
            if self._default is None or rate_class.class_id < self._default:
                self._default = rate_class.class_id
        else:
            meter.adopt(rate_class, now_ms)

    def over_limit_since(self, since_ms: int) -> int | None:
        """A class that a SNAC sent at or after `since_ms` took past its limit level, if any.

        Servers end a session that goes past a class's disconnect level, and some (Open OSCAR
        Server) say so with the same sign-off code as "signed on elsewhere"; this is how the
        client tells the two apart.
        """
        for class_id, meter in self._meters.items():
            if meter.over_limit_ms is not None and meter.over_limit_ms >= since_ms:
                return class_id
        return None

    def snapshot(self, class_id: int) -> RateClass:
        """The class record with its current level, as a server reports it in 01/07 or 01/0A."""
        meter = self._meters[class_id]
        return replace(meter.rate_class, current_level=meter.level)


def _ras_class(
    class_id: int, window: int, clear: int, alert: int, limit: int, disc: int, top: int
) -> RateClass:
    return RateClass(class_id, window, clear, alert, limit, disc, top, top)


# Open OSCAR Server's table (docs/oscar-protocol.md §6); every level starts at max.
DEFAULT_RATE_CLASSES: tuple[RateClass, ...] = (
    _ras_class(1, 80, 2500, 2000, 1500, 800, 6000),
    _ras_class(2, 80, 3000, 2000, 1500, 1000, 6000),
    _ras_class(3, 20, 5100, 5000, 4000, 3000, 6000),
    _ras_class(4, 20, 5500, 5300, 4200, 3000, 8000),
    _ras_class(5, 10, 5500, 5300, 4200, 3000, 8000),
)

DEFAULT_RATE_GROUPS: tuple[RateGroup, ...] = (
    RateGroup(
        1,
        (
            (0x0001, 0x0002),
            (0x0001, 0x0006),
            (0x0001, 0x0008),
            (0x0001, 0x000E),
            (0x0001, 0x0016),
            (0x0001, 0x0017),
            (0x0004, 0x0002),
            (0x0004, 0x0004),
            (0x0004, 0x0014),
        ),
    ),
    RateGroup(
        2,
        (
            (0x0003, 0x0004),
            (0x0003, 0x0005),
            (0x0009, 0x0005),
            (0x0009, 0x0006),
            (0x0009, 0x0007),
            (0x0009, 0x0008),
            (0x000E, 0x0005),
        ),
    ),
    RateGroup(3, ((0x0004, 0x0006), (0x0002, 0x0005))),
    RateGroup(4, ((0x0002, 0x0009), (0x0002, 0x000B))),
    RateGroup(5, ()),
)
