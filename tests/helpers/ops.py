"""Shared helpers for the ops area: settings for tests, logging isolation, a live health server.

Other areas may use `make_settings()` to get a valid Settings with a few values changed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import TextIO

from aimbot.config.settings import Settings, load_settings
from aimbot.ops.health import HealthServer, HealthStatus, bot_health
from aimbot.ops.metrics import Metrics

REPO_ROOT = Path(__file__).resolve().parents[2]

# Long, distinctive values: a test that finds them in output has found a real leak.
TEST_PASSWORD = "pw-Zq8$secret'\"\\x"
TEST_API_KEY = "app-k3y-0f-th3-t3st-suite"

REQUIRED_ENV: dict[str, str] = {
    "AIM_USERNAME": "Test Bot",
    "AIM_PASSWORD": TEST_PASSWORD,
    "DIFY_API_KEY": TEST_API_KEY,
}


def settings_env(**values: str) -> dict[str, str]:
    """The required variables plus the given ones (keyword = ENV_NAME)."""
    return {**REQUIRED_ENV, **values}


def make_settings(**values: str) -> Settings:
    """A valid Settings read from a clean environment (no .env), with the given variables."""
    return load_settings(settings_env(**values), env_file=None)


@contextmanager
def root_logging_restored() -> Iterator[None]:
    """Put the root logger back as it was, so that one test's setup_logging cannot leak."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


@contextmanager
def terminal() -> Iterator[tuple[TextIO, int]]:
    """A real pseudo-terminal: (text stream on the terminal side, fd to read what it shows)."""
    controller, device = os.openpty()
    stream = os.fdopen(device, "w", buffering=1, encoding="utf-8")
    try:
        yield stream, controller
    finally:
        stream.close()
        os.close(controller)


def read_terminal(controller: int) -> str:
    """Everything written to the terminal so far (the writer must have flushed)."""
    chunks = []
    os.set_blocking(controller, False)
    while True:
        try:
            chunk = os.read(controller, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


class SwitchableHealth:
    """A status callback whose answer a test changes between requests."""

    def __init__(self) -> None:
        self.signed_on = True
        self.dify_circuit_closed = True
        self.error: Exception | None = None

    def __call__(self) -> HealthStatus:
        if self.error is not None:
            raise self.error
        return bot_health(signed_on=self.signed_on, dify_circuit_closed=self.dify_circuit_closed)


@asynccontextmanager
async def running_health_server(
    status: Callable[[], HealthStatus], metrics: Metrics | None = None
) -> AsyncIterator[HealthServer]:
    """A started HealthServer on 127.0.0.1 and an ephemeral port, stopped afterwards."""
    server = HealthServer("127.0.0.1", 0, metrics or Metrics(), status)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def load_compose_checker() -> ModuleType:
    """.ci/check_compose.py as a module (.ci is not a package)."""
    path = REPO_ROOT / ".ci" / "check_compose.py"
    spec = importlib.util.spec_from_file_location("check_compose", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_compose", module)
    spec.loader.exec_module(module)
    return module
