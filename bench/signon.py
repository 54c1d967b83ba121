"""``bench signon``: how long the bot's OSCAR client takes from TCP connect to "online".

Measured on the client class the bot itself uses (OscarClient, with the bot's account and its
default options) against the devserver: BUCP challenge and MD5 login on one connection, then the
BOS connection with the set-up requests one step per server answer (the conventional order),
until the server has the session online.
Process start-up of `python main.py` is reported on its own, as context: it is paid once.

`recv_im_per_s` is the intake side of the same client: one OscarClient (the bot's class, default
options) flooded with IMs by another through the devserver, rate limits off; the figure is IMs
delivered as events per second, from the first send to the last event.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Sequence

from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM, SessionEnded
from bench.cli import BenchError
from bench.report import Figure, Report, Target, make_report
from bench.rig import BOT, Loopback, loopback
from bench.stats import summarize

TARGETS = (Target("signon_ms_p50", "<=", 50), Target("recv_im_per_s", ">=", 5000))
FLOOD_SENDER = "FloodSender"
FLOOD_RECEIVER = "FloodReceiver"
FLOOD_TIMEOUT = 120.0


async def receive_rate(rig: Loopback, count: int) -> float:
    """IMs per second that one OscarClient turns into events while another floods it."""
    password = secrets.token_urlsafe(9)
    rig.oscar.add_account(FLOOD_SENDER, password)
    rig.oscar.add_account(FLOOD_RECEIVER, password)
    receiver = OscarClient(FLOOD_RECEIVER, password, "127.0.0.1", rig.oscar.port)
    sender = OscarClient(FLOOD_SENDER, password, "127.0.0.1", rig.oscar.port, throttle=False)
    last_at = 0.0
    received = 0

    async def consume() -> None:
        nonlocal last_at, received
        async for event in receiver.events():
            if isinstance(event, IncomingIM):
                received += 1
                if received == count:
                    last_at = time.perf_counter()
                    return
            elif isinstance(event, SessionEnded):
                raise BenchError(f"the flooded client's session ended: {event.detail}")

    try:
        await receiver.connect()
        await sender.connect()
        reader = asyncio.create_task(consume(), name="flood-receiver")
        started = time.perf_counter()
        try:
            for i in range(count):
                await sender.send_im(FLOOD_RECEIVER, f"flood {i}")
            try:
                async with asyncio.timeout(FLOOD_TIMEOUT):
                    await asyncio.shield(reader)
            except TimeoutError as e:
                raise BenchError(
                    f"the flooded client got {received:,} of {count:,} IMs in {FLOOD_TIMEOUT:g} s"
                ) from e
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    finally:
        await sender.close()
        await receiver.close()
    return count / (last_at - started)


async def run(args: argparse.Namespace, argv: Sequence[str]) -> Report:
    async with loopback() as rig:
        times_ms: list[float] = []
        for attempt in range(args.count + 1):  # the first one warms up imports and caches
            client = OscarClient(BOT, rig.bot_password, "127.0.0.1", rig.oscar.port)
            started = time.perf_counter()
            await client.connect()
            await rig.oscar.wait_online(BOT)
            elapsed = (time.perf_counter() - started) * 1000
            await client.close()
            await rig.oscar.wait_offline(BOT)
            if attempt:
                times_ms.append(elapsed)
        recv_rate = await receive_rate(rig, args.flood)
        started = time.perf_counter()
        await rig.start_bot()
        cold_start_ms = (time.perf_counter() - started) * 1000
    s = summarize(times_ms)
    figures = [
        Figure("signon_ms_p50", s.p50, "sign-on, median", "ms"),
        Figure("signon_ms_p95", s.p95, "sign-on, p95", "ms"),
        Figure("signon_ms_max", s.max, "sign-on, slowest", "ms"),
        Figure("signons", s.count, "sign-ons measured"),
        Figure("bot_cold_start_ms", cold_start_ms, "python main.py start to online", "ms"),
        Figure("recv_im_per_s", recv_rate, "IMs received per second (one client flooded)", "/s"),
    ]
    notes = [
        "each sign-on: new OscarClient for the bot's account, connect() until the devserver "
        "reports the session online; one unmeasured warm-up sign-on first",
        f"recv_im_per_s: {args.flood:,} IMs sent back to back by one OscarClient (throttle off) "
        "to another through the devserver (rate limits off), all in the bench process; first "
        "send to the receiver's last IncomingIM event",
    ]
    return make_report("signon", argv, figures, targets=TARGETS, notes=notes)
