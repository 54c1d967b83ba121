"""``bench duel``: this checkout's bot against another checkout's bot, both loaded at once.

On a shared VM the machine's speed drifts by tens of per cent within seconds, so two runs made
one after the other (even in turns, as ``throughput`` does against the bare bridge) disagree by
more than most changes to the code are worth. Here both bots are signed on together, each with
half of the users, and their CPU per 1,000 replies is read over the same windows: whatever the
machine does, it does to both, and the ratio shows the code's effect. A diagnostic for choosing
changes; it has no target, and the issue's ratios stay those of ``throughput`` and ``latency``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import BenchError
from bench.procstat import sample
from bench.report import Figure, Report, make_report
from bench.rig import (
    BOT,
    ROOT,
    BotProcess,
    Loopback,
    bot_config,
    bot_environment,
    config_note,
    loopback,
    sign_off_all,
    sign_on_all,
)
from bench.throughput import ReplyTally, finish_load, keep_busy

OTHER = "DuelBot"


@dataclass
class _Side:
    name: str
    bot: BotProcess
    tally: ReplyTally
    replies: int = 0
    cpu: float = 0.0

    def per_1k(self, replies: int, cpu: float) -> float:
        if replies == 0:
            raise BenchError(f"{self.name} answered nothing in a measured window")
        return cpu / replies * 1000


def checkout(path: Path) -> Path:
    """The other checkout, checked where it enters: a directory with aimbot's main.py."""
    root = path.resolve()
    if not (root / "main.py").is_file():
        raise BenchError(f"--against {path}: no main.py there (give a checkout of aimbot)")
    return root


async def start_bot(rig: Loopback, name: str, root: Path, args: argparse.Namespace) -> BotProcess:
    env = bot_environment(
        oscar_port=rig.oscar.port,
        dify_url=rig.dify.url,
        data_dir=rig.workdir / f"data-{name}",
        password=rig.bot_password,
        api_key=rig.dify_key,
        overrides={**bot_config(args), "AIM_USERNAME": name},
    )
    bot = BotProcess(env, rig.workdir / f"{name}.log", root)
    await bot.start()
    try:
        await rig.wait_bot_online(bot, name=name)
    except BaseException:
        await bot.terminate()
        raise
    return bot


async def start_both(
    rig: Loopback, stack: contextlib.AsyncExitStack, other_root: Path, args: argparse.Namespace
) -> tuple[BotProcess, BotProcess]:
    """This checkout's bot (BOT) and the other's (OTHER), online; `stack` stops them."""
    rig.oscar.add_account(OTHER, rig.bot_password, is_bot=True)
    bots = []
    for name, root in ((BOT, ROOT), (OTHER, other_root)):
        bot = await start_bot(rig, name, root, args)
        stack.push_async_callback(bot.terminate)
        bots.append(bot)
    return bots[0], bots[1]


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    other_root = checkout(args.against)
    ratios: list[float] = []
    async with loopback() as rig, contextlib.AsyncExitStack() as stack:
        bots = await start_both(rig, stack, other_root, args)
        this, other = sides = [
            _Side(name, bot, ReplyTally()) for name, bot in zip((BOT, OTHER), bots, strict=True)
        ]
        users = await sign_on_all(rig.oscar, [f"du{i:04d}" for i in range(args.users)])
        load = [
            asyncio.create_task(keep_busy(user, sides[i % 2].name, sides[i % 2].tally))
            for i, user in enumerate(users)
        ]
        try:
            await asyncio.sleep(args.warmup_seconds)
            for _ in range(args.windows):
                before = [(s.tally.replies, sample(s.bot.pid).cpu_seconds) for s in sides]
                await asyncio.sleep(args.seconds / args.windows)
                per_1k = []
                for side, (replies, cpu) in zip(sides, before, strict=True):
                    replies = side.tally.replies - replies
                    cpu = sample(side.bot.pid).cpu_seconds - cpu
                    side.replies += replies
                    side.cpu += cpu
                    per_1k.append(side.per_1k(replies, cpu))
                ratios.append(per_1k[0] / per_1k[1])
        finally:
            await finish_load(load, [side.tally for side in sides])
            await sign_off_all(users)
    this_1k = this.per_1k(this.replies, this.cpu)
    other_1k = other.per_1k(other.replies, other.cpu)
    figures = [
        Figure("cpu_s_per_1k", this_1k, "this checkout's bot, CPU per 1,000 replies", "s"),
        Figure("other_cpu_s_per_1k", other_1k, f"{other_root}'s bot, CPU per 1,000", "s"),
        Figure("cpu_ratio_vs_other", this_1k / other_1k, "this / other (below 1: cheaper)"),
        Figure("window_ratio_min", min(ratios), "lowest window's ratio"),
        Figure("window_ratio_max", max(ratios), "highest window's ratio"),
        Figure("replies", this.replies, "this bot's replies in the measured windows"),
        Figure("other_replies", other.replies, "the other bot's replies"),
    ]
    notes = [
        f"{args.users} users, half on each bot, each with one message outstanding at all "
        f"times; {args.warmup_seconds:g} s warm-up, then {args.windows} windows over "
        f"{args.seconds:g} s",
        config_note(bot_config(args)) + " (both bots); devserver rate limits off",
        "ratio per window: " + ", ".join(f"{r:.3f}" for r in ratios),
        f"median window ratio {statistics.median(ratios):.3f}: both bots share every window, so "
        "the machine's drift cancels; no target (a diagnostic for changes to the code)",
    ]
    return make_report("duel", argv, figures, notes=notes)
