"""Application: builds the parts from Settings, runs them, and shuts them down in order.

Shutdown order matters for "never lose a message": stop intake first (new IMs still land in the
inbox), let answers in progress finish within SHUTDOWN_GRACE, give the outbox the rest of the grace
to go out, then sign off. Whatever is left is already in SQLite and is answered or delivered on
the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from aimbot import __version__
from aimbot.api.dify_client import DifyClient, dify_session
from aimbot.bot.aim_handler import AIMHandler
from aimbot.bot.bot import AIMBot
from aimbot.config.settings import Settings
from aimbot.ops import admin
from aimbot.ops.dify_key import DifyKeyWatch
from aimbot.ops.health import HealthServer, HealthStatus, bot_health, health_body
from aimbot.ops.metrics import Metrics
from aimbot.oscar.events import IncomingIM
from aimbot.store import Store
from aimbot.utils.eventloop import running_loop_name
from aimbot.wiring import bot_options, dify_options, handler_options, oscar_client

log = logging.getLogger(__name__)

DB_FILENAME = "aimbot.sqlite3"


@dataclass
class _Parts:
    store: Store
    http: aiohttp.ClientSession
    dify: DifyClient
    handler: AIMHandler
    bot: AIMBot
    health: HealthServer | None


class Application:
    """One bot screen name, from start to clean exit."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stop_requested = asyncio.Event()
        # A second SIGTERM/SIGINT: skip what is left of the grace (work stays in the inbox).
        self.stop_now = asyncio.Event()
        self._parts: _Parts | None = None
        self._handler_task: asyncio.Task[None] | None = None
        self.dify_key = DifyKeyWatch()
        self._started = time.monotonic()
        self._key_task: asyncio.Task[None] | None = None

    @property
    def handler(self) -> AIMHandler:
        assert self._parts is not None, "start() first"
        return self._parts.handler

    @property
    def bot(self) -> AIMBot:
        assert self._parts is not None, "start() first"
        return self._parts.bot

    @property
    def store(self) -> Store:
        assert self._parts is not None, "start() first"
        return self._parts.store

    @property
    def health_port(self) -> int | None:
        if self._parts is None or self._parts.health is None:
            return None
        return self._parts.health.port

    async def start(self) -> None:
        s = self.settings
        store = await Store.open(s.data_dir / DB_FILENAME)
        http = dify_session()
        try:
            dify = DifyClient(
                http, s.dify_api_key.get(), dify_options(s), observer=self.dify_key.observe
            )
            bot_ref: list[AIMBot] = []

            async def on_message(im: IncomingIM) -> None:
                await bot_ref[0].on_message(im)

            handler = AIMHandler(
                handler_options(s),
                lambda: oscar_client(s),
                store,
                on_message,
                metrics=self.metrics,
                on_typing=lambda event: bot_ref[0].on_typing(event),
            )
            bot = AIMBot(bot_options(s), store, dify, handler, metrics=self.metrics)
            bot_ref.append(bot)
            health = None
            if s.health_port:
                token = admin.write_token(s.data_dir)
                api = admin.AdminApi(store, token, self.admin_status, time.time)
                health = HealthServer(
                    s.health_host,
                    s.health_port,
                    self.metrics,
                    self.health,
                    api.routes(),
                    connection_timeout=s.health_connection_timeout,
                    max_connections=s.health_max_connections,
                )
                await health.start()
        except BaseException:
            admin.remove_token(s.data_dir)
            await http.close()
            await store.close()
            raise
        self._parts = _Parts(store, http, dify, handler, bot, health)
        log.info("starting on the %s event loop", running_loop_name())
        waiting = await handler.load_outbox()
        if store.stopped_uncleanly:
            log.warning(
                "the previous run ended without a clean stop (SIGKILL, out of memory, power)"
            )
        pending = await bot.resume(after_crash=store.stopped_uncleanly)
        if waiting or pending:
            log.info("resuming: %d replies to deliver, %d IMs to answer", waiting, pending)
        self._handler_task = asyncio.create_task(handler.run(), name="aim-handler")
        self._key_task = asyncio.create_task(self.dify_key.run(dify.parameters), name="dify-key")

    def health(self) -> HealthStatus:
        parts = self._parts
        if parts is None:
            return bot_health(signed_on=False, dify_circuit_closed=True)
        circuit = parts.dify.circuit_state
        return bot_health(
            signed_on=parts.handler.online,
            dify_circuit_closed=circuit == "closed",
            last_disconnect=parts.handler.last_disconnect,
            circuit_state=circuit,
            login_refused=parts.handler.login_refused,
            dify_key_rejected=self.dify_key.rejected,
        )

    async def admin_status(self) -> dict[str, Any]:
        """What `python main.py status` shows for a running bot."""
        parts = self._parts
        if parts is None:
            return {"running": False}
        code, health = health_body(self.health())
        return {
            "running": True,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "screen_name": self.settings.aim_username,
            "signed_on": parts.handler.online,
            "sessions": parts.handler.sessions,
            "last_disconnect": parts.handler.last_disconnect,
            "healthy": code == 200,
            "health": health,
            "dify_circuit": parts.dify.circuit_state,
            "active_users": parts.bot.active_users,
            "queue_depth": parts.bot.queue_depth,
            "outbox_depth": len(parts.handler.queue),
            "store": await admin.store_summary(parts.store),
        }

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or stop_requested), then shut down; returns the exit code."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        try:
            await self.start()
            assert self._handler_task is not None
            stop_wait = asyncio.create_task(self.stop_requested.wait())
            done, _ = await asyncio.wait(
                {stop_wait, self._handler_task}, return_when=asyncio.FIRST_COMPLETED
            )
            stop_wait.cancel()
            if self._handler_task in done and not self._handler_task.cancelled():
                exc = self._handler_task.exception()
                if exc is not None:
                    log.error("the AIM session handler crashed", exc_info=exc)
                    return 1
            return 0
        finally:
            await self.shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop_requested.is_set():
            log.warning(
                "%s again: shutting down now; unfinished IMs and replies stay stored for the "
                "next start",
                sig.name,
            )
            self.stop_now.set()
        else:
            log.info(
                "%s received: finishing work in progress (up to %.0f s)",
                sig.name,
                self.settings.shutdown_grace,
            )
        self.stop_requested.set()

    async def _unless_stopped_now(self, step: Coroutine[object, object, bool]) -> bool:
        """Run one shutdown step; a second signal cancels it (False, as if it ran out of time)."""
        task = asyncio.ensure_future(step)
        cut = asyncio.ensure_future(self.stop_now.wait())
        try:
            await asyncio.wait({task, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
            await asyncio.gather(cut, return_exceptions=True)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def shutdown(self) -> None:
        parts, self._parts = self._parts, None
        if parts is None:
            return
        deadline = time.monotonic() + self.settings.shutdown_grace
        key_task, self._key_task = self._key_task, None
        if key_task is not None:
            key_task.cancel()
            await asyncio.gather(key_task, return_exceptions=True)
        try:
            finished = await self._unless_stopped_now(parts.bot.drain(self.settings.shutdown_grace))
            if not finished:
                await parts.bot.close()
                log.warning("shutdown grace ran out or was cut; unfinished IMs stay in the inbox")
            remaining = max(0.0, deadline - time.monotonic())
            if (
                parts.handler.online
                and len(parts.handler.queue)
                and not await self._unless_stopped_now(parts.handler.flush(remaining))
            ):
                log.warning(
                    "%d replies not confirmed before exit; kept for the next start",
                    len(parts.handler.queue),
                )
            await parts.handler.stop()
            if self._handler_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        wait = 0.0 if self.stop_now.is_set() else 2.0
                        async with asyncio.timeout(wait):
                            await self._handler_task
                    except TimeoutError:
                        log.warning("AIM session did not end in time; cancelled")
        finally:
            if parts.health is not None:
                await parts.health.stop()
                admin.remove_token(self.settings.data_dir)
            await parts.http.close()
            await parts.store.close()
            log.info("stopped")
