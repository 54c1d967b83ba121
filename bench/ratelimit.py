"""``bench ratelimit``: how replies share the send budget of a rate-limited account.

Against a devserver that enforces Open OSCAR Server's rate classes on an ordinary account (about
one IM per 5 s after a short burst), every user keeps one question outstanding (ask, read the
whole answer, ask again) for a window; half of them get answers of `--parts` IMs, half one-IM
answers. The bench reports the wait for each answer's first part (p50/p95/max over all answers)
and Jain's fairness index over the IMs each user received in the window: 1.0 when every user
gets an equal share of the budget; arrival-order scheduling gives the long answers a share
proportional to their length (about 0.74 for 4-part vs 1-part answers). The same load against an
exempt (is_bot) account shows what the limit costs: IMs per second on each, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aimbot.devserver.dify_standin import AnswerContext, AnswerFn
from bench.cli import BenchError
from bench.report import Figure, Report, Target, make_report
from bench.rig import (
    BOT,
    SimUser,
    bot_config,
    config_note,
    log_crash,
    loopback,
    sign_off_all,
    sign_on_all,
)
from bench.stats import ratio, summarize

REPLY_TIMEOUT = 600.0
PART_CHARS = 400  # the devserver advertises 512-byte IMs: one such chunk per IM
TARGETS = (Target("fairness_jain", ">=", 0.9), Target("exempt_speedup", ">=", 50))


def answers(parts: int) -> AnswerFn:
    """Long answers (about `parts` IMs) for users named L…, one-IM answers for the others."""

    def answer(ctx: AnswerContext) -> str:
        size = parts if ctx.query.startswith("L") else 1
        words = " ".join(["lorem"] * ((PART_CHARS // 6) * size - 12))
        return f"{ctx.query} {words} END-{ctx.query}"

    return answer


@dataclass
class UserLog:
    first_part_waits: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)


async def keep_asking(user: SimUser, record: UserLog) -> None:
    n = 0
    while True:
        token = f"{user.name}-q{n}"
        sent = time.perf_counter()
        await user.send(BOT, token)
        first = True
        while True:
            arrival = await user.next_arrival(REPLY_TIMEOUT)
            record.arrivals.append(arrival.at)
            if first:
                record.first_part_waits.append(arrival.at - sent)
                first = False
            if f"END-{token}" in arrival.im.text:
                break
        n += 1


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: (Σx)² / (n·Σx²); 1.0 when all are equal, 1/n at worst."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


async def phase(
    args: argparse.Namespace, *, exempt: bool, seconds: float
) -> tuple[dict[str, UserLog], float, float]:
    """Run the load for `seconds`; returns per-user logs and the window's start and end."""
    async with loopback(answers(args.parts), enforce_rate_limits=True, exempt_bot=exempt) as rig:
        await rig.start_bot(bot_config(args))
        prefix = "x" if exempt else "r"
        names = [f"{'L' if i % 2 else 'S'}{prefix}{i:03d}" for i in range(args.users)]
        # Only the bot's limit is under test: the simulated users may write as fast as they like.
        users = await sign_on_all(rig.oscar, names, exempt=True)
        logs = {u.name: UserLog() for u in users}
        start = time.perf_counter()
        tasks = [asyncio.create_task(keep_asking(u, logs[u.name])) for u in users]
        for task in tasks:
            task.add_done_callback(log_crash)
        try:
            await asyncio.sleep(seconds)
        finally:
            end = time.perf_counter()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await sign_off_all(users)
    return logs, start, end


def in_window(log: UserLog, start: float, end: float) -> int:
    return sum(1 for at in log.arrivals if start <= at < end)


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    limited, l_start, l_end = await phase(args, exempt=False, seconds=args.seconds)
    exempt, x_start, x_end = await phase(args, exempt=True, seconds=args.exempt_seconds)
    shares = [in_window(log, l_start, l_end) for log in limited.values()]
    waits = [w for log in limited.values() for w in log.first_part_waits]
    if not waits or not sum(shares):
        raise BenchError("no answer arrived in the ordinary-account window")
    first = summarize(waits)
    limited_rate = sum(shares) / (l_end - l_start)
    exempt_rate = sum(in_window(log, x_start, x_end) for log in exempt.values()) / (x_end - x_start)
    figures = [
        Figure("first_part_p50_s", first.p50, "ordinary: wait for an answer's first IM, p50", "s"),
        Figure("first_part_p95_s", first.p95, "ordinary: wait for an answer's first IM, p95", "s"),
        Figure("first_part_max_s", first.max, "ordinary: wait for an answer's first IM, max", "s"),
        Figure("fairness_jain", jain(shares), "Jain's fairness index over IMs per user"),
        Figure("ims_min_user", min(shares), "ordinary: fewest IMs one user got"),
        Figure("ims_max_user", max(shares), "ordinary: most IMs one user got"),
        Figure("ordinary_im_per_s", limited_rate, "ordinary account: IMs per second", "/s"),
        Figure("exempt_im_per_s", exempt_rate, "exempt (is_bot) account: IMs per second", "/s"),
        Figure("exempt_speedup", ratio(exempt_rate, limited_rate), "exempt / ordinary IM rate"),
    ]
    notes = [
        f"{args.users} users, each with one question outstanding; half get {args.parts}-IM "
        f"answers, half 1-IM answers; {args.seconds:g} s against a devserver enforcing Open OSCAR "
        f"Server's rate classes on an ordinary account, then {args.exempt_seconds:g} s with the "
        "bot's account marked is_bot",
        config_note(bot_config(args)),
    ]
    return make_report("ratelimit", argv, figures, targets=TARGETS, notes=notes)
