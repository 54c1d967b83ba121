"""``bench latency``: reply latency through the bot, next to a bare echo peer under the same load.

Each simulated user sends a message and waits for its reply (closed loop, optional think time).
The same users, messages and devserver also go through the "direct" path (user → devserver → an
echo OscarClient in its own process → user) and through a bare Dify bridge (the floor). The
ratio of the p99s is what the bot adds. The three take turns in short slices (`SLICE_MS` in
bench/cli.py) while the users' closed loop runs on (bench/slices.py), and each path's samples are
pooled: a p99 is the 20th-worst of 2,000 samples, and on a shared machine a slow spell that lands
on one path's turn moves it. Phases of several seconds each (--rounds, the design before session
22) let the machine's drift between phases move the ratio by up to half; one-second slices
(sessions 22-23) still let a spell of a second or two fall on one path.

The typing-user scenario then restarts the bot with its default buffering (BUFFER_MODE=typing,
the default 1.5 s window) and lets users type as real clients report it: "typing" on the first
keystroke, the IM on Enter, "none" once the box is empty. A lone IM should then cost the typing
grace, not the window; a second line typed after the first should join it in one query.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aimbot.oscar.events import TypingState
from bench import longanswer
from bench.cli import BenchError
from bench.procstat import CpuTotals, ProcError, ProcSample, cpu_totals, sample, steal_share
from bench.report import Figure, Report, Target, make_report
from bench.rig import (
    BOT,
    FAST,
    Loopback,
    SimUser,
    Thinking,
    bot_config,
    config_note,
    dify_concurrency,
    loopback,
    reference_peer,
    sign_off_all,
    sign_on_all,
)
from bench.slices import TurnResult, sliced_turns
from bench.stats import RESAMPLES, alternate_turns_ratio, ratio, ratio_interval, summarize

REPLY_TIMEOUT = 60.0
# Issue 15: the bot's p99 at most this many times the bare bridge's, in the same run.
BOT_OVER_FLOOR_P99_MAX = 1.2
TARGETS = (
    Target("overhead_ratio_p99", "<=", 1.5),
    Target("bot_over_floor_p99", "<=", BOT_OVER_FLOOR_P99_MAX),
)
TYPING_TARGETS = (Target("typing_lone_added_ms_p99", "<=", 300),)
# The bot's own defaults: the scenario shows that a lone IM does not pay this window.
TYPING_BUFFER = {"BUFFER_MODE": "typing", "BUFFER_WINDOW": "1.5", "BUFFER_MAX_WAIT": "6"}
SECOND_LINE_S = 0.5  # time to type a burst's second line: past the grace, inside the window


def typing_config(args: argparse.Namespace) -> dict[str, str]:
    """FAST with the default buffering, then the run's --bot-env overrides (they win)."""
    return {**FAST, **TYPING_BUFFER, **dict(getattr(args, "bot_env", []))}


async def closed_loop(
    users: Sequence[SimUser], peer: str, *, messages: int, warmup: int, think: float
) -> list[float]:
    """Every user: send, wait for the reply that names this message, record, think, repeat."""
    by_peer = await closed_loop_by_peer(
        users, [peer], messages=messages, warmup=warmup, think=think
    )
    return by_peer[peer]


async def closed_loop_by_peer(
    users: Sequence[SimUser],
    peers: Sequence[str],
    *,
    messages: int,
    warmup: int,
    think: float,
) -> dict[str, list[float]]:
    """closed_loop over several peers: user k's i-th message goes to peers[(k + i) % n], so
    every peer gets every user, in turns a message long (the machine's drift is shared)."""

    async def one(k: int, user: SimUser) -> list[tuple[str, float]]:
        thinking = Thinking(user.name, think)
        samples = []
        await thinking.start()
        for i in range(warmup + messages):
            peer = peers[(k + i) % len(peers)]
            started = time.perf_counter()
            arrival = await user.ask(peer, f"{user.name}-m{i}", REPLY_TIMEOUT)
            if i >= warmup:
                samples.append((peer, (arrival.at - started) * 1000))
            await thinking.pause()
        return samples

    results = await asyncio.gather(*(one(k, u) for k, u in enumerate(users)))
    by_peer: dict[str, list[float]] = {peer: [] for peer in peers}
    for per_user in results:
        for peer, ms in per_user:
            by_peer[peer].append(ms)
    return by_peer


async def _measure(
    users: Sequence[SimUser], peer: str, peer_pid: int, args: argparse.Namespace, messages: int
) -> TurnResult:
    peer_before, bench_before = sample(peer_pid), sample()
    started = time.perf_counter()
    latencies = await closed_loop(
        users, peer, messages=messages, warmup=args.warmup, think=args.think_ms / 1000
    )
    wall = time.perf_counter() - started
    peer_after, bench_after = sample(peer_pid), sample()
    return TurnResult(
        latencies,
        wall,
        _cpu(peer_before, peer_after),
        _cpu(bench_before, bench_after),
    )


def _pooled(phases: Sequence[TurnResult]) -> TurnResult:
    return TurnResult(
        [ms for phase in phases for ms in phase.latencies_ms],
        sum(phase.wall_seconds for phase in phases),
        sum(phase.peer_cpu_seconds for phase in phases),
        sum(phase.bench_cpu_seconds for phase in phases),
    )


def round_sizes(messages: int, rounds: int) -> list[int]:
    """`messages` shared out over at most `rounds` rounds, none empty."""
    rounds = min(rounds, messages)
    return [messages // rounds + (i < messages % rounds) for i in range(rounds)]


async def _turns(
    users: Sequence[SimUser], peers: Sequence[tuple[str, int]], args: argparse.Namespace
) -> list[list[TurnResult]]:
    """Every peer (name, pid) in turn: in slices (bench/slices.py), or with --rounds round after
    round; per peer, its turns in order."""
    if args.rounds is None:
        return await sliced_turns(
            users,
            peers,
            messages=args.messages,
            warmup=args.warmup,
            think=args.think_ms / 1000,
            slice_seconds=args.slice_ms / 1000,
            reply_timeout=REPLY_TIMEOUT,
        )
    measured: list[list[TurnResult]] = [[] for _ in peers]
    for messages in round_sizes(args.messages, args.rounds):
        for (name, pid), phases in zip(peers, measured, strict=True):
            phases.append(await _measure(users, name, pid, args, messages))
    return measured


def open_samples(path: Path) -> TextIO:
    """--samples' file, opened before the run: a path that cannot be written fails at once,
    not after minutes of measuring."""
    try:
        return path.open("w", encoding="utf-8")
    except OSError as e:
        raise BenchError(f"--samples: cannot write {path}: {e.strerror or e}") from e


def write_samples(out: TextIO, rounds: dict[str, list[TurnResult]]) -> None:
    """Every measured latency (ms), per path and per turn, for pooling runs or any other
    statistic: {"echo": [[...], ...], "floor": [...], "bot": [...]}."""
    json.dump(
        {path: [phase.latencies_ms for phase in phases] for path, phases in rounds.items()}, out
    )
    out.write("\n")


@dataclass
class TypingResult:
    """Per scenario: the last keystroke (last line's IM) to the Dify query, and to the reply."""

    lone_to_query_ms: list[float]
    lone_to_reply_ms: list[float]
    burst_to_query_ms: list[float]
    burst_to_reply_ms: list[float]
    bursts_coalesced: int


async def typing_users(
    rig: Loopback, users: Sequence[SimUser], args: argparse.Namespace
) -> TypingResult:
    """Lone IMs then two-line bursts from users whose clients send typing notifications."""
    think = args.think_ms / 1000
    bursts = max(1, args.messages // 4)
    sent_at: dict[str, float] = {}  # token of the last line -> monotonic time of its send
    lone_reply: dict[str, float] = {}
    burst_reply: dict[str, float] = {}
    coalesced = 0
    rig.dify.chat_requests.clear()
    rig.dify.record_requests = True  # their arrival times give the time to the query

    async def line(user: SimUser, token: str, *, more: bool) -> float:
        """Send one line as its last keystroke; returns the perf_counter time of the send."""
        started = time.perf_counter()
        sent_at[token] = time.monotonic()
        await user.send(BOT, token)
        await user.send_typing(BOT, TypingState.TYPING if more else TypingState.NONE)
        return started

    async def reply_to(user: SimUser, token: str) -> tuple[float, str]:
        """Wait for the reply naming `token` (a reply to an earlier line may come first)."""
        while True:
            arrival = await user.next_arrival(REPLY_TIMEOUT)
            if token in arrival.im.text:
                return arrival.at, arrival.im.text

    async def one(user: SimUser) -> None:
        nonlocal coalesced
        thinking = Thinking(user.name, think)
        await thinking.start()
        for i in range(args.warmup + args.messages + bursts):
            await user.send_typing(BOT, TypingState.TYPING)
            if i < args.warmup + args.messages:
                token = f"{user.name}-t{i}"
                started = await line(user, token, more=False)
                at, _ = await reply_to(user, token)
                if i >= args.warmup:
                    lone_reply[token] = (at - started) * 1000
            else:
                first, token = f"{user.name}-t{i}a", f"{user.name}-t{i}b"
                await line(user, first, more=True)
                await asyncio.sleep(SECOND_LINE_S)
                started = await line(user, token, more=False)
                at, text = await reply_to(user, token)
                burst_reply[token] = (at - started) * 1000
                coalesced += first in text
            await thinking.pause()

    try:
        await asyncio.gather(*(one(u) for u in users))
        queried = {q.query.rsplit("\n", 1)[-1]: q.time for q in rig.dify.chat_requests}
    finally:
        rig.dify.record_requests = False
        rig.dify.chat_requests.clear()

    def to_query(tokens: dict[str, float]) -> list[float]:
        missing = [t for t in tokens if t not in queried]
        if missing:
            raise BenchError(f"{len(missing)} answered IMs never reached Dify, e.g. {missing[0]}")
        return [(queried[t] - sent_at[t]) * 1000 for t in tokens]

    return TypingResult(
        to_query(lone_reply),
        list(lone_reply.values()),
        to_query(burst_reply),
        list(burst_reply.values()),
        coalesced,
    )


def _typing_figures(result: TypingResult, dify_ms: float) -> list[Figure]:
    lq, lr, bq, br = (
        summarize(x)
        for x in (
            result.lone_to_query_ms,
            result.lone_to_reply_ms,
            result.burst_to_query_ms,
            result.burst_to_reply_ms,
        )
    )
    return [
        Figure(
            "typing_lone_to_query_ms_p50", lq.p50, "typing user, lone IM to Dify query, p50", "ms"
        ),
        Figure(
            "typing_lone_to_query_ms_p99", lq.p99, "typing user, lone IM to Dify query, p99", "ms"
        ),
        Figure("typing_lone_to_reply_ms_p50", lr.p50, "typing user, lone IM to reply, p50", "ms"),
        Figure("typing_lone_to_reply_ms_p99", lr.p99, "typing user, lone IM to reply, p99", "ms"),
        Figure(
            "typing_lone_added_ms_p99",
            lr.p99 - dify_ms,
            "typing user, lone IM: reply p99 minus the Dify time",
            "ms",
        ),
        Figure(
            "typing_burst_to_query_ms_p99", bq.p99, "typing user, last line to query, p99", "ms"
        ),
        Figure(
            "typing_burst_to_reply_ms_p50", br.p50, "typing user, last line to reply, p50", "ms"
        ),
        Figure(
            "typing_burst_to_reply_ms_p99", br.p99, "typing user, last line to reply, p99", "ms"
        ),
        Figure(
            "typing_bursts_coalesced_pct",
            100 * result.bursts_coalesced / br.count,
            "two-line bursts answered as one query",
            "%",
        ),
        Figure("typing_samples", lr.count, "measured lone IMs from typing users"),
    ]


def floor_aa(turns: Sequence[Sequence[float]]) -> float | None:
    """The bare bridge against itself, its even turns over its odd ones: how far this run's
    p99 ratio could move with no difference in code (docs/benchmarks.md, "Session 26"). None
    with a single turn (--rounds 1): there is no second half to compare with."""
    try:
        return alternate_turns_ratio(turns, 99)
    except ValueError:
        return None


def _cpu_totals() -> CpuTotals | None:
    try:
        return cpu_totals()
    except ProcError:  # no /proc/stat (not Linux): the figure is left out
        return None


def _steal_figures(before: CpuTotals | None, after: CpuTotals | None) -> list[Figure]:
    """How much CPU the hypervisor took while the paths took turns: the machine's slow spells,
    which set a run's slowest 1 % (docs/benchmarks.md, "Session 26")."""
    if before is None or after is None:
        return []
    share = steal_share(before, after) * 100
    return [Figure("steal_pct", share, "CPU time taken by the hypervisor (steal)", "%")]


def aa_note(floor_aa: float) -> str:
    """What the bridge against itself says of this run's bot_over_floor_p99."""
    spread = max(floor_aa, 1 / floor_aa) if floor_aa > 0 else math.inf
    if spread <= BOT_OVER_FLOOR_P99_MAX:
        return (
            f"floor_aa_p99 {floor_aa:.3f}: the bare bridge against itself, in its alternate "
            f"turns, stayed within {BOT_OVER_FLOOR_P99_MAX:g}x"
        )
    return (
        f"floor_aa_p99 {floor_aa:.3f}: the bare bridge against itself, in its alternate turns, "
        f"moved by more than the {BOT_OVER_FLOOR_P99_MAX:g}x bot_over_floor_p99 is held to: in "
        "this run that ratio says more about the machine than about the bot (pool several runs: "
        "python -m bench pool)"
    )


def _turns_note(args: argparse.Namespace, turns: Sequence[int]) -> str:
    """How the paths took turns (bench/slices.py, or phases with --rounds)."""
    if args.rounds is None:
        return (
            f"the echo peer, the bare bridge and the bot took turns in {args.slice_ms:g} ms "
            f"slices ({'/'.join(map(str, turns))} slices), the users' closed loop running on "
            f"throughout; each user's first {args.warmup} messages to each path not measured; "
            "every path's slices pooled"
        )
    sizes = round_sizes(args.messages, args.rounds)
    return (
        f"the echo peer, the bare bridge and the bot took turns: {len(sizes)} rounds of "
        f"{args.warmup} warm-up + {'/'.join(map(str, sizes))} measured messages per user each, "
        "every path's rounds pooled"
    )


def _cpu(before: ProcSample, after: ProcSample) -> float:
    return after.cpu_seconds - before.cpu_seconds


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    with contextlib.ExitStack() as files:
        samples = files.enter_context(open_samples(args.samples)) if args.samples else None
        return await _run(args, argv, samples)


async def _run(args: argparse.Namespace, argv: Sequence[str], samples: TextIO | None) -> Report:
    async with loopback() as rig, contextlib.AsyncExitStack() as peers:
        rig.dify.set_latency(args.dify_ms / 1000)
        users = await sign_on_all(rig.oscar, [f"lat{i:04d}" for i in range(args.users)])
        try:
            echo_peer = await peers.enter_async_context(
                reference_peer(rig, "echo", bot_config(args))
            )
            floor_peer = await peers.enter_async_context(
                reference_peer(rig, "dify", bot_config(args))
            )
            bot_proc = await rig.start_bot(bot_config(args))
            cpu_before = _cpu_totals()
            rounds = await _turns(users, [echo_peer, floor_peer, (BOT, bot_proc.pid)], args)
            steal = _steal_figures(cpu_before, _cpu_totals())
            echo, floor, bot = (_pooled(phases) for phases in rounds)
            floor_self = floor_aa([turn.latencies_ms for turn in rounds[1]])  # the bridge's
            if samples is not None:
                write_samples(samples, dict(zip(("echo", "floor", "bot"), rounds, strict=True)))
            long = await longanswer.long_answers(rig, users, args) if args.long_answers else None
            typing = None
            if args.typing_users:
                await rig.stop_bot()
                await rig.start_bot(typing_config(args))
                typing = await typing_users(rig, users[: args.typing_users], args)
        finally:
            await sign_off_all(users)
    b, e, f = (summarize(p.latencies_ms) for p in (bot, echo, floor))
    p99_low, p99_high = ratio_interval(bot.latencies_ms, floor.latencies_ms, 99)
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
        Figure("bot_over_floor_p99_low", p99_low, "the same, 90 % bootstrap interval: low"),
        Figure("bot_over_floor_p99_high", p99_high, "the same, 90 % bootstrap interval: high"),
        # Diagnostics without a target: whether a p99 miss came with the middle of the
        # distribution (the code) or alone (a slow spell in one path's turn), and what each
        # reply costs at this light load, which is what a message arriving meanwhile queues
        # behind (docs/benchmarks.md, "Session 17").
        Figure("bot_over_floor_p50", ratio(b.p50, f.p50), "bot p50 / bare bridge p50"),
        Figure(
            "cpu_per_reply_over_floor",
            ratio(bot.cpu_per_reply, floor.cpu_per_reply),
            "bot CPU per reply / bare bridge CPU per reply, at this load",
        ),
        Figure("bot_msgs_per_s", bot.rate, "bot path, replies/s achieved", "/s"),
        Figure("echo_msgs_per_s", echo.rate, "echo path, replies/s achieved", "/s"),
        Figure("bot_cpu_util", bot.peer_cpu_seconds / bot.wall_seconds, "bot process CPU", "cores"),
        Figure(
            "echo_cpu_util", echo.peer_cpu_seconds / echo.wall_seconds, "echo process CPU", "cores"
        ),
        Figure(
            "floor_cpu_util",
            floor.peer_cpu_seconds / floor.wall_seconds,
            "bare bridge process CPU",
            "cores",
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
        *(
            [Figure("floor_aa_p99", floor_self, "bare bridge p99, even turns / odd turns (A/A)")]
            if floor_self is not None
            else []
        ),
        *steal,
        *(longanswer.figures(long) if long is not None else []),
    ]
    targets: tuple[Target, ...] = TARGETS
    if typing is not None:
        figures += _typing_figures(typing, args.dify_ms)
        targets += TYPING_TARGETS
    notes = [
        f"{args.users} users, closed loop ({args.messages} measured messages each per path, "
        f"think time {args.think_ms:g} ms); Dify stand-in latency {args.dify_ms:g} ms",
        _turns_note(args, [len(phases) for phases in rounds]),
        config_note(bot_config(args)) + "; devserver rate limits off",
        "latency = user's send to the user's reader seeing the reply; devserver, Dify stand-in "
        "and users share the bench process; bot and reference peers each run in their own "
        "process",
        "bare bridge = the floor of any Dify bridge: one plain aiohttp streaming request per IM, "
        f"at most {dify_concurrency(bot_config(args))} at once as for the bot, nothing stored, "
        "nothing formatted (bench/echo_peer.py)",
        f"bot_over_floor_p99 interval: 90 % of {RESAMPLES:,} bootstrap resamples of "
        f"the {b.count:,} samples per path; sampling noise only, the machine's drift between "
        "turns comes on top (--samples FILE keeps every latency, to pool runs)",
    ]
    if floor_self is not None:
        notes.append(aa_note(floor_self))
    if long is not None:
        notes.append(longanswer.note(args))
        targets += longanswer.TARGETS
    if typing is not None:
        notes += [
            f"typing users: the first {min(args.typing_users, args.users)} users, bot restarted "
            f"with {config_note(typing_config(args))}; each sends typing, the IM, then none "
            f"({args.warmup} warm-up + {args.messages} measured lone IMs), then "
            f"{max(1, args.messages // 4)} two-line bursts (typing, line 1, typing, "
            f"{SECOND_LINE_S:g} s, line 2, none); times run from the last line's send to the "
            "stand-in receiving the query and to the user seeing the reply",
            "target typing_lone_added_ms_p99: a lone IM from a user not typing is answered "
            "within 300 ms over the Dify time (the stand-in's think time, --dify-ms); the "
            "long-answer (streamed parts) scenario belongs to progressive delivery and is not "
            "measured here",
        ]
    return make_report("latency", argv, figures, targets=targets, notes=notes)
