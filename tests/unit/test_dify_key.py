"""DifyKeyWatch: the key's verdict from the start-up probe, re-checks, and chat outcomes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from aimbot.api.errors import DifyAuthError, DifyUnavailable
from aimbot.ops.dify_key import DifyKeyWatch


class Probe:
    """A scripted GET /parameters: each call takes the next outcome and reports it was made."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.called = asyncio.Condition()

    async def __call__(self) -> object:
        async with self.called:
            self.calls += 1
            self.called.notify_all()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return {}

    async def wait_calls(self, n: int) -> None:
        async with self.called:
            async with asyncio.timeout(10):
                await self.called.wait_for(lambda: self.calls >= n)


def rejected(watch: DifyKeyWatch) -> str | None:
    """Read afresh each time (an assert on the attribute itself would narrow its type for good)."""
    return watch.rejected


@contextlib.asynccontextmanager
async def watching(watch: DifyKeyWatch, probe: Probe) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch.run(probe))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_rejected_key_is_logged_once_and_rechecked_until_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="aimbot.ops.dify_key")
    watch = DifyKeyWatch(recheck_interval=0.01)
    probe = Probe(DifyAuthError("HTTP 401", status=401), DifyAuthError("HTTP 401", status=401))
    async with watching(watch, probe):
        await watch.wait_checked(10)
        verdict = rejected(watch)
        assert verdict is not None and "401" in verdict
        await probe.wait_calls(3)  # rejected twice, then accepted
        await watch.wait_until(accepted=True, timeout=10)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "DIFY_API_KEY" in errors[0].getMessage()
    assert "accepts DIFY_API_KEY again" in caplog.text


async def test_an_unreachable_dify_decides_nothing_about_the_key() -> None:
    watch = DifyKeyWatch(recheck_interval=0.01)
    probe = Probe(DifyUnavailable("connection refused"))
    async with watching(watch, probe):
        await probe.wait_calls(2)
        await watch.wait_checked(10)
    assert rejected(watch) is None


async def test_chat_outcomes_flip_the_verdict_and_a_refusal_wakes_the_recheck() -> None:
    watch = DifyKeyWatch(recheck_interval=0.01)
    probe = Probe(None, DifyAuthError("HTTP 403", status=403))
    async with watching(watch, probe):
        await watch.wait_checked(10)
        assert rejected(watch) is None
        watch.observe("auth", 0.2)
        assert rejected(watch) is not None
        await probe.wait_calls(2)  # the refusal started re-checking
        watch.observe("ok", 0.2)
        assert rejected(watch) is None
        watch.observe("timeout", 0.2)  # not about the key
        assert rejected(watch) is None


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="recheck_interval"):
        DifyKeyWatch(recheck_interval=0)
