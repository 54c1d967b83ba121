"""bench/slices.py: the paths take turns while the users' closed loop runs on."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass

import pytest

from bench.cli import BenchError
from bench.slices import TurnResult, sliced_turns

PATHS = ["echo", "floor", "bot"]


@dataclass(frozen=True)
class _Answer:
    at: float


class _Asker:
    """A user whose peers answer at once; it notes where each message went, and when."""

    def __init__(self, name: str, log: list[tuple[float, str, str]], fail_on: str = "") -> None:
        self.name = name
        self._log = log
        self._fail_on = fail_on

    async def ask(self, to: str, token: str, timeout: float) -> _Answer:  # noqa: ASYNC109
        self._log.append((time.perf_counter(), to, token))
        if to == self._fail_on:
            raise BenchError(f"{self.name} expected a reply to {token}, got nothing")
        await asyncio.sleep(0)  # the answer comes back through the loop, as a real one does
        return _Answer(time.perf_counter())


async def _sliced(users: list[_Asker], *, messages: int, warmup: int) -> list[list[TurnResult]]:
    """The paths' turns in 20 ms slices, users thinking 2 ms between messages."""
    return await sliced_turns(
        users,
        [(path, os.getpid()) for path in PATHS],
        messages=messages,
        warmup=warmup,
        think=0.002,
        slice_seconds=0.02,
        reply_timeout=5.0,
    )


async def test_every_path_gets_its_quota_and_each_users_warm_up_to_it_is_not_measured() -> None:
    log: list[tuple[float, str, str]] = []
    users = [_Asker(f"u{i}", log) for i in range(3)]
    turns = await _sliced(users, messages=4, warmup=2)
    for path, per_path in zip(PATHS, turns, strict=True):
        measured = sum(len(turn.latencies_ms) for turn in per_path)
        assert measured >= 3 * 4
        sent = sum(1 for _, to, _ in log if to == path)
        assert sent == measured + 3 * 2  # exactly each user's first two to this path were not
        for turn in per_path:
            assert turn.wall_seconds >= 0.02
            assert turn.peer_cpu_seconds >= 0 and turn.bench_cpu_seconds >= 0
            assert all(ms >= 0 for ms in turn.latencies_ms)
    # Tokens stay unique per user, as replies are matched by them.
    assert len({(token, when) for when, _, token in log}) == len(log)
    assert len({token for _, _, token in log}) == len(log)


async def test_the_paths_take_turns_in_rotation_one_slice_at_a_time() -> None:
    log: list[tuple[float, str, str]] = []
    users = [_Asker(f"u{i}", log) for i in range(4)]
    turns = await _sliced(users, messages=6, warmup=0)
    # In order of sending, the paths form runs (one per slice that saw a message), each run's
    # path the next in the rotation after the one before.
    runs: list[str] = []
    for _, to, _ in sorted(log):
        if not runs or runs[-1] != to:
            runs.append(to)
    slices = sum(len(per_path) for per_path in turns)
    assert 3 <= len(runs) <= slices
    for before, after in itertools.pairwise(runs):
        assert PATHS.index(after) == (PATHS.index(before) + 1) % 3


async def test_a_user_left_without_a_reply_fails_the_run_at_the_next_switch() -> None:
    log: list[tuple[float, str, str]] = []
    users = [_Asker("u0", log), _Asker("u1", log, fail_on="floor")]
    # The quota is out of reach: only the failure can end the run (else pytest-timeout does).
    with pytest.raises(BenchError, match="expected a reply"):
        await _sliced(users, messages=1_000_000, warmup=0)


async def test_a_slice_must_last_some_time() -> None:
    with pytest.raises(ValueError, match="slice_seconds must be > 0"):
        await sliced_turns(
            [],
            [("bot", os.getpid())],
            messages=1,
            warmup=0,
            think=0,
            slice_seconds=0,
            reply_timeout=1.0,
        )
