"""``bench parts``: what cutting a streamed answer into IMs costs the event loop.

Progressive delivery (STREAM_PARTS, aimbot/bot/text/_stream.py) looks at the text received so
far every time a line of it ends, on the event loop, while every other user waits. This runner
feeds the bot's own `PartStream` answers of several shapes the way the Dify client does, in
small chunks (`--chunk` characters, about an LLM token), and times each feed. Some shapes allow a
cut at every line (lists, code), some at none for a long stretch (a table, lines without a blank
one between them, a reasoning model's thinking, which is held back until it closes); an answer can
be long (MAX_ANSWER_CHARS) and its IMs large (MAX_REPLY_BYTES).

No server or bot process is involved: the figures are CPU time of one thread, each shape's
best of `--repeat` runs. `parts_linearity` is the worst shape's cost per 1,000 characters at
`--long-chars` over the same at `--chars`: work that grows with the square of the answer's
length shows up there as a large ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aimbot.bot.text import part_stream
from aimbot.oscar.imtext import im_text_size
from bench.report import Figure, Report, Target, make_report

TARGETS = (Target("parts_linearity", "<=", 3), Target("worst_feed_ms", "<=", 10))


def _repeat_to(unit: str, chars: int) -> str:
    return (unit * (chars // len(unit) + 1))[:chars]


def _numbered(line: Callable[[int], str], chars: int) -> str:
    lines: list[str] = []
    size = 0
    while size < chars:
        lines.append(line(len(lines)))
        size += len(lines[-1])
    return "".join(lines)


SHAPES: dict[str, Callable[[int], str]] = {
    "paragraphs": lambda n: _repeat_to(
        "The quick brown fox jumps over the lazy dog, again and again. " * 5 + "\n\n", n
    ),
    "lines": lambda n: _repeat_to("A line of a poem, with no blank line after it\n", n),
    "code": lambda n: "```\n" + _numbered(lambda i: f"total_{i} = compute(a, b)  # step\n", n),
    "list": lambda n: _numbered(lambda i: f"- item number {i} with a few words\n", n),
    "nested_list": lambda n: _numbered(lambda i: f"- item {i}\n  - detail {i} in words\n", n),
    "table": lambda n: "| a | b |\n|---|---|\n" + _numbered(lambda i: f"| cell {i} | {i} |\n", n),
    # A reasoning model's answer: all of it thinking (dropped), then a line of answer.
    "thinking": lambda n: f"<think>{_repeat_to('Let me weigh it step by step. ', n)}</think>\n4\n",
}


@dataclass(frozen=True)
class Timing:
    """One shape streamed once: total and longest single feed, in seconds."""

    total: float
    worst_feed: float


def stream_once(text: str, *, chunk: int, max_bytes: int, max_parts: int) -> Timing:
    stream = part_stream("html", max_bytes, im_text_size, max_parts)
    total = worst = 0.0
    for start in range(0, len(text), chunk):
        began = time.perf_counter()
        stream.feed(text[start : start + chunk])
        spent = time.perf_counter() - began
        total += spent
        worst = max(worst, spent)
    return Timing(total, worst)


def best_of(text: str, args: argparse.Namespace) -> Timing:
    runs = [
        stream_once(text, chunk=args.chunk, max_bytes=args.max_bytes, max_parts=args.max_parts)
        for _ in range(args.repeat)
    ]
    return min(runs, key=lambda timing: timing.total)


def per_1k_ms(timing: Timing, chars: int) -> float:
    return timing.total * 1000 / (chars / 1000)


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    figures: list[Figure] = []
    linearity: dict[str, float] = {}
    worst_feed = 0.0
    worst_cost = 0.0
    for name, make in SHAPES.items():
        short, long = make(args.chars), make(args.long_chars)
        at_short, at_long = best_of(short, args), best_of(long, args)
        cost = per_1k_ms(at_short, len(short))
        figures.append(
            Figure(f"ms_per_1k_chars_{name}", round(cost, 3), f"{name}: loop time per 1,000 chars")
        )
        linearity[name] = per_1k_ms(at_long, len(long)) / cost if cost > 0 else 0.0
        worst_feed = max(worst_feed, at_short.worst_feed, at_long.worst_feed)
        worst_cost = max(worst_cost, cost)
    worst_shape = max(linearity, key=lambda name: linearity[name])
    figures += [
        Figure("worst_ms_per_1k_chars", round(worst_cost, 3), "worst shape, per 1,000 chars", "ms"),
        Figure("worst_feed_ms", round(worst_feed * 1000, 3), "longest single feed", "ms"),
        Figure(
            "parts_linearity",
            round(linearity[worst_shape], 3),
            f"per-char cost at {args.long_chars:,} / at {args.chars:,} chars ({worst_shape})",
        ),
    ]
    notes = [
        f"answers of {args.chars:,} and {args.long_chars:,} characters, fed {args.chunk} "
        f"characters at a time to the bot's PartStream (html, MAX_REPLY_BYTES={args.max_bytes}, "
        f"MAX_REPLY_PARTS={args.max_parts}); best of {args.repeat} per shape",
        "per-char cost ratio per shape: "
        + ", ".join(f"{name} {ratio:.2f}" for name, ratio in linearity.items()),
    ]
    return make_report("parts", argv, figures, targets=TARGETS, notes=notes)
