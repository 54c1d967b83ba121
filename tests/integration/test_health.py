"""/healthz and /metrics on a real aiohttp server (127.0.0.1, ephemeral port), real client."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aimbot.ops.health import (
    CHECK_AIM_LOGIN,
    CHECK_DIFY_CIRCUIT,
    CHECK_DIFY_KEY,
    CHECK_SIGNED_ON,
    HealthServer,
    HealthServerError,
    HealthStatus,
    bot_health,
    health_body,
)
from aimbot.ops.metrics import Metrics
from tests.helpers.ops import REPO_ROOT, SwitchableHealth, running_health_server

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def get_json(client: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with client.get(url) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def test_healthy_when_signed_on_and_dify_circuit_closed(
    client: aiohttp.ClientSession,
) -> None:
    health = SwitchableHealth()
    async with running_health_server(health) as server:
        assert server.port > 0
        status, body = await get_json(client, f"{server.url}/healthz")
    assert status == 200
    assert body == {
        "status": "ok",
        "checks": {
            CHECK_SIGNED_ON: True,
            CHECK_AIM_LOGIN: True,
            CHECK_DIFY_KEY: True,
            CHECK_DIFY_CIRCUIT: True,
        },
    }


@pytest.mark.parametrize(
    ("signed_on", "circuit_closed", "reasons"),
    [
        (False, True, ["not signed on to the AIM server"]),
        (True, False, ["Dify circuit breaker is open: recent Dify queries failed"]),
        (
            False,
            False,
            [
                "not signed on to the AIM server",
                "Dify circuit breaker is open: recent Dify queries failed",
            ],
        ),
    ],
)
async def test_unhealthy_is_503_with_the_reasons(
    client: aiohttp.ClientSession, signed_on: bool, circuit_closed: bool, reasons: list[str]
) -> None:
    health = SwitchableHealth()
    async with running_health_server(health) as server:
        health.signed_on, health.dify_circuit_closed = signed_on, circuit_closed
        status, body = await get_json(client, f"{server.url}/healthz")
        assert status == 503
        assert body["status"] == "unhealthy"
        assert body["reasons"] == reasons
        assert body["checks"] == {
            CHECK_SIGNED_ON: signed_on,
            CHECK_AIM_LOGIN: True,
            CHECK_DIFY_KEY: True,
            CHECK_DIFY_CIRCUIT: circuit_closed,
        }
        # Health is read on every request: recovery shows at once.
        health.signed_on = health.dify_circuit_closed = True
        status, _ = await get_json(client, f"{server.url}/healthz")
        assert status == 200


async def test_a_failing_status_callback_is_reported_not_crashed(
    client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    health = SwitchableHealth()
    async with running_health_server(health) as server:
        health.error = RuntimeError("store is locked")
        status, body = await get_json(client, f"{server.url}/healthz")
        assert status == 503
        assert body["reasons"] == ["health check itself failed: RuntimeError"]
        health.error = None
        status, _ = await get_json(client, f"{server.url}/healthz")
        assert status == 200
    assert "health status callback failed" in caplog.text


async def test_metrics_are_prometheus_text_with_every_series(
    client: aiohttp.ClientSession,
) -> None:
    metrics = Metrics()
    async with running_health_server(SwitchableHealth(), metrics) as server:
        metrics.ims_in.inc(3)
        metrics.ims_out.inc(2)
        metrics.ims_dropped.labels(reason="blocked").inc()
        metrics.dify_latency.observe(0.3)
        metrics.dify_latency.observe(42.0)
        metrics.dify_errors.labels(type="timeout").inc(2)
        metrics.dify_errors.labels(type="rate_limited").inc()
        metrics.friendly_errors.inc()
        metrics.reconnects.inc()
        metrics.online.set(1)
        metrics.queue_depth.set(4)
        metrics.active_users.set(2)
        metrics.outbox_depth.set(5)
        async with client.get(f"{server.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    expected = {
        ("aimbot_ims_received_total", ()): 3,
        ("aimbot_ims_sent_total", ()): 2,
        ("aimbot_ims_dropped_total", (("reason", "blocked"),)): 1,
        ("aimbot_dify_request_seconds_count", ()): 2,
        ("aimbot_dify_request_seconds_sum", ()): 42.3,
        ("aimbot_dify_request_seconds_bucket", (("le", "0.5"),)): 1,
        ("aimbot_dify_request_seconds_bucket", (("le", "+Inf"),)): 2,
        ("aimbot_dify_errors_total", (("type", "timeout"),)): 2,
        ("aimbot_dify_errors_total", (("type", "rate_limited"),)): 1,
        ("aimbot_friendly_errors_total", ()): 1,
        ("aimbot_reconnects_total", ()): 1,
        ("aimbot_online", ()): 1,
        ("aimbot_queue_depth", ()): 4,
        ("aimbot_active_users", ()): 2,
        ("aimbot_outbox_depth", ()): 5,
        ("aimbot_dify_circuit_open", ()): 0,
    }
    for key, value in expected.items():
        assert samples.get(key) == pytest.approx(value), key
    assert any(name == "aimbot_build_info" for name, _ in samples)


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.ims_in.inc(5)
    assert b"aimbot_ims_received_total 5.0" in first.render()[0]
    assert b"aimbot_ims_received_total 0.0" in second.render()[0]


async def test_unknown_paths_are_404(client: aiohttp.ClientSession) -> None:
    async with running_health_server(SwitchableHealth()) as server:
        async with client.get(f"{server.url}/admin") as response:
            assert response.status == 404
        async with client.post(f"{server.url}/healthz") as response:
            assert response.status == 405


async def test_two_servers_get_different_ephemeral_ports() -> None:
    async with (
        running_health_server(SwitchableHealth()) as first,
        running_health_server(SwitchableHealth()) as second,
    ):
        assert first.port != second.port
        assert min(first.port, second.port) > 0


async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer("127.0.0.1", port, Metrics(), SwitchableHealth())
        with pytest.raises(
            HealthServerError, match=f"cannot serve health checks on 127.0.0.1:{port}"
        ):
            await server.start()
        await server.stop()  # nothing started: still fine


async def test_stop_closes_the_port_and_is_idempotent(client: aiohttp.ClientSession) -> None:
    server = HealthServer("127.0.0.1", 0, Metrics(), SwitchableHealth())
    await server.start()
    url = f"{server.url}/healthz"
    status, _ = await get_json(client, url)
    assert status == 200
    await server.stop()
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.get(url):
            pass


def test_health_body_always_gives_a_reason_when_unhealthy() -> None:
    assert health_body(HealthStatus(ok=False)) == (
        503,
        {"status": "unhealthy", "reasons": ["unhealthy (no reason given)"], "checks": {}},
    )
    status = HealthStatus.from_checks({"disk": True, "queue": False})
    assert status.ok is False
    assert status.reasons == ["queue is failing"]
    assert HealthStatus.from_checks({"disk": True}).ok is True


# --- the container's HEALTHCHECK command, run for real against a live server ------------------


def healthcheck_code(path: str, pattern: str) -> str:
    text = (REPO_ROOT / path).read_text(encoding="utf-8")
    match = re.search(pattern, text)
    assert match, f"no health check one-liner found in {path}"
    return match.group(1)


DOCKERFILE_CHECK = healthcheck_code("Dockerfile", r'CMD \["python", "-c", "(.+)"\]\n')
COMPOSE_CHECK = healthcheck_code("docker-compose.yml", r'- "(import os, sys, urllib.+)"\n')


async def run_check(code: str, health_port: str) -> int:
    env = {**os.environ, "HEALTH_PORT": health_port}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30):
        return await process.wait()


def test_dockerfile_and_compose_use_the_same_check() -> None:
    assert DOCKERFILE_CHECK == COMPOSE_CHECK
    assert "urllib.request" in DOCKERFILE_CHECK and "/healthz" in DOCKERFILE_CHECK


async def test_container_healthcheck_follows_healthz() -> None:
    health = SwitchableHealth()
    async with running_health_server(health) as server:
        port = str(server.port)
        assert await run_check(DOCKERFILE_CHECK, port) == 0
        health.dify_circuit_closed = False
        assert await run_check(DOCKERFILE_CHECK, port) != 0
    assert await run_check(DOCKERFILE_CHECK, port) != 0  # nobody listening any more
    assert await run_check(DOCKERFILE_CHECK, "0") == 0  # endpoint switched off: nothing to ask


def test_a_refused_login_and_a_rejected_key_each_name_their_reason() -> None:
    code, body = health_body(
        bot_health(
            signed_on=False,
            dify_circuit_closed=True,
            last_disconnect="sign-on failed: login refused: incorrect password (code 0x0005)",
            login_refused="login refused: incorrect password (code 0x0005)",
            dify_key_rejected="401 unauthorized",
        )
    )
    assert code == 503
    assert body["checks"] == {
        CHECK_SIGNED_ON: False,
        CHECK_AIM_LOGIN: False,
        CHECK_DIFY_KEY: False,
        CHECK_DIFY_CIRCUIT: True,
    }
    assert body["reasons"] == [
        "not signed on to the AIM server (last disconnect: sign-on failed: login refused: "
        "incorrect password (code 0x0005))",
        "the AIM server refuses the bot's login (login refused: incorrect password "
        "(code 0x0005)); check AIM_USERNAME / AIM_PASSWORD and the account",
        "Dify rejects DIFY_API_KEY (401 unauthorized)",
    ]


# --- issue 13 item 8: a flood of stalled connections cannot pin the bot's descriptors ---------


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Until the server has closed the connection (EOF, or a reset for a refused one)."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


async def test_half_sent_and_idle_connections_are_closed_and_capped(
    client: aiohttp.ClientSession,
) -> None:
    timeout, cap, flood = 0.5, 50, 500
    server = HealthServer(
        "127.0.0.1",
        0,
        Metrics(),
        SwitchableHealth(),
        connection_timeout=timeout,
        max_connections=cap,
    )
    await server.start()
    writers: list[asyncio.StreamWriter] = []
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        readers = []
        for n in range(flood):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            if n % 2:  # half a request, never finished; the others send nothing at all
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n")
            readers.append(reader)
            writers.append(writer)
            assert server.open_connections <= cap
        # Every one of them is closed by the server, within the timeout (plus scheduling).
        async with asyncio.timeout(15):
            await asyncio.gather(*(_until_closed(r) for r in readers))
        assert loop.time() - started < timeout + 10
        assert server.open_connections == 0
        # ... and an ordinary probe is answered as before.
        status, body = await get_json(client, f"{server.url}/healthz")
        assert status == 200 and body["status"] == "ok"
    finally:
        for writer in writers:
            writer.close()
        await server.stop()


async def test_a_kept_alive_client_is_served_many_requests_on_one_connection(
    client: aiohttp.ClientSession,
) -> None:
    server = HealthServer(
        "127.0.0.1", 0, Metrics(), SwitchableHealth(), connection_timeout=30.0, max_connections=4
    )
    await server.start()
    try:
        for _ in range(10):  # one kept-alive connection, many requests
            status, _ = await get_json(client, f"{server.url}/healthz")
            assert status == 200
        assert server.open_connections <= 4
    finally:
        await server.stop()
