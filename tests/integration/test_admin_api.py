"""The /admin/ routes of a running bot: only loopback callers holding the token get anything."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aimbot.ops import admin
from aimbot.ops.health import HealthServer
from aimbot.ops.metrics import Metrics
from aimbot.store import Store
from tests.helpers.ops import SwitchableHealth

TOKEN = "test-token-8d7f"


async def _status() -> dict[str, Any]:
    return {"running": True}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    store = await Store.open(tmp_path / "s.db")
    api = admin.AdminApi(store, TOKEN, _status, time.time)
    health = HealthServer("127.0.0.1", 0, Metrics(), SwitchableHealth(), api.routes())
    await health.start()
    try:
        yield health.url, store
    finally:
        await health.stop()
        await store.close()


async def call(url: str, method: str = "GET", token: str | None = TOKEN, **kw: Any) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.request(method, url, headers=headers, **kw) as resp,
    ):
        return resp.status, await resp.json()


async def test_the_token_is_required(server: tuple[str, Store]) -> None:
    url, _ = server
    assert (await call(f"{url}/admin/status", token=None))[0] == 401
    assert (await call(f"{url}/admin/status", token="wrong"))[0] == 401
    assert await call(f"{url}/admin/status") == (200, {"running": True})


async def test_inputs_are_checked_where_they_enter(server: tuple[str, Store]) -> None:
    url, store = server
    await store.set_conversation("kim", "c-1", time.time())
    status, body = await call(f"{url}/admin/reset", "POST", json={"screen_name": "\x00"})
    assert status == 400 and "not a screen name" in body["error"]
    status, body = await call(f"{url}/admin/purge", "POST", json={"older_than_days": -1})
    assert status == 400 and "older_than_days" in body["error"]
    status, body = await call(f"{url}/admin/purge", "POST", data=b"x" * 10_000)
    assert status == 400 and "at most 4096 bytes" in body["error"]
    status, body = await call(f"{url}/admin/users?limit=0")
    assert status == 400 and "limit" in body["error"]
    status, body = await call(f"{url}/admin/reset", "POST", json={"screen_name": "K im"})
    assert (status, body) == (200, {"user": "kim", "forgotten_conversation_id": "c-1"})
    assert await store.get_conversation("kim") is None


def test_only_loopback_peers_count_as_local() -> None:
    assert admin._is_loopback("127.0.0.1") and admin._is_loopback("::1")
    assert not admin._is_loopback("172.17.0.1") and not admin._is_loopback(None)
    assert not admin._is_loopback("not-an-ip")


def test_the_token_file_is_private_and_goes_away(tmp_path: Path) -> None:
    token = admin.write_token(tmp_path)
    path = tmp_path / admin.TOKEN_FILENAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert admin.read_token(tmp_path) == token
    admin.remove_token(tmp_path)
    assert admin.read_token(tmp_path) is None
