"""``bench latency``: reply latency through the bot, next to a bare echo peer under the same load.

Each simulated user sends a message and waits for its reply (closed loop, optional think time).
The same users, messages and devserver then go through the "direct" path: user → devserver → an
echo OscarClient in its own process → user. The ratio of the two p99s is what the bot adds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench import longanswer
from bench.procstat import ProcSample, sample
from bench.report import Figure, Report, Target, make_report
from bench.rig import (
    BOT,
    Loopback,
    SimUser,
    bot_config,
    config_note,
    loopback,
    reference_peer,
    sign_off_all,
    sign_on_all,
)
from bench.stats import ratio, summarize

REPLY_TIMEOUT = 60.0
TARGETS = (Target("overhead_ratio_p99", "<=", 1.5),)


@dataclass(frozen=True)
class PhaseResult:
    latencies_ms: list[float]
    wall_seconds: float
    peer_cpu_seconds: float
    bench_cpu_seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.wall_seconds if self.wall_seconds else 0.0


async def closed_loop(
    users: Sequence[SimUser], peer: str, *, messages: int, warmup: int, think: float
) -> list[float]:
    """Every user: send, wait for the reply that names this message, record, think, repeat."""

    async def one(user: SimUser) -> list[float]:
        # Spread users over the think period and vary each pause, so that 100 users do not
        # fire in lock-step bursts (which would measure queueing behind the burst instead).
        rng = random.Random(user.name)
        samples = []
        if think:
            await asyncio.sleep(rng.uniform(0, think))
        for i in range(warmup + messages):
            started = time.perf_counter()
            arrival = await user.ask(peer, f"{user.name}-m{i}", REPLY_TIMEOUT)
            if i >= warmup:
                samples.append((arrival.at - started) * 1000)
            if think:
                await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
        return samples

    results = await asyncio.gather(*(one(u) for u in users))
    return [s for per_user in results for s in per_user]


async def _measure(
    users: Sequence[SimUser], peer: str, peer_pid: int, args: argparse.Namespace
) -> PhaseResult:
    peer_before, bench_before = sample(peer_pid), sample()
    started = time.perf_counter()
    latencies = await closed_loop(
        users, peer, messages=args.messages, warmup=args.warmup, think=args.think_ms / 1000
    )
    wall = time.perf_counter() - started
    peer_after, bench_after = sample(peer_pid), sample()
    return PhaseResult(
        latencies,
        wall,
        _cpu(peer_before, peer_after),
        _cpu(bench_before, bench_after),
    )


def _cpu(before: ProcSample, after: ProcSample) -> float:
    return after.cpu_seconds - before.cpu_seconds


async def _peer_phase(
    rig: Loopback, users: Sequence[SimUser], args: argparse.Namespace, mode: str
) -> PhaseResult:
    """Time the same load through a reference peer in its own process."""
    async with reference_peer(rig, mode, bot_config(args)) as peer:
        name, pid = peer
        return await _measure(users, name, pid, args)


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    async with loopback() as rig:
        rig.dify.set_latency(args.dify_ms / 1000)
        users = await sign_on_all(rig.oscar, [f"lat{i:04d}" for i in range(args.users)])
        try:
            echo = await _peer_phase(rig, users, args, "echo")
            floor = await _peer_phase(rig, users, args, "dify")
            bot_proc = await rig.start_bot(bot_config(args))
            bot = await _measure(users, BOT, bot_proc.pid, args)
            long = await longanswer.long_answers(rig, users, args) if args.long_answers else None
        finally:
            await sign_off_all(users)
    b, e, f = (summarize(p.latencies_ms) for p in (bot, echo, floor))
    figures = [
        Figure("bot_p50_ms", b.p50, "bot path, p50", "ms"),
        Figure("bot_p99_ms", b.p99, "bot path, p99", "ms"),
        Figure("echo_p50_ms", e.p50, "direct echo path, p50", "ms"),
        Figure("echo_p99_ms", e.p99, "direct echo path, p99", "ms"),
        Figure("overhead_ratio_p99", ratio(b.p99, e.p99), "bot p99 / echo p99"),
        Figure("overhead_ratio_p50", ratio(b.p50, e.p50), "bot p50 / echo p50"),
        Figure("floor_p50_ms", f.p50, "bare Dify bridge path, p50", "ms"),
        Figure("floor_p99_ms", f.p99, "bare Dify bridge path, p99", "ms"),
        Figure("floor_ratio_p99", ratio(f.p99, e.p99), "bare bridge p99 / echo p99"),
        Figure("bot_over_floor_p99", ratio(b.p99, f.p99), "bot p99 / bare bridge p99"),
        Figure("bot_msgs_per_s", bot.rate, "bot path, replies/s achieved", "/s"),
        Figure("echo_msgs_per_s", echo.rate, "echo path, replies/s achieved", "/s"),
        Figure("bot_cpu_util", bot.peer_cpu_seconds / bot.wall_seconds, "bot process CPU", "cores"),
        Figure(
            "echo_cpu_util", echo.peer_cpu_seconds / echo.wall_seconds, "echo process CPU", "cores"
        ),
        Figure(
            "bench_cpu_util_bot_phase",
            bot.bench_cpu_seconds / bot.wall_seconds,
            "bench process CPU (bot phase)",
            "cores",
        ),
        Figure(
            "bench_cpu_util_echo_phase",
            echo.bench_cpu_seconds / echo.wall_seconds,
            "bench process CPU (echo phase)",
            "cores",
        ),
        Figure("samples_per_path", b.count, "measured messages per path"),
        *(longanswer.figures(long) if long is not None else []),
    ]
    notes = [
        f"{args.users} users, closed loop ({args.warmup} warm-up + {args.messages} measured "
        f"messages each, think time {args.think_ms:g} ms); Dify stand-in latency "
        f"{args.dify_ms:g} ms",
        config_note(bot_config(args)) + "; devserver rate limits off",
        "latency = user's send to the user's reader seeing the reply; devserver, Dify stand-in "
        "and users share the bench process; bot and reference peers each run in their own "
        "process",
        "bare bridge = the floor of any Dify bridge: one plain aiohttp streaming request per IM, "
        "nothing stored, nothing formatted (bench/echo_peer.py)",
    ]
    if long is not None:
        notes.append(longanswer.note(args))
    targets = TARGETS + (longanswer.TARGETS if long is not None else ())
    return make_report("latency", argv, figures, targets=targets, notes=notes)
