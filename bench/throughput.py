"""``bench throughput``: sustained replies per second through one bot process, and its CPU cost.

Enough users each keep exactly one message outstanding (send, wait for the reply, send again),
so the bot is never idle and never coalesces messages: every message is one Dify query and one
reply. Replies are counted over a measured window after a warm-up, and the bot's CPU time over
the same window (from /proc) gives CPU seconds per 1,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from bench.cli import BenchError
from bench.procstat import sample
from bench.report import Figure, Report, Target, make_report
from bench.rig import (
    BOT,
    SimUser,
    bot_config,
    config_note,
    loopback,
    reference_peer,
    sign_off_all,
    sign_on_all,
)

REPLY_TIMEOUT = 60.0
TARGETS = (Target("im_per_s", ">=", 2000),)


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


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    async with loopback() as rig, contextlib.AsyncExitStack() as stack:
        if args.peer == "bot":
            peer, pid = BOT, (await rig.start_bot(bot_config(args))).pid
        else:
            peer, pid = await stack.enter_async_context(
                reference_peer(rig, args.peer, bot_config(args))
            )
        users = await sign_on_all(rig.oscar, [f"tp{i:04d}" for i in range(args.users)])
        counter = ReplyTally()
        load = [asyncio.create_task(keep_busy(u, peer, counter)) for u in users]
        profiler = None
        try:
            await _wait_or_fail(load, args.warmup_seconds)
            replies_before, bot_before, bench_before = counter.replies, sample(pid), sample()
            started = time.perf_counter()
            if args.profile is not None:
                profiler = await _profile(pid, args.seconds, args.profile)
            await _wait_or_fail(load, args.seconds)
            wall = time.perf_counter() - started
            replies = counter.replies - replies_before
            bot_after, bench_after = sample(pid), sample()
        finally:
            counter.stop.set()
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            if profiler is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(profiler.wait(), 30)
            await sign_off_all(users)
    if replies == 0:
        raise BenchError("no replies in the measured window")
    bot_cpu = bot_after.cpu_seconds - bot_before.cpu_seconds
    bench_cpu = bench_after.cpu_seconds - bench_before.cpu_seconds
    who = "bot" if args.peer == "bot" else f"{args.peer} peer"
    figures = [
        Figure("im_per_s", replies / wall, "replies per second", "/s"),
        Figure("cpu_s_per_1k", bot_cpu / replies * 1000, f"{who} CPU per 1,000 messages", "s"),
        Figure("replies", replies, "replies in the measured window"),
        Figure("window_s", wall, "measured window", "s"),
        Figure("bot_cpu_util", bot_cpu / wall, f"{who} process CPU", "cores"),
        Figure("bench_cpu_util", bench_cpu / wall, "bench process CPU (load + servers)", "cores"),
        Figure("bot_rss_bytes", bot_after.rss_bytes, "bot RSS at the end", "B"),
    ]
    notes = [
        f"{args.users} users, each with one message outstanding at all times; "
        f"{args.warmup_seconds:g} s warm-up, then {args.seconds:g} s measured",
        config_note(bot_config(args)) + "; devserver rate limits off; Dify stand-in at 0 ms",
        "a bot CPU near 1 core means the bot is the bottleneck; a bench CPU near 1 core means "
        "the load generator is",
    ]
    if args.profile is not None:
        notes.append(f"py-spy profile of the bot over the measured window: {args.profile}")
    if args.peer != "bot":
        notes.append(
            f"--peer {args.peer}: a reference peer answered instead of the bot, so the figures "
            "are the rig's ceiling, not the bot's (the target applies to the bot only)"
        )
    targets = TARGETS if args.peer == "bot" else ()
    return make_report("throughput", argv, figures, targets=targets, notes=notes)


async def _wait_or_fail(load: Sequence[asyncio.Task[None]], seconds: float) -> None:
    """Sleep for the window, but surface at once a user task that failed."""
    done, _ = await asyncio.wait(load, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise BenchError(f"load stopped: {task.exception()}")
