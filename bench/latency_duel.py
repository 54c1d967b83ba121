"""``bench latency-duel``: reply latency of this checkout's bot against another's, at once.

``bench latency`` compares the bot with the bare bridge in turns, a round at a time, and on a
shared VM a p99 moves by tens of per cent between rounds: a change worth 5 % cannot be seen
there. Here both bots are signed on together and every user alternates between them, one
message at a time, so both see the same moments of the machine. Like ``duel``, a diagnostic for
choosing changes, without a target; the issue's ratio stays ``latency``'s bot_over_floor_p99.

``--floor`` puts the bare Dify bridge (bench/echo_peer.py) in the other bot's place: the bot's
cost over the floor with the machine's drift shared, which ``latency``'s turns cannot give. The
two then also share the cores at the moments their messages overlap, so it complements that
ratio rather than replacing it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence

from bench.duel import OTHER, checkout, start_both
from bench.latency import closed_loop_by_peer
from bench.procstat import sample
from bench.report import Figure, Report, make_report
from bench.rig import (
    BOT,
    bot_config,
    config_note,
    loopback,
    reference_peer,
    sign_off_all,
    sign_on_all,
)
from bench.stats import ratio, summarize


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    other_root = None if args.floor else checkout(args.against)
    other_label = "the bare bridge" if other_root is None else f"{other_root}'s bot"
    config = bot_config(args)
    async with loopback() as rig, contextlib.AsyncExitStack() as stack:
        if other_root is None:
            this_pid = (await rig.start_bot(config)).pid  # the rig stops it
            other, other_pid = await stack.enter_async_context(reference_peer(rig, "dify", config))
        else:
            this_bot, other_bot = await start_both(rig, stack, other_root, args)
            this_pid, other, other_pid = this_bot.pid, OTHER, other_bot.pid
        pids = {BOT: this_pid, other: other_pid}
        users = await sign_on_all(rig.oscar, [f"ld{i:04d}" for i in range(args.users)])
        think = args.think_ms / 1000
        try:
            # Warm-up: both peers' first answers (imports, caches, pools) are not measured.
            await closed_loop_by_peer(
                users, [BOT, other], messages=0, warmup=args.warmup, think=think
            )
            cpu_before = {name: sample(pid).cpu_seconds for name, pid in pids.items()}
            latencies = await closed_loop_by_peer(
                users, [BOT, other], messages=args.messages, warmup=0, think=think
            )
            cpu = {name: sample(pid).cpu_seconds - cpu_before[name] for name, pid in pids.items()}
        finally:
            await sign_off_all(users)
    this, theirs = summarize(latencies[BOT]), summarize(latencies[other])
    this_ms = cpu[BOT] / this.count * 1000
    other_ms = cpu[other] / theirs.count * 1000
    figures = [
        Figure("p50_ms", this.p50, "this checkout's bot, p50", "ms"),
        Figure("p99_ms", this.p99, "this checkout's bot, p99", "ms"),
        Figure("other_p50_ms", theirs.p50, f"{other_label}, p50", "ms"),
        Figure("other_p99_ms", theirs.p99, f"{other_label}, p99", "ms"),
        Figure("p50_ratio_vs_other", ratio(this.p50, theirs.p50), "this / other, p50"),
        Figure("p99_ratio_vs_other", ratio(this.p99, theirs.p99), "this / other, p99"),
        Figure("cpu_ms_per_msg", this_ms, "this checkout's bot, CPU per message", "ms"),
        Figure("other_cpu_ms_per_msg", other_ms, f"{other_label}, CPU per message", "ms"),
        Figure("samples", this.count, "measured messages per peer"),
    ]
    notes = [
        f"{args.users} users, each alternating between this checkout's bot and {other_label} "
        f"one message at a time ({args.warmup} warm-up + {args.messages} measured messages per "
        f"user, think time {args.think_ms:g} ms); Dify stand-in at 0 ms",
        config_note(config)
        + (" (both bots)" if other_root is not None else "")
        + "; devserver rate limits off",
        "no target: a diagnostic for changes to the code (below 1: this checkout is faster)",
    ]
    return make_report("latency-duel", argv, figures, notes=notes)
