"""A reply held while its user was offline goes out first when that user writes again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.e2e import BOT, WAIT, Person, rig
from tests.helpers.logs import log_signal


async def test_user_offline_then_back_gets_the_held_reply_before_the_new_answer(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()

    async def answer(ctx: object) -> str:
        query = ctx.query  # type: ignore[attr-defined]
        if "slow" in query:
            await release.wait()
        return f"answer to {query}"

    with log_signal("aimbot.bot.aim_handler", "is offline; reply") as parked:
        async with rig(tmp_path) as r:
            r.dify.answer = answer
            app = await r.start_bot(TYPING_NOTIFICATIONS="false")
            jo = await r.person("jo")
            await jo.say("a slow question")
            await app.bot.wait_seen(1, timeout=WAIT)
            await jo.sign_off()  # jo leaves before the answer is ready
            release.set()
            async with asyncio.timeout(WAIT):
                await parked.wait()  # the server said: jo is offline
            back = Person("jo", "pw-person", r.oscar.port)
            r.people.append(back)
            await back.sign_on()
            await back.say("a new question", to=BOT)
            first, second = await back.replies(2, WAIT)
            assert first.text == "answer to a slow question"
            assert second.text == "answer to a new question"
            await r.quiescent()
            assert len(back.all_received) == 2


async def test_a_user_told_the_queue_is_slow_gets_that_notice_before_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with rig(tmp_path) as r:
        app = await r.start_bot()
        # The queue is slow (as measured by the handler): 3 minutes for whoever writes now.
        monkeypatch.setattr(app.handler, "busy_wait", lambda key: 180.0 if key == "kim" else None)
        kim = await r.person("kim")
        lee = await r.person("lee")
        await kim.say("hello?")
        await lee.say("hello?")
        notice, answer = await kim.replies(2, WAIT)
        assert "your answer is in the queue" in notice.text and "about 3 min" in notice.text
        assert "hello?" in answer.text
        await r.quiescent()
        assert len(lee.all_received) == 1  # lee was not told: only the answer
        assert "in the queue" not in lee.all_received[0].text
