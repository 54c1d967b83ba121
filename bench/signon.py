"""``bench signon``: how long the bot's OSCAR client takes from TCP connect to "online".

Measured on the client class the bot itself uses (OscarClient, with the bot's account and its
default options) against the devserver: BUCP challenge and MD5 login on one connection, then the
BOS connection with the set-up requests one step per server answer (the conventional order),
until the server has the session online.
Process start-up of `python main.py` is reported on its own, as context: it is paid once.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from aimbot.oscar.client import OscarClient
from bench.report import Figure, Report, Target, make_report
from bench.rig import BOT, loopback
from bench.stats import summarize

TARGETS = (Target("signon_ms_p50", "<=", 50),)


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
    ]
    notes = [
        "each sign-on: new OscarClient for the bot's account, connect() until the devserver "
        "reports the session online; one unmeasured warm-up sign-on first",
    ]
    return make_report("signon", argv, figures, targets=TARGETS, notes=notes)
