"""``bench memory``: what each distinct user costs the bot in RSS, and whether RSS drifts.

Phase 1 signs on `--users` distinct screen names in batches (the bench process cannot hold
10,000 sockets pairs at once), each sends one message, waits for the reply and signs off; the
bot's RSS after that, minus its RSS before (after a warm-up), divided by the users, is the cost
of one user it has met. Phase 2 sends `--messages` more messages from a small set of users and
compares RSS at its end with RSS at its start: a leak per message shows up as drift.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence

from bench.report import Figure, Report, Target, make_report
from bench.rig import (
    BOT,
    BotProcess,
    Loopback,
    SimUser,
    bot_config,
    config_note,
    loopback,
    sign_off_all,
    sign_on_all,
)

REPLY_TIMEOUT = 60.0
WARMUP_USERS = 20
WARMUP_MESSAGES = 10
TARGETS = (
    Target("rss_bytes_per_user", "<=", 2048),
    Target("rss_drift_pct", "<", 5),
)


async def _closed_loop(users: Sequence[SimUser], total: int, prefix: str) -> None:
    """Users take turns until `total` messages have been answered (one outstanding per user)."""
    issued = 0

    async def one(user: SimUser) -> None:
        nonlocal issued
        while issued < total:
            issued += 1
            await user.ask(BOT, f"{prefix}-{user.name}-{issued}", REPLY_TIMEOUT)

    await asyncio.gather(*(one(u) for u in users))


async def _distinct_users(rig: Loopback, count: int, batch: int) -> None:
    done = 0
    while done < count:
        names = [f"mem{i:06d}" for i in range(done, min(count, done + batch))]
        users = await sign_on_all(rig.oscar, names)
        try:
            await asyncio.gather(*(u.ask(BOT, f"hello-{u.name}", REPLY_TIMEOUT) for u in users))
        finally:
            await sign_off_all(users)
        done += len(names)


async def _settled_rss(bot: BotProcess) -> int:
    """RSS once the bot is idle (a couple of samples apart, the lower one: no transient peak)."""
    first = bot.sample().rss_bytes
    await asyncio.sleep(0.5)
    return min(first, bot.sample().rss_bytes)


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    async with loopback() as rig:
        bot = await rig.start_bot(bot_config(args))
        warm = await sign_on_all(rig.oscar, [f"warm{i:03d}" for i in range(WARMUP_USERS)])
        await _closed_loop(warm, WARMUP_USERS * WARMUP_MESSAGES, "warm")
        await sign_off_all(warm)
        rss_before = await _settled_rss(bot)

        started = time.perf_counter()
        await _distinct_users(rig, args.users, args.batch)
        phase1_s = time.perf_counter() - started
        rss_after_users = await _settled_rss(bot)

        drift_users = await sign_on_all(
            rig.oscar, [f"drift{i:04d}" for i in range(args.drift_users)]
        )
        peak = rss_after_users
        sampling = asyncio.Event()

        async def watch_peak() -> None:
            nonlocal peak
            while not sampling.is_set():
                peak = max(peak, bot.sample().rss_bytes)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await sampling.wait()

        watcher = asyncio.create_task(watch_peak())
        started = time.perf_counter()
        try:
            await _closed_loop(drift_users, args.messages, "drift")
        finally:
            sampling.set()
            await watcher
            await sign_off_all(drift_users)
        phase2_s = time.perf_counter() - started
        rss_end = await _settled_rss(bot)

    per_user = (rss_after_users - rss_before) / args.users
    drift = (rss_end - rss_after_users) / rss_after_users * 100
    figures = [
        Figure("rss_bytes_per_user", per_user, "RSS growth per distinct user", "B"),
        Figure("rss_drift_pct", drift, "RSS drift over the message phase", "%"),
        Figure("rss_before_bytes", rss_before, "RSS after warm-up", "B"),
        Figure("rss_after_users_bytes", rss_after_users, f"RSS after {args.users:,} users", "B"),
        Figure("rss_end_bytes", rss_end, f"RSS after {args.messages:,} more messages", "B"),
        Figure("rss_peak_bytes", peak, "RSS peak during the message phase", "B"),
        Figure("users_phase_s", phase1_s, "distinct-user phase", "s"),
        Figure("messages_phase_s", phase2_s, "message phase", "s"),
        Figure("messages_per_s", args.messages / phase2_s, "message phase rate", "/s"),
    ]
    notes = [
        f"{args.users:,} distinct users, {args.batch} signed on at a time, one message each; "
        f"then {args.messages:,} messages from {args.drift_users} users (closed loop)",
        f"RSS from /proc/<pid>/status VmRSS of the bot process, sampled idle; baseline after "
        f"{WARMUP_USERS} warm-up users x {WARMUP_MESSAGES} messages",
        config_note(bot_config(args)) + "; devserver rate limits off",
    ]
    return make_report("memory", argv, figures, targets=TARGETS, notes=notes)
