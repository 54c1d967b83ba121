"""The reference peers for ``bench latency``: bare OscarClients in their own process.

- "echo" (the issue's direct path) sends every IM straight back.
- "dify" is the floor of any Dify bridge: it sends every IM to the Dify stand-in (one streaming
  request, plain aiohttp, no retries, no state, no formatting) and sends the answer back. What the
  bot's path costs above this peer's is the bot's own overhead; what this peer costs above the
  echo is the Dify round trip, which no bridge can skip. It keeps to the bot's cap on concurrent
  Dify requests (DIFY_MAX_CONCURRENCY), so that both answer the same load the same way: with
  fewer requests in flight each costs more (at the throughput bench's load this peer's CPU per
  reply was 3.8 % higher capped at 64 than at aiohttp's own 100; docs/benchmarks.md, "Session
  16"), and a floor allowed more of them than the bot compared load shapes, not programs.

Each runs in its own process, like the bot, so all paths cross the same process boundaries.
Configured through the environment so that no secret shows up in a process listing:
BENCH_OSCAR_PORT, BENCH_ECHO_NAME, BENCH_ECHO_PASSWORD, and for "dify" BENCH_DIFY_URL,
BENCH_DIFY_KEY and BENCH_DIFY_CONCURRENCY; BENCH_PEER_MODE picks the peer (default echo).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import aiohttp

from aimbot.oscar.client import OscarClient
from aimbot.oscar.errors import NotConnected
from aimbot.oscar.events import IncomingIM, SessionEnded
from aimbot.utils import eventloop

log = logging.getLogger(__name__)


Answer = Callable[[str, str], Awaitable[str]]


async def echo(name: str, password: str, port: int, answer: Answer) -> int:
    client = OscarClient(name, password, "127.0.0.1", port, throttle=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await client.connect()
    serving = asyncio.create_task(_serve(client, answer), name="echo")
    stopping = asyncio.create_task(stop.wait(), name="echo-stop")
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    await client.close()
    results = await asyncio.gather(serving, stopping, return_exceptions=True)
    if isinstance(results[0], Exception):
        log.error("echo peer failed", exc_info=results[0])
        return 1
    return 0


async def _serve(client: OscarClient, answer: Answer) -> None:
    """Answer every IM in a task of its own, so that one slow answer never holds up another
    (as in the bot); the tasks are kept, and awaited at the end."""
    replies: set[asyncio.Task[None]] = set()

    async def reply(im: IncomingIM) -> None:
        with contextlib.suppress(NotConnected):
            await client.send_im(im.sender, await answer(im.sender, im.text))

    try:
        async for event in client.events():
            if isinstance(event, IncomingIM):
                task = asyncio.create_task(reply(event))
                replies.add(task)
                task.add_done_callback(replies.discard)
            elif isinstance(event, SessionEnded):
                return
    finally:
        for task in replies:
            task.cancel()
        results = await asyncio.gather(*replies, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("a reply failed", exc_info=result)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    try:
        port = int(os.environ["BENCH_OSCAR_PORT"])
        name = os.environ["BENCH_ECHO_NAME"]
        password = os.environ["BENCH_ECHO_PASSWORD"]
        # The bot's own EVENT_LOOP: the two paths are compared on the same runtime.
        loop = eventloop.parse_choice(os.environ.get("EVENT_LOOP", "auto"))
        dify = os.environ.get("BENCH_PEER_MODE", "echo") == "dify"
        concurrency = int(os.environ["BENCH_DIFY_CONCURRENCY"]) if dify else 1
        if concurrency < 1:
            raise ValueError(f"BENCH_DIFY_CONCURRENCY must be at least 1, got {concurrency}")
    except (KeyError, ValueError) as e:
        sys.stderr.write(f"echo peer: missing or bad environment variable: {e}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        if dify:
            return eventloop.run(_with_dify(name, password, port, concurrency), loop)
        return eventloop.run(echo(name, password, port, _same_text), loop)
    return 0


async def _same_text(sender: str, text: str) -> str:
    return text


async def _with_dify(name: str, password: str, port: int, concurrency: int) -> int:
    url = os.environ["BENCH_DIFY_URL"].rstrip("/") + "/chat-messages"
    headers = {"Authorization": "Bearer " + os.environ["BENCH_DIFY_KEY"]}
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def ask_dify(sender: str, text: str) -> str:
            body = {"query": text, "user": sender, "inputs": {}, "response_mode": "streaming"}
            parts = []
            async with slots, session.post(url, json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        event = json.loads(line[5:])
                        if event.get("event") in ("message", "agent_message"):
                            parts.append(event.get("answer", ""))
            return "".join(parts)

        return await echo(name, password, port, ask_dify)


if __name__ == "__main__":
    sys.exit(main())
