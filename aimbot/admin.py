"""`python main.py users | reset | purge | status`: the operator's commands.

Safe while the bot runs: a running bot owns its state file (flock + SQLite exclusive locking), so
a command asks it over its health port (loopback, with the token it left in DATA_DIR; see
aimbot/ops/admin.py). When no bot answers there, the command opens the state file itself — and if
a bot holds the file but cannot be asked (HEALTH_PORT=0), it says so instead of waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp

from aimbot.config.settings import ConfigError, Settings, load_settings
from aimbot.ops import admin
from aimbot.store import Store, StoreError, StoreLocked

COMMANDS: Final = ("users", "reset", "purge", "status")
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
REQUEST_TIMEOUT: Final = 15.0
DB_FILENAME: Final = "aimbot.sqlite3"  # the same name as aimbot.app.DB_FILENAME

_HELP: Final = {
    "users": "list the users the bot knows, most recently active first",
    "reset": "forget one user's Dify conversation (their next IM starts a new one)",
    "purge": "forget conversations idle for more than DAYS days",
    "status": "the bot's state: running, signed on, health, queues, stored rows",
}


class AdminUnavailable(Exception):
    """Neither the running bot nor the state file could be asked; the message says why."""


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python main.py {command}",
        description=_HELP[command] + ". Safe while the bot runs (it asks the bot through its "
        "health port; a stopped bot's state file is read directly).",
    )
    if command == "reset":
        parser.add_argument("screen_name", metavar="SCREEN_NAME", help="the user to reset")
    if command == "purge":
        parser.add_argument(
            "--older-than",
            dest="days",
            type=float,
            required=True,
            metavar="DAYS",
            help="forget conversations not used for this many days (0 = all)",
        )
    if command == "users":
        parser.add_argument(
            "--limit",
            type=int,
            default=admin.DEFAULT_USERS,
            help=f"at most this many (default {admin.DEFAULT_USERS}, up to {admin.MAX_USERS})",
        )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(".env"),
        metavar="PATH",
        help="the .env file to read (default: ./.env; the environment wins over it)",
    )
    return parser


def main(command: str, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    parser = build_parser(command)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    from aimbot.cli import check_env_file

    try:
        check_env_file(parser, args.env_file)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        settings = load_settings(env_file=args.env_file)
    except ConfigError as e:
        print(f"aimbot: {e}", file=err)
        return EXIT_USAGE
    params = _params(command, args)
    try:
        result = asyncio.run(execute(settings, command, params))
    except admin.AdminError as e:
        print(f"aimbot {command}: {e}", file=err)
        return EXIT_USAGE
    except AdminUnavailable as e:
        print(f"aimbot {command}: {e}", file=err)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True), file=out)
    else:
        for line in render(command, result):
            print(line, file=out)
    return EXIT_OK


def _params(command: str, args: argparse.Namespace) -> dict[str, Any]:
    if command == "users":
        return {"limit": args.limit}
    if command == "reset":
        return {"screen_name": args.screen_name}
    if command == "purge":
        return {"older_than_days": args.days}
    return {}


async def execute(settings: Settings, command: str, params: dict[str, Any]) -> dict[str, Any]:
    """Ask the running bot if there is one; else do it on the state file. Adds "via"."""
    token = admin.read_token(settings.data_dir)
    if token is not None and settings.health_port:
        result = await _ask_bot(settings, command, params, token)
        if result is not None:
            return {**result, "via": "bot"}
    return {**await _on_store(settings, command, params), "via": "state file"}


def _admin_host(host: str) -> str:
    """Where to reach the bot's health port from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def _ask_bot(
    settings: Settings, command: str, params: dict[str, Any], token: str
) -> dict[str, Any] | None:
    """The bot's answer; None when nothing listens (a bot that died and left its token)."""
    url = f"http://{_admin_host(settings.health_host)}:{settings.health_port}/admin/{command}"
    headers = {admin.TOKEN_HEADER: f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            if command in ("users", "status"):
                request = http.get(url, params={k: str(v) for k, v in params.items()})
            else:
                request = http.post(url, json=params)
            async with request as resp:
                body = await resp.json(content_type=None)
                status = resp.status
    except aiohttp.ClientConnectorError:
        return None
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise AdminUnavailable(f"the running bot did not answer at {url}: {e}") from e
    if not isinstance(body, dict):
        raise AdminUnavailable(f"the running bot answered {url} with something other than JSON")
    if status == 400:
        raise admin.AdminError(str(body.get("error", "rejected")))
    if status != 200:
        raise AdminUnavailable(
            f"the bot at {url} refused: HTTP {status} {body.get('error', '')}".rstrip()
        )
    return body


async def _on_store(settings: Settings, command: str, params: dict[str, Any]) -> dict[str, Any]:
    path = settings.data_dir / DB_FILENAME
    if not path.exists():
        if command == "status":
            return {"running": False, "store": None}
        if command == "users":
            return {"users": [], "limit": params["limit"]}
        raise AdminUnavailable(f"no state file at {path} (DATA_DIR): the bot never ran here")
    try:
        store = await Store.open(path, owner=False)
    except StoreLocked as e:
        raise AdminUnavailable(
            f"a bot is running on {settings.data_dir} but cannot be asked (HEALTH_PORT=0, or "
            "started by an older aimbot); stop it, or give it a HEALTH_PORT"
        ) from e
    except StoreError as e:
        raise AdminUnavailable(str(e)) from e
    async with store:
        if command == "status":
            return {
                "running": False,
                "stopped_uncleanly": store.stopped_uncleanly,
                "store": await admin.store_summary(store),
            }
        if command == "users":
            return await admin.list_users(store, params["limit"])
        if command == "reset":
            return await admin.reset_user(store, params["screen_name"])
        return await admin.purge(store, params["older_than_days"], time.time())


# -- text output -----------------------------------------------------------------------------


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(command: str, result: dict[str, Any]) -> list[str]:
    if command == "users":
        users = result.get("users", [])
        lines = [f"{'SCREEN NAME':<24} {'CONVERSATION':<14} {'LAST ACTIVE':<21} PENDING"]
        for user in users:
            active = max(
                (t for t in (user["last_seen"], user["conversation_updated_at"]) if t), default=None
            )
            conversation = (user["conversation_id"] or "-")[:12]
            name, pending = user["screen_name"], user["pending"]
            lines.append(f"{name:<24} {conversation:<14} {_when(active):<21} {pending}")
        lines.append(f"{len(users)} users (via the {result['via']})")
        return lines
    if command == "reset":
        old = result["forgotten_conversation_id"]
        if old:
            return [f"{result['user']}: conversation {old} forgotten; the next IM starts a new one"]
        return [f"{result['user']}: had no conversation; nothing to forget"]
    if command == "purge":
        return [
            f"{result['conversations_forgotten']} conversations idle for more than "
            f"{result['older_than_days']:g} days forgotten"
        ]
    lines = [f"running: {'yes' if result.get('running') else 'no'} (via the {result['via']})"]
    for key, value in result.items():
        if key in ("running", "via", "health", "store"):
            continue
        lines.append(f"{key}: {'-' if value is None else value}")
    health = result.get("health")
    if isinstance(health, dict):
        lines.append(f"health: {health.get('status')}")
        lines += [f"  - {reason}" for reason in health.get("reasons", [])]
    store = result.get("store")
    if isinstance(store, dict):
        lines.append(
            "stored: "
            + ", ".join(f"{k} {v}" for k, v in store.items() if k != "path")
            + f" ({store.get('path')})"
        )
    return lines
