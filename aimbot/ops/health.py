"""/healthz and /metrics over aiohttp.web, for Docker, orchestrators and Prometheus.

Health means "this bot can answer": signed on to AIM *and* Dify usable (its circuit closed).
A bot that is up but cannot reach Dify answers every user with an apology, which an operator
wants to see as unhealthy. The status callback is read on every request, so /healthz is never
stale, and a failing callback is itself reported as unhealthy instead of breaking the endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from aimbot.ops.metrics import Metrics

logger = logging.getLogger(__name__)

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


class HealthServer:
    """A small aiohttp server; whether to run one at all (HEALTH_PORT=0) is the caller's call."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        status: Callable[[], HealthStatus],
        routes: Sequence[web.RouteDef] = (),
    ) -> None:
        self._routes = list(routes)  # more endpoints on the same port (the operator commands)
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
        runner = web.AppRunner(self._build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
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
