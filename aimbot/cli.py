"""The operator's command line: run the bot, the demo, the doctor, or the chat client.

`main.py` makes the dependencies importable and hands over here, so everything an operator types
ends up in one parser with one set of exit codes: 0 done, 1 failed, 2 usage or configuration
error (every configuration problem listed at once, never a traceback), 130 interrupted.

    python main.py                  run the bot from the environment / .env
    python main.py --check-config   only validate the configuration (secrets masked)
    python main.py doctor           check config, AIM server, AIM login, Dify, data dir
    python main.py --demo           local OSCAR server + Dify stand-in + the bot, on loopback
    python main.py chat ...         the terminal AIM client (same as python -m aimbot.chat)
    python main.py users|reset|purge|status   operator commands (aimbot/admin.py)
    python main.py fleet add NAME   a bot for the docker compose fleet (aimbot/fleet.py)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import urlsplit

from aimbot import __version__
from aimbot.config.settings import ConfigError, Settings, load_settings
from aimbot.utils import eventloop
from aimbot.utils.logger import LoggingSetupError, setup_logging

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
EXIT_INTERRUPTED: Final = 130

DEFAULT_DEMO_PORT: Final = 5190
DEFAULT_ENV_FILE: Final = Path(".env")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description=(
            "aimbot: an AIM/OSCAR bot that answers instant messages through a Dify chat app. "
            "Without a command it runs the bot with the settings from the environment and .env."
        ),
        epilog=(
            "Other commands, each with its own --help: doctor (check the deployment), "
            "chat (terminal AIM client), users, reset, purge, status (operator commands, safe "
            "while the bot runs), fleet (add a bot to the docker compose fleet), test (the test "
            "suite). Settings: .env.example; problems: TROUBLESHOOTING.md."
        ),
    )
    parser.add_argument("--version", action="version", version=f"aimbot {__version__}")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "doctor"),
        default="run",
        help="run (default): the bot; doctor: check the deployment, one line per check",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run a local OSCAR server, a Dify stand-in and the bot on 127.0.0.1",
    )
    parser.add_argument(
        "--aim-port",
        type=_port_or_zero,
        default=None,
        metavar="PORT",
        help=f"--demo only: the OSCAR server's port (default {DEFAULT_DEMO_PORT}; 0 = any free)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print it with secrets masked, and exit",
    )
    parser.add_argument(
        "--skip-login",
        action="store_true",
        help=(
            "doctor only: do not sign on to AIM (a doctor login as the bot's screen name signs "
            "a running bot off for a moment)"
        ),
    )
    _add_env_file(parser)
    return parser


def _add_env_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        metavar="PATH",
        help="the .env file to read (default: ./.env, if there is one; the environment wins)",
    )


def check_env_file(parser: argparse.ArgumentParser, env_file: Path) -> None:
    """A named --env-file must exist: silently using defaults instead would hide the typo."""
    if env_file != DEFAULT_ENV_FILE and not env_file.is_file():
        what = "is a directory" if env_file.is_dir() else "does not exist"
        parser.error(f"--env-file {env_file} {what}")


def build_doctor_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py doctor",
        description=(
            "Check the deployment, one line per link: config, AIM server, AIM login, Dify URL, "
            "Dify key, data dir. Exit code 0 all passed, 1 a check failed, 2 invalid config."
        ),
    )
    parser.add_argument(
        "--skip-login",
        action="store_true",
        help=(
            "do not sign on to AIM (a doctor login as the bot's screen name signs a running bot "
            "off for a moment)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    _add_env_file(parser)
    return parser


def _port_or_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from e
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.demo and args.command != "run":
        parser.error("--demo runs its own bot; it cannot be combined with doctor")
    if args.demo and args.check_config:
        parser.error("--demo brings its own configuration; --check-config checks yours")
    if args.aim_port is not None and not args.demo:
        parser.error("--aim-port only applies to --demo (the bot itself uses AIM_PORT)")
    if args.skip_login and args.command != "doctor":
        parser.error("--skip-login only applies to doctor")
    check_env_file(parser, args.env_file)
    return args


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Install logging as the settings ask, with both secrets registered for redaction."""
    setup_logging(
        level=settings.log_level,
        log_file=settings.log_file,
        log_format=settings.log_format,
        secrets=settings.secrets(),
        max_bytes=settings.log_max_bytes,
        backup_count=settings.log_backup_count,
        stream=stream,
    )


def report_config_error(error: ConfigError | LoggingSetupError, err: TextIO) -> int:
    print(f"aimbot: {error}", file=err, flush=True)
    print('See TROUBLESHOOTING.md, section "Config errors".', file=err, flush=True)
    return EXIT_CONFIG


def config_advice(settings: Settings) -> list[str]:
    """Valid but most likely wrong settings: said at --check-config and at start, not fatal
    (a proxy may serve the API under another path)."""
    advice = []
    path = urlsplit(settings.dify_api_url).path.rstrip("/")
    if not path.endswith("/v1"):
        advice.append(
            f"DIFY_API_URL {settings.dify_api_url} does not end in /v1; the Dify API lives "
            "under /v1 (e.g. https://api.dify.ai/v1 or https://your-host/v1)"
        )
    return advice


def check_config(env_file: Path, out: TextIO, err: TextIO) -> int:
    """`--check-config`: the doctor's first line, plus the effective settings (secrets masked)."""
    try:
        settings = load_settings(env_file=env_file)
    except ConfigError as e:
        return report_config_error(e, err)
    from aimbot.doctor import marks_for

    print(f"{marks_for(out).ok.strip()} config valid", file=out)
    for name, value in settings.describe():
        print(f"  {name}={value}", file=out)
    out.flush()
    for line in config_advice(settings):
        print(f"aimbot: warning: {line}", file=err, flush=True)
    return EXIT_OK


def run_bot(env_file: Path, err: TextIO) -> int:
    # Until the settings are known, warnings (e.g. a misspelt variable) still need a home.
    setup_logging(level="WARNING", stream=err)
    try:
        settings = load_settings(env_file=env_file)
        configure_logging(settings, err)
    except (ConfigError, LoggingSetupError) as e:
        return report_config_error(e, err)
    return eventloop.run(serve(settings), settings.event_loop)


async def serve(settings: Settings) -> int:
    """Run the Application until SIGTERM/SIGINT; failures to start become one clear line.

    Anything unexpected is logged (through the redacting handlers) rather than left to Python's
    default traceback printer, which would bypass redaction.
    """
    from aimbot.app import Application
    from aimbot.ops.health import HealthServerError
    from aimbot.store import StoreCorrupt, StoreError, StoreLocked

    for advice in config_advice(settings):
        log.warning("%s", advice)
    log.info(
        "starting as %s on %s:%d; Dify at %s; data in %s",
        settings.aim_username,
        settings.aim_server,
        settings.aim_port,
        settings.dify_api_url,
        settings.data_dir,
    )
    try:
        return await Application(settings).run()
    except StoreLocked as e:
        log.error('%s (see TROUBLESHOOTING.md, "Multiple instances")', e)
    except StoreCorrupt as e:
        log.error('%s (see TROUBLESHOOTING.md, "Corrupt state database")', e)
    except StoreError as e:
        log.error('%s (see TROUBLESHOOTING.md, "Data dir not writable")', e)
    except HealthServerError as e:
        log.error('%s (see TROUBLESHOOTING.md, "Health check failing")', e)
    except Exception:
        log.critical("aimbot stopped on an unexpected error", exc_info=True)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for main.py and `python -m aimbot`; returns the process exit code."""
    # Everything the bot writes (state, logs) holds users' messages: private to this account.
    os.umask(0o077)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["chat"]:
        from aimbot.chat import main as chat_main

        return chat_main(arguments[1:])
    try:
        return _dispatch(arguments)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_CONFIG
    except KeyboardInterrupt:
        print("aimbot: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def _dispatch(arguments: list[str]) -> int:
    from aimbot import admin

    first = arguments[:1]
    if first and first[0] in admin.COMMANDS:
        return admin.main(first[0], arguments[1:], sys.stdout, sys.stderr)
    if first == ["fleet"]:
        from aimbot.fleet import main as fleet_main

        return fleet_main(arguments[1:], sys.stdout, sys.stderr)
    if first == ["doctor"]:
        from aimbot.doctor import run_doctor

        parser = build_doctor_parser()
        doctor_args = parser.parse_args(arguments[1:])
        check_env_file(parser, doctor_args.env_file)
        return run_doctor(
            doctor_args.env_file,
            skip_login=doctor_args.skip_login,
            out=sys.stdout,
            as_json=doctor_args.json,
        )
    args = _parse(arguments)
    if args.check_config:
        return check_config(args.env_file, sys.stdout, sys.stderr)
    if args.command == "doctor":  # `python main.py --env-file X doctor` (options first)
        from aimbot.doctor import run_doctor

        return run_doctor(args.env_file, skip_login=args.skip_login, out=sys.stdout)
    if args.demo:
        from aimbot.demo import run_demo

        port = DEFAULT_DEMO_PORT if args.aim_port is None else args.aim_port
        return run_demo(args.env_file, aim_port=port, out=sys.stdout, err=sys.stderr)
    return run_bot(args.env_file, sys.stderr)
