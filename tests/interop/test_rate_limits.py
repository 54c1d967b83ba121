"""Issue 11 on Open OSCAR Server with the bot's default settings: what its rate limits mean.

An ordinary account may send a burst of IMs and then about one per 5 s; an `is_bot` account is
exempt (though the ordinary classes are still advertised to it). Deadlines here are acceptance
targets, asserted as waits with a timeout.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from aimbot.devserver.dify_standin import AnswerContext
from tests.helpers.aim_user import AimUser
from tests.helpers.oos import BOT, all_answered, interop_rig

pytestmark = [pytest.mark.interop]


async def everyone_asks(people: list[AimUser]) -> None:
    """Each person sends one IM at the same moment."""
    await asyncio.gather(*(who.say(BOT, f"question from {who.screen_name}") for who in people))


def assert_each_answered_once(people: list[AimUser]) -> None:
    for who in people:
        texts = [im.text for im in who.from_(BOT)]
        assert len(texts) == 1, (who.screen_name, texts)
        assert f"question from {who.screen_name}" in texts[0], texts


async def test_an_exempt_account_answers_20_simultaneous_users_within_10_s(
    tmp_path: Path,
) -> None:
    async with interop_rig(tmp_path, bot_is_exempt=True) as rig:
        await rig.online_bot()
        people = await rig.crowd("exempt", 20)
        await everyone_asks(people)
        await all_answered(people, timeout=10)
        assert_each_answered_once(people)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_an_ordinary_account_answers_10_simultaneous_users_none_lost_no_disconnect(
    tmp_path: Path,
) -> None:
    async with interop_rig(tmp_path) as rig:
        bot = await rig.online_bot()
        people = await rig.crowd("plain", 10)
        await everyone_asks(people)
        await all_answered(people, timeout=120)
        assert_each_answered_once(people)
        assert await rig.metric(bot, "aimbot_reconnects_total") == 0.0
        assert await rig.metric(bot, "aimbot_online") == 1.0
        assert rig.server.sessions(BOT) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_one_line_answer_is_not_sent_after_another_users_queued_6_part_answer(
    tmp_path: Path,
) -> None:
    long_answer = " ".join(
        f"Paragraph {i} of a long answer, all of it plain text." for i in range(52)
    )

    def answer(ctx: AnswerContext) -> str:
        return long_answer if ctx.user == "aim:longwinded" else f"echo: {ctx.query}"

    async with interop_rig(tmp_path) as rig:
        rig.dify.answer = answer
        await rig.online_bot()
        # Three answers first use up most of the account's burst, so the long answer's parts
        # are paced (queued) rather than all sent at once.
        early = await rig.crowd("early", 3)
        await everyone_asks(early)
        await asyncio.gather(*(who.replies(BOT, 1, timeout=60) for who in early))
        longwinded = await rig.user("longwinded")
        brief = await rig.user("brief")
        await longwinded.say(BOT, "tell me everything")
        first = (await longwinded.replies(BOT, 1, timeout=60))[0]
        match = re.match(r"\(1/(\d+)\) ", first.text)
        assert match and int(match.group(1)) == 6, first.text[:40]
        await brief.say(BOT, "one line please")
        parts = await longwinded.replies(BOT, 6, timeout=120)
        short = (await brief.replies(BOT, 1, timeout=120))[0]
        assert "one line please" in short.text
        sent_before = sum(1 for part in parts if part.at < short.at)
        assert sent_before < 6, "the one-line answer came after all 6 parts"
