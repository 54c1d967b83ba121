"""Operator commands, the one implementation: list users, reset one, purge old state.

The state file belongs to one process (an flock per DATA_DIR and SQLite's exclusive locking), so
a command cannot open it while the bot runs. Instead the running bot serves the same operations
on its health port under /admin/, and the command asks it there; a stopped bot's file is opened
directly. Both paths run the functions below, so they cannot disagree.

The admin routes answer only loopback peers that present the token the bot wrote into DATA_DIR
(0600) at start: whoever can read the data directory may steer the bot, nobody else — not a
browser page on the same machine (it cannot read the token), not the network (HEALTH_HOST is
0.0.0.0 in Docker, so loopback alone would not do).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from aimbot.oscar.snacs import normalize_screen_name
from aimbot.store import Store

log = logging.getLogger(__name__)

TOKEN_FILENAME: Final = "admin.token"
TOKEN_HEADER: Final = "Authorization"
MAX_BODY_BYTES: Final = 4096
MAX_USERS: Final = 10_000
DEFAULT_USERS: Final = 100
MAX_SCREEN_NAME: Final = 97
MAX_DAYS: Final = 36_500.0
DAY: Final = 86_400.0

StatusSource = Callable[[], Awaitable[dict[str, Any]]]


class AdminError(Exception):
    """A command's input is not acceptable (the message says why); HTTP 400 on the wire."""


# -- the operations --------------------------------------------------------------------------


def check_screen_name(raw: object) -> str:
    """The normalised key of an operator-given screen name, or AdminError."""
    if not isinstance(raw, str):
        raise AdminError("screen_name must be text")
    key = normalize_screen_name(raw.strip())
    if not key or len(key) > MAX_SCREEN_NAME or not all(c.isprintable() for c in key):
        raise AdminError(f"not a screen name: {raw[:MAX_SCREEN_NAME]!r}")
    return key


def check_days(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise AdminError("older_than_days must be a number")
    days = float(raw)
    if not math.isfinite(days) or not 0 <= days <= MAX_DAYS:
        raise AdminError(f"older_than_days must be from 0 to {MAX_DAYS:g}, got {raw!r}")
    return days


def check_limit(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_USERS:
        raise AdminError(f"limit must be a whole number from 1 to {MAX_USERS}, got {raw!r}")
    return raw


async def list_users(store: Store, limit: int) -> dict[str, Any]:
    rows = await store.users(check_limit(limit))
    return {
        "users": [
            {
                "user": row.user_key,
                "screen_name": row.screen_name or row.user_key,
                "conversation_id": row.conversation_id,
                "conversation_updated_at": row.conversation_updated_at,
                "last_seen": row.last_seen,
                "pending": row.pending,
            }
            for row in rows
        ],
        "limit": limit,
    }


async def reset_user(store: Store, screen_name: object) -> dict[str, Any]:
    key = check_screen_name(screen_name)
    forgotten = await store.forget_conversation(key)
    log.info("operator reset %s: conversation %s", key, "forgotten" if forgotten else "none")
    return {"user": key, "forgotten_conversation_id": forgotten}


async def purge(store: Store, older_than_days: object, now: float) -> dict[str, Any]:
    days = check_days(older_than_days)
    count = await store.purge_conversations(now - days * DAY)
    log.info("operator purge: %d conversations idle for more than %g days forgotten", count, days)
    return {"older_than_days": days, "conversations_forgotten": count}


async def store_summary(store: Store) -> dict[str, Any]:
    return {"path": str(store.path), **await store.counts()}


# -- the token -------------------------------------------------------------------------------


def write_token(data_dir: Path) -> str:
    """A fresh token in DATA_DIR/admin.token, readable by the owner only."""
    token = secrets.token_urlsafe(32)
    path = data_dir / TOKEN_FILENAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token)
    return token


def remove_token(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / TOKEN_FILENAME).unlink()


def read_token(data_dir: Path) -> str | None:
    """The running bot's token, or None when no bot left one (never started, or stopped)."""
    try:
        text = (data_dir / TOKEN_FILENAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


# -- the endpoint ----------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class AdminApi:
    """The /admin/ routes of a running bot (served by the HealthServer)."""

    def __init__(self, store: Store, token: str, status: StatusSource, clock: Callable[[], float]):
        self._store = store
        self._token = token
        self._status = status
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/status", self._handle),
            web.get("/admin/users", self._handle),
            web.post("/admin/reset", self._handle),
            web.post("/admin/purge", self._handle),
        ]

    async def _handle(self, request: web.Request) -> web.Response:
        if not _is_loopback(request.remote):
            return _json({"error": "the admin endpoint answers loopback only"}, 403)
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
            return _json({"error": "missing or wrong admin token"}, 401)
        try:
            params = await _params(request)
            result = await self.perform(request.path.rsplit("/", 1)[1], params)
        except AdminError as e:
            return _json({"error": str(e)}, 400)
        return _json(result, 200)

    async def perform(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "status":
            return await self._status()
        if command == "users":
            return await list_users(self._store, params.get("limit", DEFAULT_USERS))
        if command == "reset":
            return await reset_user(self._store, params.get("screen_name"))
        if command == "purge":
            return await purge(self._store, params.get("older_than_days"), self._clock())
        raise AdminError(f"unknown command {command!r}")


async def _params(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        params: dict[str, Any] = {}
        if "limit" in request.query:
            try:
                params["limit"] = int(request.query["limit"])
            except ValueError as e:
                raise AdminError("limit must be a whole number") from e
        return params
    if request.content_length is None or request.content_length > MAX_BODY_BYTES:
        raise AdminError(f"send a JSON object of at most {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise AdminError("the body is not JSON") from e
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


def _json(body: Mapping[str, Any], status: int) -> web.Response:
    return web.json_response(dict(body), status=status, headers={"Cache-Control": "no-store"})
