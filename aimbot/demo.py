"""`python main.py --demo`: the whole system on one machine, with nothing to sign up for.

A newcomer should see the bot answer within a minute of cloning, so the demo starts our own OSCAR
server and Dify stand-in on loopback, signs the real bot (the same Application as production) on
to it, and prints how to talk to it. With DIFY_API_KEY set it talks to that real Dify app instead,
so the demo doubles as "does my Dify app behave" without an AIM account.

The demo's AIM settings always override the operator's .env (the demo must never sign on as the
production screen name), and its state goes to ./data/demo unless DATA_DIR is set in the
environment, so it never mixes with a real bot's conversations.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from dotenv import dotenv_values

from aimbot.app import Application
from aimbot.cli import configure_logging, report_config_error
from aimbot.config.settings import PLACEHOLDERS, ConfigError, Settings, load_settings
from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from aimbot.ops.health import HealthServerError
from aimbot.store import StoreError
from aimbot.utils import eventloop
from aimbot.utils.logger import LoggingSetupError, setup_logging

log = logging.getLogger(__name__)

DEMO_HOST: Final = "127.0.0.1"
DEMO_BOT: Final = "aimbot"
DEMO_BOT_PASSWORD: Final = "demo-bot-pass"
DEMO_USER: Final = "you"
DEMO_USER_PASSWORD: Final = "demo-pass"
DEMO_DATA_DIR: Final = Path("data") / "demo"
DEMO_DIFY_KEY: Final = "app-demo-key"
SIGN_ON_TIMEOUT: Final = 30.0
REPO_ROOT: Final = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DifyChoice:
    """Which Dify the demo bot talks to: the stand-in, or a real app the operator configured."""

    use_real_app: bool
    reason: str


def choose_dify(
    environ: Mapping[str, str], env_file_values: Mapping[str, str | None]
) -> DifyChoice:
    """A real Dify app when a usable DIFY_API_KEY is set (environment first, then .env)."""
    key = environ.get("DIFY_API_KEY") or env_file_values.get("DIFY_API_KEY") or ""
    key = key.strip()
    if not key:
        return DifyChoice(False, "no DIFY_API_KEY set")
    if key == PLACEHOLDERS["DIFY_API_KEY"]:
        return DifyChoice(False, "DIFY_API_KEY is still the .env.example placeholder")
    return DifyChoice(True, "DIFY_API_KEY is set")


def demo_overrides(
    environ: Mapping[str, str], *, aim_port: int, dify_url: str | None, dify_key: str | None
) -> dict[str, str]:
    """The settings the demo imposes on top of the environment and .env."""
    overrides = {
        "AIM_USERNAME": DEMO_BOT,
        "AIM_PASSWORD": DEMO_BOT_PASSWORD,
        "AIM_SERVER": DEMO_HOST,
        "AIM_PORT": str(aim_port),
        "DATA_DIR": environ.get("DATA_DIR") or str(DEMO_DATA_DIR),
    }
    # A real bot on this machine may already use port 8080 and the log file named in .env.
    if "HEALTH_PORT" not in environ:
        overrides["HEALTH_PORT"] = "0"
    if "LOG_FILE" not in environ:
        overrides["LOG_FILE"] = ""
    if dify_url is not None and dify_key is not None:
        overrides["DIFY_API_URL"] = dify_url
        overrides["DIFY_API_KEY"] = dify_key
    return overrides


def _shown_path(path: Path) -> str:
    """A path as short as it can be while still working from the current directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def chat_command(port: int) -> str:
    """The exact command that opens the terminal client on the demo, runnable from anywhere."""
    argv = [
        _shown_path(Path(sys.executable)),
        _shown_path(REPO_ROOT / "main.py"),
        "chat",
        "--server",
        DEMO_HOST,
        "--port",
        str(port),
        "--screen-name",
        DEMO_USER,
        "--password",
        DEMO_USER_PASSWORD,
        "--peer",
        DEMO_BOT,
    ]
    return shlex.join(argv)


def instructions(*, port: int, dify_line: str, data_dir: Path, health_port: int | None) -> str:
    lines = [
        "",
        "aimbot demo is running.",
        f"  OSCAR server: {DEMO_HOST}:{port}  (bot {DEMO_BOT!r} is signed on, marked as a bot)",
        f"  Dify: {dify_line}",
        f"  State: {data_dir}",
    ]
    if health_port:
        lines.append(f"  Health: http://127.0.0.1:{health_port}/healthz  metrics: /metrics")
    lines += [
        "Talk to it in this terminal client (in another terminal):",
        f"  {chat_command(port)}",
        f"or with any AIM client (e.g. Pidgin): server {DEMO_HOST}, port {port}, "
        f"screen name {DEMO_USER!r}, password {DEMO_USER_PASSWORD!r}; send an IM to {DEMO_BOT!r}.",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _port_in_use_message(port: int) -> str:
    return (
        f"aimbot demo: port {port} on {DEMO_HOST} is already in use (another demo or AIM "
        "server?). Stop it, or run: python3 main.py --demo --aim-port 0 (any free port)"
    )


def run_demo(env_file: Path, *, aim_port: int, out: TextIO, err: TextIO) -> int:
    setup_logging(level="WARNING", stream=err)
    environ = dict(os.environ)
    file_values = dotenv_values(env_file) if env_file.is_file() else {}
    choice = choose_dify(environ, file_values)
    return eventloop.run(_demo(environ, env_file, choice, aim_port=aim_port, out=out, err=err))


async def _demo(
    environ: Mapping[str, str],
    env_file: Path,
    choice: DifyChoice,
    *,
    aim_port: int,
    out: TextIO,
    err: TextIO,
) -> int:
    server = OscarServer(host=DEMO_HOST, port=aim_port)
    server.add_account(DEMO_BOT, DEMO_BOT_PASSWORD, is_bot=True)
    server.add_account(DEMO_USER, DEMO_USER_PASSWORD)
    standin: DifyStandIn | None = None
    try:
        await server.start()
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            print(_port_in_use_message(aim_port), file=err, flush=True)
        else:
            print(
                f"aimbot demo: cannot listen on {DEMO_HOST}:{aim_port}: {e}", file=err, flush=True
            )
        return 1
    try:
        if not choice.use_real_app:
            standin = DifyStandIn(api_key=DEMO_DIFY_KEY, host=DEMO_HOST, record_requests=False)
            await standin.start()
        overrides = demo_overrides(
            environ,
            aim_port=server.port,
            dify_url=standin.url if standin is not None else None,
            dify_key=standin.api_key if standin is not None else None,
        )
        try:
            settings = load_settings(environ, env_file=env_file, overrides=overrides)
            configure_logging(settings, err)
        except (ConfigError, LoggingSetupError) as e:
            return report_config_error(e, err)
        if standin is not None:
            dify_line = f"local stand-in at {standin.url} (it echoes what you say; {choice.reason})"
        else:
            dify_line = f"your Dify app at {settings.dify_api_url} ({choice.reason})"
        return await _run_bot(settings, server, dify_line, out)
    finally:
        if standin is not None:
            await standin.stop()
        await server.stop()


async def _run_bot(settings: Settings, server: OscarServer, dify_line: str, out: TextIO) -> int:
    """Run the bot until Ctrl-C/SIGTERM; print the instructions once it is signed on."""
    app = Application(settings)
    bot = asyncio.create_task(app.run(), name="demo-bot")
    signed_on = asyncio.create_task(server.wait_online(DEMO_BOT, timeout=SIGN_ON_TIMEOUT))
    try:
        await asyncio.wait({bot, signed_on}, return_when=asyncio.FIRST_COMPLETED)
        if signed_on.done() and signed_on.exception() is None:
            print(
                instructions(
                    port=server.port,
                    dify_line=dify_line,
                    data_dir=settings.data_dir,
                    health_port=app.health_port,
                ),
                file=out,
                flush=True,
            )
        elif not bot.done():
            log.error(
                "the demo bot did not sign on within %.0f s; stopping (see the log above)",
                SIGN_ON_TIMEOUT,
            )
            app.stop_requested.set()
            await bot
            return 1
        return await bot
    except StoreError as e:
        log.error('%s (see TROUBLESHOOTING.md, "Data dir not writable")', e)
        return 1
    except HealthServerError as e:
        log.error('%s (see TROUBLESHOOTING.md, "Health check failing")', e)
        return 1
    except Exception:
        log.critical("the demo stopped on an unexpected error", exc_info=True)
        return 1
    finally:
        signed_on.cancel()
        await asyncio.gather(signed_on, return_exceptions=True)
        if not bot.done():
            bot.cancel()
            await asyncio.gather(bot, return_exceptions=True)
