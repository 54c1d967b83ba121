"""The "direct path" peer for ``bench latency``: a bare OscarClient that echoes every IM back.

It runs in its own process, like the bot, so both paths cross the same process boundaries and
differ only in what the bot does with a message. Configured through the environment so that no
password shows up in a process listing: BENCH_OSCAR_PORT, BENCH_ECHO_NAME, BENCH_ECHO_PASSWORD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from aimbot.oscar.client import OscarClient
from aimbot.oscar.errors import NotConnected
from aimbot.oscar.events import IncomingIM, SessionEnded

log = logging.getLogger(__name__)


async def echo(name: str, password: str, port: int) -> int:
    client = OscarClient(name, password, "127.0.0.1", port, throttle=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await client.connect()
    serving = asyncio.create_task(_serve(client), name="echo")
    stopping = asyncio.create_task(stop.wait(), name="echo-stop")
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    await client.close()
    results = await asyncio.gather(serving, stopping, return_exceptions=True)
    if isinstance(results[0], Exception):
        log.error("echo peer failed", exc_info=results[0])
        return 1
    return 0


async def _serve(client: OscarClient) -> None:
    async for event in client.events():
        if isinstance(event, IncomingIM):
            try:
                await client.send_im(event.sender, event.text)
            except NotConnected:
                return
        elif isinstance(event, SessionEnded):
            return


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    try:
        port = int(os.environ["BENCH_OSCAR_PORT"])
        name = os.environ["BENCH_ECHO_NAME"]
        password = os.environ["BENCH_ECHO_PASSWORD"]
    except (KeyError, ValueError) as e:
        sys.stderr.write(f"echo peer: missing or bad environment variable: {e}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(echo(name, password, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
