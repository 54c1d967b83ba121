"""DifyClient resilience against the stand-in: retries, back-off, timeouts, circuit breaker.

Back-off pauses and cool-downs go through the injected FakeTime, so the schedule is asserted
exactly without waiting; only the deliberate timeouts (fractions of a second) run in real time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import aiohttp
import pytest

from aimbot.api.breaker import CircuitState
from aimbot.api.dify_client import DifyClient
from aimbot.api.errors import (
    DifyAuthError,
    DifyBadRequest,
    DifyCircuitOpen,
    DifyError,
    DifyHttpError,
    DifyRateLimited,
    DifyTimeout,
    DifyUnavailable,
)
from tests.helpers.dify import WAIT, FlakyProxy, dify_rig, guard_key_in_logs, refused_port


def circuit(client: DifyClient) -> CircuitState:
    """Read afresh each time (an assert on the property itself would narrow its type for good)."""
    return client.circuit_state


USER = "aim:alice"


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield from guard_key_in_logs(caplog)


class CeilingRng(random.Random):
    """Full jitter always drawing its upper bound: makes the budget arithmetic exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


# ---------------------------------------------------------------------------- recovering


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@pytest.mark.parametrize("mode", ["streaming", "blocking"])
async def test_retried_statuses_recover(status: int, mode: str) -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(status, status)
        client = rig.client(response_mode=mode)
        answer = await client.chat(USER, "hi", None)
        assert "you said 'hi'" in answer.text
        assert rig.standin.request_count == 3
        assert len(rig.time.sleeps) == 2
        assert circuit(client) == "closed"


async def test_retries_log_their_delay_and_the_recovery(caplog: pytest.LogCaptureFixture) -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(503)
        await rig.client().chat(USER, "hi", None)
    messages = [r.getMessage() for r in caplog.records if r.name == "aimbot.api.dify_client"]
    [retry] = [m for m in messages if "retry 1 of 4 in" in m]
    assert f"in {rig.time.sleeps[0]:.2f} s" in retry and "503 service_unavailable" in retry
    assert any("recovered on attempt 2" in m for m in messages)


async def test_too_many_requests_dressed_as_400_is_retried() -> None:
    async with dify_rig() as rig:
        rig.standin.script_too_many_requests_400(2)
        answer = await rig.client().chat(USER, "hi", None)
        assert answer.text and rig.standin.request_count == 3 and len(rig.time.sleeps) == 2


async def test_non_json_502_is_retried_and_then_reported_without_html() -> None:
    async with dify_rig() as rig:
        rig.standin.non_json_502(1)
        assert (await rig.client().chat(USER, "hi", None)).text
        rig.standin.non_json_502(3)
        with pytest.raises(DifyUnavailable) as info:
            await rig.client(retry_max_attempts=3).chat(USER, "hi", None)
        assert "<html>" not in str(info.value) and "non-JSON 502 reply" in str(info.value)
        assert info.value.status == 502


async def test_dropped_connections_are_retried_and_recover() -> None:
    async with dify_rig() as rig:
        host, port = rig.standin.url.split("//")[1].split("/")[0].split(":")
        async with FlakyProxy(host, int(port)) as proxy:
            proxy.drop_next(2)
            client = rig.client(base_url=f"http://127.0.0.1:{proxy.port}/v1")
            answer = await client.chat(USER, "hi", None)
            assert "you said 'hi'" in answer.text
            assert proxy.connections >= 3 and len(rig.time.sleeps) == 2
            assert rig.standin.request_count == 1


async def test_timeout_is_retried_and_recovers() -> None:
    async with dify_rig(ping_interval=0.02) as rig:
        rig.standin.ping_only(1)
        client = rig.client(stream_deadline=0.3)
        answer = await client.chat(USER, "hi", None)
        assert answer.text and rig.standin.request_count == 2 and len(rig.time.sleeps) == 1


# ---------------------------------------------------------------------------- giving up


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, DifyRateLimited), (500, DifyUnavailable), (503, DifyUnavailable)],
)
async def test_exhausted_retries_raise_the_typed_error_from_the_http_cause(
    status: int, error_type: type[DifyError]
) -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(*[status] * 5)
        client = rig.client(retry_max_attempts=3)
        with pytest.raises(error_type) as info:
            await client.chat(USER, "hi", None)
        assert type(info.value) is error_type
        assert info.value.status == status
        cause = info.value.__cause__
        assert isinstance(cause, DifyHttpError) and cause.status == status
        assert rig.standin.request_count == 3 and len(rig.time.sleeps) == 2
        assert rig.observed[-1][0] == error_type.kind


async def test_refused_connection_is_unavailable_from_the_aiohttp_cause() -> None:
    async with dify_rig() as rig:
        with refused_port() as port:
            client = rig.client(base_url=f"http://127.0.0.1:{port}/v1", retry_max_attempts=2)
            with pytest.raises(DifyUnavailable) as info:
                await client.chat(USER, "hi", None)
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)
        assert f"127.0.0.1:{port}" in str(info.value)
        assert len(rig.time.sleeps) == 1


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, DifyBadRequest), (401, DifyAuthError), (403, DifyAuthError), (404, DifyBadRequest)],
)
@pytest.mark.parametrize("mode", ["streaming", "blocking"])
async def test_non_retryable_statuses_fail_at_once_with_their_type(
    status: int, error_type: type[DifyError], mode: str
) -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(status)
        client = rig.client(response_mode=mode)
        with pytest.raises(error_type) as info:
            await client.chat(USER, "hi", None)  # no conversation id: a 404 is a wrong URL
        assert type(info.value) is error_type and info.value.status == status
        assert rig.standin.request_count == 1 and rig.time.sleeps == []
        assert circuit(client) == "closed"


async def test_ping_only_stream_hits_the_deadline() -> None:
    async with dify_rig(ping_interval=0.02) as rig:
        rig.standin.ping_only(1)
        client = rig.client(stream_deadline=0.3, retry_max_attempts=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DifyTimeout, match="only keep-alive pings") as info:
            await client.chat(USER, "hi", None)
        assert 0.3 <= loop.time() - started < WAIT
        assert isinstance(info.value.__cause__, TimeoutError)


async def test_silent_server_hits_the_read_timeout() -> None:
    async with dify_rig(ping_interval=0.05) as rig:
        rig.standin.ping_only(1)  # blocking mode: not a single byte
        client = rig.client(response_mode="blocking", read_timeout=0.2, retry_max_attempts=1)
        with pytest.raises(DifyTimeout, match="read timeout"):
            await client.chat(USER, "hi", None)


async def test_slow_answer_within_deadline_is_not_a_timeout() -> None:
    async with dify_rig(ping_interval=0.02) as rig:
        rig.standin.set_latency(0.2)
        # Longer than the read timeout in total, but pings keep the socket alive.
        client = rig.client(read_timeout=0.1, stream_deadline=WAIT)
        assert (await client.chat(USER, "hi", None)).text


# ---------------------------------------------------------------------------- back-off


async def test_backoff_delays_stay_within_full_jitter_bounds() -> None:
    schedules = []
    for seed in range(5):
        async with dify_rig() as rig:
            rig.standin.script_statuses(503, 503, 503, 503)
            client = rig.client(retry_base=1.0, retry_cap=4.0, rng=random.Random(seed))
            await client.chat(USER, "hi", None)
            sleeps = rig.time.sleeps
            assert len(sleeps) == 4
            for attempt, delay in enumerate(sleeps):
                assert 0.0 <= delay <= min(4.0, 1.0 * 2**attempt)
            schedules.append(tuple(sleeps))
    assert len(set(schedules)) == len(schedules)  # jittered, not in lock-step


async def test_total_retry_time_is_bounded() -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(*[503] * 10)
        client = rig.client(
            retry_base=2.0, retry_cap=2.0, retry_max_attempts=10, retry_max_time=5.0,
            rng=CeilingRng(),
        )  # fmt: skip
        with pytest.raises(DifyUnavailable):
            await client.chat(USER, "hi", None)
        # t=0 fail, pause 2; t=2 fail, pause 2; t=4 fail: another 2 would end at 6 > 5.
        assert rig.time.sleeps == [2.0, 2.0]
        assert rig.standin.request_count == 3


async def test_retry_after_from_a_proxy_is_honoured() -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(429, retry_after=7)
        answer = await rig.client(retry_base=1.0, retry_cap=2.0).chat(USER, "hi", None)
        assert answer.text and rig.time.sleeps == [7.0]


async def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    async with dify_rig() as rig:
        rig.standin.script_statuses(429, retry_after=600)
        with pytest.raises(DifyRateLimited) as info:
            await rig.client(retry_max_time=60.0).chat(USER, "hi", None)
        assert info.value.retry_after == 600.0
        assert rig.time.sleeps == [] and rig.standin.request_count == 1


async def test_backoff_restarts_from_base_for_each_call() -> None:
    async with dify_rig() as rig:
        client = rig.client(retry_base=1.0, retry_cap=64.0, rng=CeilingRng())
        for _ in range(2):
            rig.standin.script_statuses(503, 503)
            await client.chat(USER, "hi", None)
        assert rig.time.sleeps == [1.0, 2.0, 1.0, 2.0]


# ---------------------------------------------------------------------------- circuit breaker


async def test_circuit_opens_fails_fast_and_recovers_after_cooldown() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=3, breaker_cooldown=30.0, retry_max_attempts=1)
        rig.standin.set_down(True)
        for _ in range(3):
            with pytest.raises(DifyUnavailable):
                await client.chat(USER, "hi", None)
        assert circuit(client) == "open"
        with pytest.raises(DifyCircuitOpen) as info:
            await client.chat(USER, "hi", None)
        assert rig.standin.request_count == 3  # failed fast: Dify never saw it
        assert info.value.retry_in == pytest.approx(30.0)
        assert isinstance(info.value.__cause__, DifyUnavailable)
        assert rig.observed[-1][0] == "circuit_open"

        rig.time.advance(30.0)
        assert circuit(client) == "half_open"
        rig.standin.set_down(False)
        assert (await client.chat(USER, "hi", None)).text  # the probe
        assert circuit(client) == "closed"
        assert (await client.chat(USER, "hi", None)).text
        assert rig.standin.request_count == 5


async def test_failed_probe_reopens_the_circuit() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=1, breaker_cooldown=10.0, retry_max_attempts=3)
        rig.standin.set_down(True)
        with pytest.raises(DifyUnavailable):
            await client.chat(USER, "hi", None)
        assert rig.standin.request_count == 1  # the circuit opened: no point retrying
        rig.time.advance(10.0)
        with pytest.raises(DifyUnavailable):
            await client.chat(USER, "hi", None)  # the probe: one attempt, no retries
        assert rig.standin.request_count == 2 and rig.time.sleeps == []
        assert circuit(client) == "open"
        with pytest.raises(DifyCircuitOpen):
            await client.chat(USER, "hi", None)


async def test_only_one_probe_goes_through_while_half_open() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=1, retry_max_attempts=1)
        rig.standin.script_statuses(500)
        with pytest.raises(DifyUnavailable):
            await client.chat(USER, "hi", None)
        rig.time.advance(30.0)
        rig.standin.set_latency(0.2, user=USER)
        probe = asyncio.create_task(client.chat(USER, "probe", None))
        await rig.standin.wait_requests(2)
        with pytest.raises(DifyCircuitOpen):
            await client.chat("aim:bob", "me too", None)
        async with asyncio.timeout(WAIT):
            assert (await probe).text
        assert circuit(client) == "closed"
        assert (await client.chat("aim:bob", "me too", None)).text


async def test_cancelled_probe_frees_the_probe_slot() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=1, retry_max_attempts=1)
        rig.standin.script_statuses(500)
        with pytest.raises(DifyUnavailable):
            await client.chat(USER, "hi", None)
        rig.time.advance(30.0)
        rig.standin.set_latency(WAIT, user=USER)
        probe = asyncio.create_task(client.chat(USER, "probe", None))
        await rig.standin.wait_requests(2)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert circuit(client) == "half_open"
        assert (await client.chat("aim:bob", "next probe", None)).text
        assert circuit(client) == "closed"


async def test_client_errors_do_not_open_the_circuit() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=2)
        rig.standin.script_statuses(401, 400, 403, 404, 401)
        for _ in range(5):
            with pytest.raises((DifyAuthError, DifyBadRequest)):
                await client.chat(USER, "hi", None)
        assert circuit(client) == "closed"
        assert client.breaker.consecutive_failures == 0


async def test_rate_limits_count_once_per_exhausted_call() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=2, retry_max_attempts=3)
        rig.standin.script_statuses(*[429] * 6)
        with pytest.raises(DifyRateLimited):
            await client.chat(USER, "hi", None)
        assert circuit(client) == "closed" and client.breaker.consecutive_failures == 1
        with pytest.raises(DifyRateLimited):
            await client.chat(USER, "hi", None)
        assert circuit(client) == "open"
        assert rig.standin.request_count == 6


async def test_a_success_resets_the_failure_count() -> None:
    async with dify_rig() as rig:
        client = rig.client(breaker_threshold=3, retry_max_attempts=1)
        for _ in range(3):
            rig.standin.script_statuses(500, 500)
            for _ in range(2):
                with pytest.raises(DifyUnavailable):
                    await client.chat(USER, "hi", None)
            assert (await client.chat(USER, "hi", None)).text
        assert circuit(client) == "closed"


async def test_stream_cut_after_text_is_not_asked_again() -> None:
    async with dify_rig(answer=lambda ctx: "a long answer " * 40) as rig:
        rig.standin.drop_mid_stream(1)
        answer = await rig.client().chat(USER, "hi", None)
        # One Dify turn, whatever arrived of it: a retry would put a second answer into the
        # user's conversation.
        assert answer.ending == "interrupted"
        assert answer.text and ("a long answer " * 40).startswith(answer.text)
        assert len(answer.text) < len("a long answer " * 40)
        assert rig.standin.request_count == 1 and rig.time.sleeps == []
        # The abandoned generation is stopped, for the same user.
        assert [(s.task_id, s.user) for s in rig.standin.stop_requests] == [(answer.task_id, USER)]
