"""A restart mid-stream (issue 15, item 2): IMs whose answer had parts sent are not asked again.

The bot core alone (real SQLite file, Dify stand-in over loopback, a recording sink); the
process-kill version of the same is tests/e2e/test_stream_parts.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from aimbot.bot import messages
from aimbot.store import Reply
from tests.helpers.botrig import WAIT, bot_rig


async def test_resume_ends_a_partly_sent_answer_with_a_note_and_answers_the_rest(
    tmp_path: Path,
) -> None:
    async with bot_rig(tmp_path) as rig:
        store, now = rig.store, time.time()
        cut = await store.inbox_add("amy", "Amy", "a long question", now)
        await store.stream_part([cut], "Amy", Reply("(1/...) the first part", False), now)
        await store.inbox_add("amy", "Amy", "and another one", now)
        await store.inbox_add("bob", "Bob", "hello", now)
        assert await rig.bot.resume(after_crash=True) == 2  # the cut one is not answered again
        await rig.bot.wait_idle(WAIT)
        assert [r.query for r in rig.dify.chat_requests] == ["and another one", "hello"]
        amy = rig.sink.texts_to("Amy")
        assert amy[0] == messages.STREAM_CUT_BY_RESTART  # and no "please resend" besides
        assert len(amy) == 2 and "and another one" in amy[1]
        assert (await store.counts())["inbox"] == 0
