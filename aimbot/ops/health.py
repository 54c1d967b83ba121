"""/healthz and /metrics over aiohttp.web, for Docker, orchestrators and Prometheus.

Health means "this bot can answer": signed on to AIM *and* Dify usable (its circuit closed).
A bot that is up but cannot reach Dify answers every user with an apology, which an operator
wants to see as unhealthy. The status callback is read on every request, so /healthz is never
stale, and a failing callback is itself reported as unhealthy instead of breaking the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from aimbot.ops.metrics import Metrics

logger = logging.getLogger(__name__)

# A probe or a scrape takes milliseconds; a connection that has not finished a request by now is
# stalled or hostile. Prometheus reconnects when a kept-alive connection is closed.
DEFAULT_CONNECTION_TIMEOUT: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 64

CHECK_SIGNED_ON: Final = "aim_signed_on"
CHECK_DIFY_CIRCUIT: Final = "dify_circuit_closed"
CHECK_AIM_LOGIN: Final = "aim_login_accepted"
CHECK_DIFY_KEY: Final = "dify_key_accepted"


class HealthServerError(Exception):
    """The health endpoint could not listen (e.g. the port is taken)."""


@dataclass(frozen=True)
class HealthStatus:
    ok: bool
    checks: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    reasons: list[str] = field(default_factory=list)

    @classmethod
    def from_checks(
        cls, checks: Mapping[str, bool], explanations: Mapping[str, str] | None = None
    ) -> HealthStatus:
        """Healthy when every check passes; each failing check contributes its explanation."""
        explanations = explanations or {}
        reasons = [
            explanations.get(name, f"{name} is failing") for name, ok in checks.items() if not ok
        ]
        return cls(ok=not reasons, checks=MappingProxyType(dict(checks)), reasons=reasons)


def bot_health(
    *,
    signed_on: bool,
    dify_circuit_closed: bool,
    last_disconnect: str | None = None,
    circuit_state: str = "open",
    login_refused: str | None = None,
    dify_key_rejected: str | None = None,
) -> HealthStatus:
    """The bot's health: signed on, its login accepted, Dify's key accepted, Dify's circuit closed.

    The two "accepted" checks name failures that retrying will not fix (a wrong password or a
    suspended account; a wrong or revoked Dify key): the bot keeps retrying, but an operator has
    to act, so they get a reason of their own. The optional details go into the reasons, so that
    a 503 says what happened, not just what.
    """
    offline = "not signed on to the AIM server"
    if last_disconnect:
        offline += f" (last disconnect: {last_disconnect})"
    return HealthStatus.from_checks(
        {
            CHECK_SIGNED_ON: signed_on,
            CHECK_AIM_LOGIN: login_refused is None,
            CHECK_DIFY_KEY: dify_key_rejected is None,
            CHECK_DIFY_CIRCUIT: dify_circuit_closed,
        },
        {
            CHECK_SIGNED_ON: offline,
            CHECK_AIM_LOGIN: (
                f"the AIM server refuses the bot's login ({login_refused}); "
                "check AIM_USERNAME / AIM_PASSWORD and the account"
            ),
            CHECK_DIFY_KEY: f"Dify rejects DIFY_API_KEY ({dify_key_rejected})",
            CHECK_DIFY_CIRCUIT: (
                f"Dify circuit breaker is {circuit_state}: recent Dify queries failed"
            ),
        },
    )


def health_body(status: HealthStatus) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body for a health status (pure, so the contract is tested alone)."""
    checks = dict(status.checks)
    if status.ok:
        return 200, {"status": "ok", "checks": checks}
    reasons = list(status.reasons) or ["unhealthy (no reason given)"]
    return 503, {"status": "unhealthy", "reasons": reasons, "checks": checks}


class _Refused(asyncio.Protocol):
    """Over the connection cap: closed at once, before any byte is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            transport.abort()  # a reset, not a FIN: nothing is owed to a flood
        else:
            transport.close()


class _BoundedSite(web.TCPSite):
    """A TCPSite that refuses connections past a cap (aiohttp accepts without limit).

    The count is aiohttp's own list of open connections, so a connection leaves it however it
    ends: answered, timed out, or reset by the peer.
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int) -> None:
        super().__init__(runner, host, port)
        self._max_connections = max_connections
        self.refused = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, nothing more
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= self._max_connections:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    logger.warning(
                        "health server: %d connections refused (HEALTH_MAX_CONNECTIONS=%d open)",
                        self.refused,
                        self._max_connections,
                    )
                return _Refused()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, self._host, self._port)


class HealthServer:
    """A small aiohttp server; whether to run one at all (HEALTH_PORT=0) is the caller's call.

    Anyone who can reach the port may connect (HEALTH_HOST=0.0.0.0 in Docker), so connections
    are bounded in time and number: one that has not completed a request within
    ``connection_timeout`` seconds (idle, or half-sent on purpose) is closed, and past
    ``max_connections`` open ones new connections are refused; the bot's own sockets (AIM, Dify)
    never compete with a flood for file descriptors.
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        status: Callable[[], HealthStatus],
        routes: Sequence[web.RouteDef] = (),
        *,
        connection_timeout: float = DEFAULT_CONNECTION_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._routes = list(routes)  # more endpoints on the same port (the operator commands)
        if not connection_timeout > 0:
            raise ValueError(f"connection_timeout must be > 0, got {connection_timeout}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self._connection_timeout = connection_timeout
        self._max_connections = max_connections
        self._host = host
        self._requested_port = port
        self._bound_port: int | None = None
        self._metrics = metrics
        self._status = status
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port actually bound once started (an ephemeral one when asked for 0)."""
        return self._requested_port if self._bound_port is None else self._bound_port

    @property
    def open_connections(self) -> int:
        """Connections open now (answered, waiting or stalled); at most max_connections."""
        runner = self._runner
        server = runner.server if runner is not None else None
        return 0 if server is None else len(server.connections)

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        app.add_routes(self._routes)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        # No access log: an orchestrator probing every few seconds would drown the real lines.
        # keepalive_timeout also runs from the moment a connection opens until its first
        # request is complete, so it closes idle and half-sent connections alike.
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self._connection_timeout,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = _BoundedSite(runner, self._host, self._requested_port, self._max_connections)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise HealthServerError(
                f"cannot serve health checks on {self._host}:{self._requested_port}: "
                f"{e.strerror or e}"
            ) from e
        self._runner = runner
        address = runner.addresses[0]
        self._bound_port = int(address[1])
        logger.info("health and metrics on %s (/healthz, /metrics)", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            logger.info("health server stopped")

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _current_status(self) -> HealthStatus:
        try:
            return self._status()
        except Exception as e:
            logger.exception("health status callback failed")
            return HealthStatus(
                ok=False, reasons=[f"health check itself failed: {type(e).__name__}"]
            )

    async def _healthz(self, request: web.Request) -> web.Response:
        code, body = health_body(self._current_status())
        return web.json_response(body, status=code, headers={"Cache-Control": "no-store"})

    async def _metrics_page(self, request: web.Request) -> web.Response:
        payload, content_type = self._metrics.render()
        response = web.Response(body=payload)
        # The exposition content type carries parameters (version, charset) that aiohttp's
        # content_type argument would reject, so the header is set whole.
        response.headers["Content-Type"] = content_type
        return response
