"""``bench latency``'s long-answer scenario (issue 15): how soon a streamed answer's first part
reaches the user.

The Dify stand-in streams a three-paragraph answer, one paragraph every ``--long-pause``
seconds (3-part answer over 6 s by default), each paragraph filling most of one 512-byte IM.
With STREAM_PARTS on, the bot sends each part once its paragraph is final; the figure is the
time from the stand-in writing the first paragraph (the moment that part's text is complete)
to the user's client seeing part 1. Runs are one at a time, so each scripted stream answers the
one question it was scripted for.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from aimbot.devserver.dify_standin import ScriptedStream
from bench.cli import BenchError
from bench.report import Figure, Target
from bench.rig import BOT, Loopback, SimUser
from bench.stats import summarize

PARTS = 3
REPLY_TIMEOUT = 60.0
TARGETS = (Target("time_to_first_part_ms", "<=", 100),)


def pieces() -> list[str]:
    """Three paragraphs of ~380 characters: each more than half of a 512-byte IM, and no two
    fit one, so each is one part."""
    words = ("alpha", "bravo", "delta")
    paragraphs = [" ".join(f"{word}{n:03d}" for n in range(42)) for word in words]
    return [f"{text}\n\n" for text in paragraphs[:-1]] + [paragraphs[-1]]


@dataclass(frozen=True)
class LongAnswerResult:
    first_part_ms: list[float]  # part 1 seen by the user minus paragraph 1 written by Dify
    part_ms: list[float]  # the same for every part (the last one: after message_end)
    answer_seconds: list[float]  # the stand-in's whole stream, first paragraph to last


async def long_answers(
    rig: Loopback, users: Sequence[SimUser], args: argparse.Namespace
) -> LongAnswerResult:
    first: list[float] = []
    every: list[float] = []
    spans: list[float] = []
    for run in range(args.long_answers):
        user = users[run % len(users)]
        script = rig.dify.script_stream(ScriptedStream(pieces(), pause=args.long_pause))
        await user.send(BOT, f"{user.name}-long{run}")
        arrivals = [await user.next_arrival(REPLY_TIMEOUT) for _ in range(PARTS)]
        texts = [arrival.im.text for arrival in arrivals]
        # "(1/...)" when streamed; "(1/3)" with STREAM_PARTS=false (the "before" figure).
        if not texts[0].startswith("(1/") or not texts[-1].startswith(f"({PARTS}/{PARTS}) "):
            raise BenchError(f"expected {PARTS} streamed parts, got {texts!r}")
        delays = [
            (arrival.at - sent) * 1000
            for arrival, sent in zip(arrivals, script.sent_at, strict=True)
        ]
        first.append(delays[0])
        every.extend(delays)
        spans.append(script.sent_at[-1] - script.sent_at[0])
    return LongAnswerResult(first, every, spans)


def figures(result: LongAnswerResult) -> list[Figure]:
    first, every = summarize(result.first_part_ms), summarize(result.part_ms)
    return [
        Figure(
            "time_to_first_part_ms",
            first.max,
            "long answer: part 1 after Dify streamed its text, worst run",
            "ms",
        ),
        Figure("time_to_first_part_ms_p50", first.p50, "long answer: the same, p50", "ms"),
        Figure("part_after_text_ms_max", every.max, "long answer: any part after its text", "ms"),
        Figure(
            "long_answer_stream_s",
            max(result.answer_seconds),
            "long answer: Dify's stream, first to last paragraph",
            "s",
        ),
        Figure("long_answer_runs", len(result.first_part_ms), "long answers measured"),
    ]


def note(args: argparse.Namespace) -> str:
    return (
        f"long answer: {args.long_answers} run(s) of a {PARTS}-paragraph answer streamed one "
        f"paragraph every {args.long_pause:g} s (512-byte IMs)"
    )
