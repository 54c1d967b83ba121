"""``python -m bench <command>``: argument parsing and dispatch, nothing measured here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aimbot.utils import eventloop
from bench.report import Report, emit
from bench.stats import RESAMPLES

COMMANDS = (
    "signon",
    "latency",
    "throughput",
    "duel",
    "latency-duel",
    "memory",
    "chaos",
    "ratelimit",
    "parts",
    "pool",
)


class BenchError(Exception):
    """A run that could not produce figures (the bot did not start, a server failed …)."""


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _seconds(*, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            wanted = "a finite number > 0" if positive else "a finite number >= 0"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


# Set by the rig itself: overriding them would point the bot away from the loopback servers.
RIG_OWNED = frozenset(
    {"AIM_USERNAME", "AIM_PASSWORD", "AIM_SERVER", "AIM_PORT", "DIFY_API_KEY", "DIFY_API_URL"}
    | {"DATA_DIR", "HEALTH_PORT"}
)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def _env_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with an upper-case NAME, got {text!r}"
        )
    if name in RIG_OWNED:
        raise argparse.ArgumentTypeError(f"{name} is set by the bench rig and cannot be overridden")
    if name == "DIFY_MAX_CONCURRENCY" and not (
        value.isascii() and value.isdigit() and int(value) >= 1
    ):
        # The bare bridge keeps to it as well (bench/rig.py dify_concurrency), before the bot
        # has read it: refused here, with the reason, rather than as a traceback there.
        raise argparse.ArgumentTypeError(
            f"DIFY_MAX_CONCURRENCY must be a whole number of at least 1, got {value!r}"
        )
    return name, value


# bench latency's turns (bench/slices.py): its three paths rotate within three slices, shorter
# than the slow spells of a shared machine, which last about a second or more: in one-second
# slices a spell still fell on one path's turn (docs/benchmarks.md, "Session 24").
SLICE_MS = 250.0
AGAINST_HELP = "another checkout of aimbot (e.g. a git worktree of an older revision)"


def _add_against(p: argparse.ArgumentParser) -> None:
    p.add_argument("--against", type=Path, required=True, help=AGAINST_HELP)


def _add_bot_env(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bot-env",
        type=_env_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting of the bot under test (repeatable), e.g. "
        "DIFY_RESPONSE_MODE=blocking",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Measure aimbot on loopback against the devserver OSCAR server and the Dify "
            "stand-in. Each command prints a table; with --json also one JSON object as the "
            "last line of stdout."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    json_help = "also print one JSON object as the last line of stdout"

    p = commands.add_parser("signon", help="connect-to-online time of an OSCAR sign-on")
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--count", type=_int_at_least(2), default=20, help="sign-ons (default 20)")
    p.add_argument(
        "--flood",
        type=_int_at_least(1),
        default=20_000,
        help="IMs sent to the flooded client for recv_im_per_s (default 20,000)",
    )

    p = commands.add_parser("latency", help="reply latency through the bot vs a bare echo peer")
    p.add_argument("--json", action="store_true", help=json_help)
    _add_bot_env(p)
    p.add_argument("--users", type=_int_at_least(1), default=100, help="users (default 100)")
    p.add_argument(
        "--dify-ms", type=_seconds(positive=False), default=0.0, help="stand-in think time"
    )
    p.add_argument(
        "--messages", type=_int_at_least(1), default=20, help="measured messages per user"
    )
    p.add_argument(
        "--warmup",
        type=_int_at_least(0),
        default=2,
        help="unmeasured messages per user to each path before it is timed (with --rounds: at "
        "the start of each round)",
    )
    turns = p.add_mutually_exclusive_group()
    turns.add_argument(
        "--slice-ms",
        type=_seconds(positive=True),
        default=SLICE_MS,
        help="the echo peer, the bare bridge and the bot take turns in slices this long, the "
        f"users' closed loop running on throughout (default {SLICE_MS:g})",
    )
    turns.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=None,
        help="instead of slices: phases, the three taking turns this many times, sharing "
        "--messages, each phase with its own warm-up (the design before session 22)",
    )
    p.add_argument(
        "--think-ms",
        type=_seconds(positive=False),
        default=1000.0,
        help="mean pause between a reply and the user's next message (default 1000; 0 = "
        "saturate, which measures throughput rather than latency)",
    )
    p.add_argument(
        "--long-answers",
        type=_int_at_least(0),
        default=3,
        help="streamed 3-part answers to time to their first part, one at a time (default 3; "
        "0 = skip)",
    )
    p.add_argument(
        "--long-pause",
        type=_seconds(positive=False),
        default=3.0,
        help="seconds between the long answer's paragraphs (default 3: 3 parts over 6 s)",
    )
    p.add_argument(
        "--samples",
        type=Path,
        metavar="FILE",
        help="write every measured latency (ms) there as JSON, per path and turn (slice or round)",
    )
    p.add_argument(
        "--typing-users",
        type=_int_at_least(0),
        default=20,
        help="users in the typing-user scenario, run after the others with the bot's default "
        "buffering (default 20; 0 = skip it)",
    )

    p = commands.add_parser("throughput", help="sustained replies/s and CPU per 1,000 messages")
    p.add_argument("--json", action="store_true", help=json_help)
    _add_bot_env(p)
    p.add_argument(
        "--users", type=_int_at_least(1), default=200, help="concurrent users (default 200)"
    )
    p.add_argument(
        "--seconds",
        type=_seconds(positive=True),
        default=None,
        help="measured window (default 50 with the floor, i.e. 10 rounds of 5 s; else 15)",
    )
    p.add_argument(
        "--warmup-seconds", type=_seconds(positive=False), default=3.0, help="unmeasured start"
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the bot over the measured window (.svg flamegraph, .json speedscope, "
        ".txt collapsed stacks)",
    )
    p.add_argument(
        "--peer",
        choices=("bot", "echo", "dify"),
        default="bot",
        help="what answers: the bot (default); echo = the rig's own ceiling (a peer that sends "
        "each IM straight back); dify = the ceiling of a bare Dify bridge",
    )
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="with the bot: skip the bare Dify bridge phase that gives throughput_ratio and "
        "cpu_ratio (halves the run time)",
    )
    p.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=10,
        help="with the floor: windows each for the bare bridge and the bot, in turns, that "
        "share --seconds (default 10: on a shared machine single 5 s windows vary by tens of "
        "per cent, see docs/benchmarks.md)",
    )

    p = commands.add_parser(
        "duel", help="CPU per reply of this checkout's bot against another's, loaded at once"
    )
    p.add_argument("--json", action="store_true", help=json_help)
    _add_bot_env(p)
    _add_against(p)
    p.add_argument(
        "--users", type=_int_at_least(2), default=200, help="users, half on each bot (default 200)"
    )
    p.add_argument(
        "--seconds", type=_seconds(positive=True), default=40.0, help="measured (default 40)"
    )
    p.add_argument(
        "--windows", type=_int_at_least(1), default=8, help="windows sharing --seconds (default 8)"
    )
    p.add_argument(
        "--warmup-seconds", type=_seconds(positive=False), default=4.0, help="unmeasured start"
    )

    p = commands.add_parser(
        "latency-duel",
        help="reply latency of this checkout's bot against another's (or the bare bridge's), "
        "users alternating",
    )
    p.add_argument("--json", action="store_true", help=json_help)
    _add_bot_env(p)
    other = p.add_mutually_exclusive_group(required=True)
    other.add_argument("--against", type=Path, help=AGAINST_HELP)
    other.add_argument(
        "--floor",
        action="store_true",
        help="the bare Dify bridge (bench/echo_peer.py) instead of another checkout: "
        "bot / floor at the same moments of the machine",
    )
    p.add_argument("--users", type=_int_at_least(1), default=100, help="users (default 100)")
    p.add_argument(
        "--messages",
        type=_int_at_least(1),
        default=30,
        help="measured messages per user, alternating between the bots (default 30)",
    )
    p.add_argument(
        "--warmup", type=_int_at_least(0), default=4, help="unmeasured messages per user first"
    )
    p.add_argument(
        "--think-ms",
        type=_seconds(positive=False),
        default=1000.0,
        help="mean pause between a reply and the user's next message (default 1000)",
    )

    p = commands.add_parser("memory", help="bot RSS per distinct user and drift under load")
    p.add_argument("--json", action="store_true", help=json_help)
    _add_bot_env(p)
    p.add_argument(
        "--users", type=_int_at_least(1), default=10_000, help="distinct users (default 10,000)"
    )
    p.add_argument(
        "--messages",
        type=_int_at_least(1),
        default=100_000,
        help="messages for the drift phase (default 100,000)",
    )
    p.add_argument("--batch", type=_int_at_least(1), default=500, help="users signed on at once")
    p.add_argument(
        "--drift-users", type=_int_at_least(1), default=200, help="users in the drift phase"
    )

    p = commands.add_parser(
        "ratelimit", help="waits and fairness under the server's rate limit; exempt vs ordinary"
    )
    p.add_argument("--json", action="store_true", help=json_help)
    _add_bot_env(p)
    p.add_argument("--users", type=_int_at_least(2), default=6, help="users (default 6)")
    p.add_argument(
        "--parts", type=_int_at_least(1), default=4, help="IMs per long answer (default 4)"
    )
    p.add_argument(
        "--seconds",
        type=_seconds(positive=True),
        default=120.0,
        help="window on the ordinary account (default 120)",
    )
    p.add_argument(
        "--exempt-seconds",
        type=_seconds(positive=True),
        default=10.0,
        help="window on the exempt account (default 10)",
    )

    p = commands.add_parser("chaos", help="steady load while faults are injected at random")
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument(
        "--minutes", type=_seconds(positive=True), default=2.0, help="load duration (default 2)"
    )
    p.add_argument("--users", type=_int_at_least(1), default=40, help="users (default 40)")
    p.add_argument("--seed", type=int, default=None, help="fault schedule seed (default random)")
    p.add_argument(
        "--drain-seconds",
        type=_seconds(positive=True),
        default=150.0,
        help="longest wait for outstanding replies after the load stops",
    )
    p.add_argument(
        "--think-ms",
        type=_seconds(positive=False),
        default=500.0,
        help="pause between a reply and the user's next message",
    )
    p.add_argument(
        "--bot-log", type=Path, default=None, help="save the bot's log (INFO) to this file"
    )

    p = commands.add_parser(
        "parts", help="event-loop time of cutting streamed answers into IMs, by answer shape"
    )
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument(
        "--chars", type=_int_at_least(100), default=8000, help="answer length (default 8,000)"
    )
    p.add_argument(
        "--long-chars",
        type=_int_at_least(100),
        default=100_000,
        help="the long answer, for parts_linearity (default 100,000)",
    )
    p.add_argument(
        "--chunk", type=_int_at_least(1), default=5, help="characters per feed (default 5)"
    )
    p.add_argument(
        "--max-bytes",
        type=_int_at_least(64),
        default=512,
        help="bytes per IM, as MAX_REPLY_BYTES (default 512, Open OSCAR Server's limit)",
    )
    p.add_argument(
        "--max-parts", type=_int_at_least(1), default=10, help="as MAX_REPLY_PARTS (default 10)"
    )
    p.add_argument("--repeat", type=_int_at_least(1), default=3, help="runs per shape (best)")

    p = commands.add_parser(
        "pool",
        help="bench latency's bot / bare bridge ratio over several runs, from their --samples "
        "files (measures nothing itself)",
    )
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="files written by latency --samples"
    )
    p.add_argument(
        "--resamples",
        type=_int_at_least(100),
        default=RESAMPLES,
        help=f"bootstrap resamples behind the pooled ratio's interval (default {RESAMPLES:,})",
    )
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


async def _run_until_terminated(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    """SIGTERM cancels the run like Ctrl-C: it unwinds, so the bot it started is stopped."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await _run(args, argv)


async def _run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    if args.command == "signon":
        from bench import signon

        return await signon.run(args, argv)
    if args.command == "latency":
        from bench import latency

        return await latency.run(args, argv)
    if args.command == "throughput":
        from bench import throughput

        return await throughput.run(args, argv)
    if args.command == "duel":
        from bench import duel

        return await duel.run(args, argv)
    if args.command == "latency-duel":
        from bench import latency_duel

        return await latency_duel.run(args, argv)
    if args.command == "memory":
        from bench import memory

        return await memory.run(args, argv)
    if args.command == "ratelimit":
        from bench import ratelimit

        return await ratelimit.run(args, argv)
    if args.command == "parts":
        from bench import parts

        return await parts.run(args, argv)
    if args.command == "pool":
        from bench import pool

        return await pool.run(args, argv)
    from bench import chaos

    return await chaos.run(args, argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The devserver and stand-in log every expected fault at WARNING; the figures matter here.
    logging.getLogger("aimbot").setLevel(logging.ERROR)
    try:
        report = eventloop.run(_run_until_terminated(args, argv))
    except BenchError as e:
        sys.stderr.write(f"bench {args.command}: {e}\n")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write(f"bench {args.command}: interrupted\n")
        return 130
    emit(report, with_json=args.json)
    return 0
