"""``bench throughput``: sustained replies per second through one bot process, and its CPU cost.

Enough users each keep exactly one message outstanding (send, wait for the reply, send again),
so the bot is never idle and never coalesces messages: every message is one Dify query and one
reply. Replies are counted over a measured window after a warm-up, and the bot's CPU time over
the same window (from /proc) gives CPU seconds per 1,000 messages.

Unless told otherwise (--no-floor), the same users also load the bare Dify bridge (the floor of
any bridge, bench/echo_peer.py) in the same run, so that the bot's figures come with their ratios
to the floor measured on the same machine at the same moment. The two take turns (--rounds
windows each: floor, bot, floor, bot, ...) and each one's windows are summed: on a shared
machine whose speed drifts by tens of per cent within a minute, two long phases one after the
other compared the drift as much as the programs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import operator
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import BenchError
from bench.procstat import sample
from bench.report import Figure, Report, Target, make_report
from bench.rig import (
    BOT,
    SimUser,
    bot_config,
    config_note,
    dify_concurrency,
    loopback,
    reference_peer,
    sign_off_all,
    sign_on_all,
)

REPLY_TIMEOUT = 60.0
# Unmeasured seconds at the start of each measured window, while the users' first messages to
# the peer whose turn it is make their way (the other peer's last replies are already in).
SETTLE_SECONDS = 1.0
# Default measured seconds: one peer alone; the bot and the floor in turns (10 rounds of 5 s
# each: on this shared 2-core VM single rounds' cpu_ratio ranged 0.91-1.53 in one run, and only
# the sum over about ten settles to +-0.05; docs/benchmarks.md "Session 5").
ALONE_SECONDS = 15.0
FLOOR_SECONDS = 50.0
TARGETS = (Target("im_per_s", ">=", 2000),)
FLOOR_TARGETS = (Target("throughput_ratio", ">=", 0.9), Target("cpu_ratio", "<=", 1.25))


class ReplyTally:
    """Replies seen so far, and the signal for every user to stop."""

    def __init__(self) -> None:
        self.replies = 0
        self.stop = asyncio.Event()


async def keep_busy(user: SimUser, peer: str, counter: ReplyTally) -> None:
    i = 0
    while not counter.stop.is_set():
        await user.ask(peer, f"{user.name}-m{i}", REPLY_TIMEOUT)
        counter.replies += 1
        i += 1


async def finish_load(load: Sequence[asyncio.Task[None]], tallies: Sequence[ReplyTally]) -> None:
    """Stop the users: each finishes the message it has out (bounded by REPLY_TIMEOUT), so that
    no reply is left on its way to be mistaken for one of the next phase's; then the rest are
    cancelled."""
    for tally in tallies:
        tally.stop.set()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(REPLY_TIMEOUT):
            await asyncio.gather(*load)
    for task in load:
        task.cancel()
    await asyncio.gather(*load, return_exceptions=True)


async def _profile(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("--profile needs py-spy on PATH (pip install py-spy)")
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "100",
        "--nonblocking",  # never pause the bot: the figures must stay those of an unprofiled run
        "--format",
        {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph"),
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Phase:
    """One answering process under the load, over its measured window(s)."""

    replies: int
    wall: float
    cpu: float  # the answering process's CPU seconds
    bench_cpu: float
    rss_bytes: int

    @property
    def rate(self) -> float:
        return self.replies / self.wall

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu / self.replies * 1000

    def __add__(self, other: Phase) -> Phase:
        """Two windows of the same process as one (its RSS: the later one's)."""
        return Phase(
            self.replies + other.replies,
            self.wall + other.wall,
            self.cpu + other.cpu,
            self.bench_cpu + other.bench_cpu,
            other.rss_bytes,
        )


@dataclass(frozen=True)
class Peer:
    name: str
    pid: int


async def _load(
    users: Sequence[SimUser],
    peer: Peer,
    unmeasured: float,
    seconds: float,
    profile: Path | None = None,
) -> Phase:
    """Keep every user busy against `peer`; measure `seconds` after `unmeasured` seconds."""
    counter = ReplyTally()
    load = [asyncio.create_task(keep_busy(u, peer.name, counter)) for u in users]
    profiler = None
    try:
        await _wait_or_fail(load, unmeasured)
        replies_before, bot_before, bench_before = counter.replies, sample(peer.pid), sample()
        started = time.perf_counter()
        if profile is not None:
            profiler = await _profile(peer.pid, seconds, profile)
        await _wait_or_fail(load, seconds)
        wall = time.perf_counter() - started
        replies = counter.replies - replies_before
        bot_after, bench_after = sample(peer.pid), sample()
    finally:
        await finish_load(load, [counter])
        if profiler is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await profiler.wait()
    if replies == 0 and seconds > 0:
        raise BenchError(f"no replies from {peer.name} in the measured window")
    return Phase(
        replies,
        wall,
        bot_after.cpu_seconds - bot_before.cpu_seconds,
        bench_after.cpu_seconds - bench_before.cpu_seconds,
        bot_after.rss_bytes,
    )


async def _turns(
    users: Sequence[SimUser], floor: Peer, bot: Peer, args: argparse.Namespace
) -> tuple[Phase, Phase, list[float]]:
    """The floor and the bot, warmed up, then in turns: (floor, bot, each round's cpu_ratio)."""
    await _load(users, floor, args.warmup_seconds, 0.0)
    await _load(users, bot, args.warmup_seconds, 0.0)
    window = args.seconds / args.rounds
    floors: list[Phase] = []
    bots: list[Phase] = []
    for turn in range(args.rounds):
        floors.append(await _load(users, floor, SETTLE_SECONDS, window))
        profile = args.profile if turn == 0 else None
        bots.append(await _load(users, bot, SETTLE_SECONDS, window, profile))
    ratios = [b.cpu_per_1k / f.cpu_per_1k for f, b in zip(floors, bots, strict=True)]
    return functools.reduce(operator.add, floors), functools.reduce(operator.add, bots), ratios


def _with_floor(args: argparse.Namespace) -> bool:
    """The bot takes turns with the bare bridge (the default), which gives the ratios."""
    return bool(args.peer == "bot" and not args.no_floor)


def measured_seconds(args: argparse.Namespace) -> float:
    """--seconds as given, else the default for what is measured: the floor's turns need longer."""
    if args.seconds is not None:
        return float(args.seconds)
    return FLOOR_SECONDS if _with_floor(args) else ALONE_SECONDS


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    with_floor = _with_floor(args)
    args.seconds = measured_seconds(args)
    floor = None
    ratios: list[float] = []
    async with loopback() as rig, contextlib.AsyncExitStack() as stack:
        users = await sign_on_all(rig.oscar, [f"tp{i:04d}" for i in range(args.users)])
        try:
            if args.peer == "bot":
                peer = Peer(BOT, (await rig.start_bot(bot_config(args))).pid)
            else:
                name, pid = await stack.enter_async_context(
                    reference_peer(rig, args.peer, bot_config(args))
                )
                peer = Peer(name, pid)
            if with_floor:
                name, pid = await stack.enter_async_context(
                    reference_peer(rig, "dify", bot_config(args))
                )
                floor, phase, ratios = await _turns(users, Peer(name, pid), peer, args)
            else:
                phase = await _load(users, peer, args.warmup_seconds, args.seconds, args.profile)
        finally:
            await sign_off_all(users)
    who = "bot" if args.peer == "bot" else f"{args.peer} peer"
    figures = [
        Figure("im_per_s", phase.rate, "replies per second", "/s"),
        Figure("cpu_s_per_1k", phase.cpu_per_1k, f"{who} CPU per 1,000 messages", "s"),
        Figure("replies", phase.replies, "replies in the measured window"),
        Figure("window_s", phase.wall, "measured window", "s"),
        Figure("bot_cpu_util", phase.cpu / phase.wall, f"{who} process CPU", "cores"),
        Figure(
            "bench_cpu_util",
            phase.bench_cpu / phase.wall,
            "bench process CPU (load + servers)",
            "cores",
        ),
        Figure("bot_rss_bytes", phase.rss_bytes, "bot RSS at the end", "B"),
    ]
    if floor is not None:
        figures += [
            Figure("floor_im_per_s", floor.rate, "bare Dify bridge, replies per second", "/s"),
            Figure(
                "floor_cpu_s_per_1k", floor.cpu_per_1k, "bare bridge CPU per 1,000 messages", "s"
            ),
            Figure(
                "floor_bench_cpu_util",
                floor.bench_cpu / floor.wall,
                "bench process CPU (floor phase)",
                "cores",
            ),
            Figure("throughput_ratio", phase.rate / floor.rate, "bot replies/s / bare bridge's"),
            Figure("cpu_ratio", phase.cpu_per_1k / floor.cpu_per_1k, "bot CPU/1k / bare bridge's"),
        ]
    notes = [
        f"{args.users} users, each with one message outstanding at all times; "
        f"{args.warmup_seconds:g} s warm-up, then {args.seconds:g} s measured",
        config_note(bot_config(args)) + "; devserver rate limits off; Dify stand-in at 0 ms",
        "a bot CPU near 1 core means the bot is the bottleneck; a bench CPU near 1 core means "
        "the load generator is",
    ]
    if args.profile is not None:
        over = "its first measured window" if floor is not None else "the measured window"
        notes.append(f"py-spy profile of the {who} over {over}: {args.profile}")
    if args.peer != "bot":
        notes.append(
            f"--peer {args.peer}: a reference peer answered instead of the bot, so the figures "
            "are the rig's ceiling, not the bot's (the target applies to the bot only)"
        )
    if floor is not None:
        notes.append(
            "floor: a bare Dify bridge (bench/echo_peer.py, its own process; at most "
            f"{dify_concurrency(bot_config(args))} Dify requests at once, as for the bot) took "
            f"turns with the bot under the same users: each warmed up {args.warmup_seconds:g} s, "
            f"then {args.rounds} rounds of floor and bot, {args.seconds / args.rounds:g} s "
            f"measured each after {SETTLE_SECONDS:g} s; the ratios compare the sums. cpu_ratio "
            "per round: " + ", ".join(f"{r:.2f}" for r in ratios)
        )
    targets = (TARGETS + (FLOOR_TARGETS if floor is not None else ())) if args.peer == "bot" else ()
    return make_report("throughput", argv, figures, targets=targets, notes=notes)


async def _wait_or_fail(load: Sequence[asyncio.Task[None]], seconds: float) -> None:
    """Sleep for the window, but surface at once a user task that failed."""
    done, _ = await asyncio.wait(load, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise BenchError(f"load stopped: {task.exception()}")
