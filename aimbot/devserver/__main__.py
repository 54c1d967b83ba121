"""`python -m aimbot.devserver`: run the local OSCAR server (or, with `dify`, the Dify stand-in).

The demo and manual testing need a server that starts in one command with accounts on the
command line; nothing here is meant for the public internet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from aimbot.devserver.oscar_server import OscarServer
from aimbot.utils import eventloop


def _credentials(text: str) -> tuple[str, str]:
    screen_name, sep, password = text.partition(":")
    if not sep or not screen_name.strip() or not password:
        raise argparse.ArgumentTypeError(
            f"expected SCREENNAME:PASSWORD, got {text.split(':')[0]!r}…"
        )
    return screen_name, password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aimbot.devserver",
        description="Local OSCAR (AIM) server for demos and tests. "
        "`python -m aimbot.devserver dify --help` runs the Dify stand-in instead.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5190, help="port (0 = any free port)")
    parser.add_argument(
        "--advertise",
        default=None,
        metavar="HOST",
        help="host name clients are told to reach BOS at (default: --host)",
    )
    parser.add_argument(
        "--user", action="append", default=[], type=_credentials, metavar="SN:PW", help="account"
    )
    parser.add_argument(
        "--bot",
        action="append",
        default=[],
        type=_credentials,
        metavar="SN:PW",
        help="account flagged as a bot (exempt from rate limits)",
    )
    parser.add_argument(
        "--no-rate-limits",
        action="store_true",
        help="no rate limits: advertise classes without thresholds and enforce none",
    )
    parser.add_argument("--max-message-bytes", type=int, default=512, metavar="N")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    server = OscarServer(
        host=args.host,
        port=args.port,
        enforce_rate_limits=not args.no_rate_limits,
        max_message_bytes=args.max_message_bytes,
        advertised_host=args.advertise,
    )
    for screen_name, password in args.user:
        server.add_account(screen_name, password)
    for screen_name, password in args.bot:
        server.add_account(screen_name, password, is_bot=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as e:
        print(f"aimbot devserver: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    names = [sn for sn, _ in args.user] + [f"{sn} (bot)" for sn, _ in args.bot]
    print(
        f"aimbot devserver: OSCAR server listening on {server.host}:{server.port} "
        f"(accounts: {', '.join(names) or 'none'}; "
        f"rate limits {'off' if args.no_rate_limits else 'on'})",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["dify"]:
        # Imported only here: the stand-in is a separate tool with its own dependencies.
        module = importlib.import_module("aimbot.devserver.dify_standin")
        dify_main: Callable[[list[str]], int] = module.main
        return dify_main(args[1:])
    options = _parser().parse_args(args)
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        return eventloop.run(_serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
