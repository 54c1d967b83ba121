"""A reply held while its user was offline goes out first when that user writes again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.helpers.e2e import BOT, WAIT, Person, rig


async def test_user_offline_then_back_gets_the_held_reply_before_the_new_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.bot.aim_handler")
    release = asyncio.Event()

    async def answer(ctx: object) -> str:
        query = ctx.query  # type: ignore[attr-defined]
        if "slow" in query:
            await release.wait()
        return f"answer to {query}"

    parked = asyncio.Event()

    class Parked(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "is offline; reply" in record.getMessage():
                parked.set()

    watcher = Parked()
    logger = logging.getLogger("aimbot.bot.aim_handler")
    logger.addHandler(watcher)
    try:
        async with rig(tmp_path) as r:
            r.dify.answer = answer
            app = await r.start_bot(TYPING_NOTIFICATIONS="false")
            jo = await r.person("jo")
            await jo.say("a slow question")
            await app.bot.wait_seen(1, timeout=WAIT)
            await jo.sign_off()  # jo leaves before the answer is ready
            release.set()
            await asyncio.wait_for(parked.wait(), WAIT)  # the server said: jo is offline
            back = Person("jo", "pw-person", r.oscar.port)
            r.people.append(back)
            await back.sign_on()
            await back.say("a new question", to=BOT)
            first, second = await back.replies(2, WAIT)
            assert first.text == "answer to a slow question"
            assert second.text == "answer to a new question"
            await r.quiescent()
            assert len(back.all_received) == 2
    finally:
        logger.removeHandler(watcher)
