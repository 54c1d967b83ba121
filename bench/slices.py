"""Time-sliced turns: one closed loop that never stops, its messages going to one path at a time.

`bench latency` compares paths (the echo peer, the bare bridge, the bot) that each must have the
machine to themselves, so they cannot run at once. Run one after another in phases of several
seconds, a path's p99 depends on which phase caught the shared machine's slow spells: on the
2-vCPU VMs we measure on, the p50 ratio between two 7-second phases of the same two paths moved
between 0.9 and 1.7 (docs/benchmarks.md, "Session 22").

Here the users' closed loop runs throughout, and whose turn it is changes every `slice_seconds`:
a message goes to the path whose slice it is when it is sent. Each path still gets the whole
load alone (all users, their think time unchanged), but the paths take turns faster than the
machine's slow spells come and go (bench latency's default: `SLICE_MS` in bench/cli.py), so a
spell lands on all of them alike. A message sent at the end of a slice is answered at the start
of the next one; it is counted for the path it went to, and that path's CPU is read once its
last reply is in. A path leaves the rotation once it has its quota of measured messages, so the
others keep the same load to the end.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bench.procstat import sample
from bench.rig import Thinking


class TimedReply(Protocol):
    @property
    def at(self) -> float:
        """time.perf_counter() when the user saw the reply."""


class User(Protocol):
    """What the slices need of a simulated user (bench.rig.SimUser)."""

    @property
    def name(self) -> str: ...

    async def ask(self, to: str, token: str, timeout: float) -> TimedReply: ...  # noqa: ASYNC109


@dataclass(frozen=True)
class TurnResult:
    """One path's turn (a slice, or a phase of bench latency --rounds): what it answered, over
    how long, and the CPU it and the bench used."""

    latencies_ms: list[float]
    wall_seconds: float
    peer_cpu_seconds: float
    bench_cpu_seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_per_reply(self) -> float:
        return self.peer_cpu_seconds / len(self.latencies_ms) if self.latencies_ms else 0.0


class _Slice:
    """One path's turn; its messages in flight are counted, so that its CPU is read when the
    last of them is answered. `peer_before` and `bench_before`: the path's and the bench's CPU
    seconds at its start."""

    def __init__(self, peer: str, started: float, peer_before: float, bench_before: float) -> None:
        self.peer = peer
        self.started = started
        self.peer_before = peer_before
        self.bench_before = bench_before
        self.latencies_ms: list[float] = []
        self.peer_after: float | None = None  # the path's CPU at the end, if read at the switch
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def sent(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def answered(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    async def drained(self) -> None:
        await self._idle.wait()


async def sliced_turns(
    users: Sequence[User],
    peers: Sequence[tuple[str, int]],
    *,
    messages: int,
    warmup: int,
    think: float,
    slice_seconds: float,
    reply_timeout: float,
) -> list[list[TurnResult]]:
    """Every peer (name, pid) gets `messages` measured messages per user on average, in slices;
    per peer, its slices in order. Each user's first `warmup` messages to each peer are not
    measured: every process is warm before it is timed, as in the phased turns."""
    if slice_seconds <= 0:
        raise ValueError(f"slice_seconds must be > 0, got {slice_seconds}")
    names = [name for name, _ in peers]
    pids = dict(peers)
    quota = len(users) * messages
    counts = dict.fromkeys(names, 0)
    results: dict[str, list[TurnResult]] = {name: [] for name in names}
    current: _Slice | None = None

    async def user_loop(user: User) -> None:
        thinking = Thinking(user.name, think)
        await thinking.start()
        sent = dict.fromkeys(names, 0)
        for i in itertools.count():
            turn = current
            if turn is None:
                return
            turn.sent()
            began = time.perf_counter()
            try:
                arrival = await user.ask(turn.peer, f"{user.name}-m{i}", reply_timeout)
            finally:
                turn.answered()
            if sent[turn.peer] >= warmup:
                turn.latencies_ms.append((arrival.at - began) * 1000)
                counts[turn.peer] += 1
            sent[turn.peer] += 1
            await thinking.pause()

    async def close(turn: _Slice, ended: float, bench_after: float) -> None:
        """Account for a finished slice, given the bench's CPU seconds at its end; its path's
        is read once its last reply is in (or was read at the switch, when the same path goes
        on)."""
        await turn.drained()
        peer_after = turn.peer_after
        if peer_after is None:
            peer_after = sample(pids[turn.peer]).cpu_seconds
        results[turn.peer].append(
            TurnResult(
                turn.latencies_ms,
                ended - turn.started,
                peer_after - turn.peer_before,
                bench_after - turn.bench_before,
            )
        )

    def next_peer(after: str | None) -> str | None:
        waiting = [name for name in names if counts[name] < quota]
        if not waiting:
            return None
        if after is None:
            return waiting[0]
        at = names.index(after) + 1
        return next(name for name in names[at:] + names[:at] if name in waiting)

    # The users' tasks first run at this coroutine's first await, the first slice already set.
    loops = [asyncio.create_task(user_loop(user), name=f"user-{user.name}") for user in users]
    closing: list[asyncio.Task[None]] = []
    try:
        peer = next_peer(None)
        peer_cpu = 0.0 if peer is None else sample(pids[peer]).cpu_seconds
        bench_cpu = sample().cpu_seconds
        while peer is not None:
            # No await from the switch below to here: every message goes to one path or the
            # other, none to a path between slices.
            current = turn = _Slice(peer, time.perf_counter(), peer_cpu, bench_cpu)
            await asyncio.sleep(slice_seconds)
            ended = time.perf_counter()
            for loop in loops:
                if loop.done():
                    loop.result()  # a user whose reply never came: the run fails now
            peer = next_peer(turn.peer)
            bench_cpu = sample().cpu_seconds
            if peer is None:
                current = None
            else:
                # The next path has been idle since its last slice drained: read it now.
                peer_cpu = sample(pids[peer]).cpu_seconds
                if peer == turn.peer:
                    turn.peer_after = peer_cpu
            closing.append(asyncio.create_task(close(turn, ended, bench_cpu), name="slice"))
        await asyncio.gather(*loops)
        await asyncio.gather(*closing)
    finally:
        for task in [*loops, *closing]:
            task.cancel()
        await asyncio.gather(*loops, *closing, return_exceptions=True)
    return [results[name] for name in names]
