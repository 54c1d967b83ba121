"""The chaos run's fault schedule: which fault, when, how big — drawn from a seeded RNG.

Kept pure so that a schedule can be reproduced from its seed and its shape checked in tests.
Two faults happen exactly once per run: a duplicate login (the bot then waits a minute before
signing on again, by design) in the first half, and a SIGKILL of the bot in the second half.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Relative frequency of the repeatable faults.
WEIGHTS: dict[str, int] = {
    "oscar_restart": 2,  # the OSCAR server dies (no sign-off) and comes back on the same port
    "oscar_stall": 2,  # the server stops reading and writing the bot's session for a while
    "oscar_malformed": 2,  # the server writes a frame no client can parse
    "dify_429_burst": 2,  # a run of 429 Too Many Requests
    "dify_5xx": 2,  # 500/502/503/504, JSON or a proxy's HTML page
    "dify_hang": 1,  # a stream that only pings and never answers
    "dify_mid_stream": 2,  # an answer that stops with an error event part-way
}
ONCE = ("duplicate_login", "bot_sigkill")
FIRST_FAULT_AT = 3.0


@dataclass(frozen=True)
class PlannedFault:
    at: float  # seconds after the load started
    kind: str
    size: int  # how many scripted replies, or milliseconds of stall/downtime


def _size(rng: random.Random, kind: str) -> int:
    if kind == "oscar_restart":
        return rng.randint(300, 2000)  # ms down
    if kind == "oscar_stall":
        return rng.randint(1000, 4000)  # ms, below the bot's 7 s dead-session detection
    if kind == "dify_429_burst":
        return rng.randint(3, 12)
    if kind == "dify_5xx":
        return rng.randint(1, 4)
    if kind == "dify_mid_stream":
        return rng.randint(1, 3)
    return 1


def plan_faults(seed: int, duration: float, *, mean_gap: float = 3.5) -> list[PlannedFault]:
    """Faults at random gaps (uniform, 0.5 to 1.5 x mean_gap) over `duration` seconds."""
    if duration <= 0 or mean_gap <= 0:
        raise ValueError("duration and mean_gap must be > 0")
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    plan: list[PlannedFault] = []
    at = min(FIRST_FAULT_AT, duration / 4)
    while at < duration:
        kind = rng.choices(kinds, weights)[0]
        plan.append(PlannedFault(at, kind, _size(rng, kind)))
        at += rng.uniform(0.5 * mean_gap, 1.5 * mean_gap)
    plan.append(PlannedFault(rng.uniform(0.1, 0.45) * duration, "duplicate_login", 1))
    plan.append(PlannedFault(rng.uniform(0.55, 0.85) * duration, "bot_sigkill", 1))
    plan.sort(key=lambda f: f.at)
    return plan
