"""Issue 13, item 5: IMs that arrive while the disk is full are not lost silently.

The disk is full for real, as SQLite sees it: the store's own connection may not add a page
(PRAGMA max_page_count on the real file), and the inbox's last page is packed, so storing an IM
fails with "database or disk is full" exactly as on a full volume.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from aimbot.bot import messages
from aimbot.store import Reply, StoreWriteError
from tests.helpers.botrig import WAIT, bot_rig, incoming
from tests.helpers.e2e import rig
from tests.unit.test_store import fill_to_the_page_limit, make_room_for_one_tiny_im, space_returns


async def test_an_im_that_cannot_be_stored_gets_an_apology_no_dify_call_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with rig(tmp_path) as r:
        app = await r.start_bot()
        jan = await r.person("jan")
        fill_to_the_page_limit(app.store)
        await jan.say("are you there? " * 10)
        reply = await jan.reply()
        assert reply.text == messages.NOT_STORED
        await r.quiescent()
        assert jan.received.empty()
        assert r.dify.request_count == 0  # nothing was asked about an IM that was not kept
        log = "\n".join(record.getMessage() for record in caplog.records)
        assert "NOT kept and not sent to Dify" in log
        assert "database or disk is full" in log
        assert "stay in the inbox" not in log
        # Space returns: the next IM is stored and answered, without a restart.
        space_returns(app.store)
        await jan.say("and now?")
        reply = await jan.reply()
        assert "you said 'and now?'" in reply.text
        await r.quiescent()
        assert jan.received.empty()
        assert r.dify.request_count == 1


async def test_an_im_lost_with_its_turn_is_not_sent_to_dify_and_its_sender_is_told(
    tmp_path: Path,
) -> None:
    # Amy's IM fits and is stored, in a transaction another write of the same turn opened (an
    # IM coming alone would be committed at once). A later write of that turn needs a page the
    # disk does not have: SQLite rolls back the whole transaction, Amy's insert with it. Her IM
    # must not be answered as if kept.
    async with bot_rig(tmp_path) as r:
        fill_to_the_page_limit(r.store)
        make_room_for_one_tiny_im(r.store)

        async def a_write_before() -> None:
            await r.store.set_conversation("carol", "conv-1", r.bot._clock())

        async def a_write_after_that_does_not_fit() -> None:
            with pytest.raises(StoreWriteError, match="database or disk is full"):
                await r.store.outbox_add("Carol", Reply("c" * 5000, False), r.bot._clock())

        await asyncio.gather(
            a_write_before(),
            r.bot.on_message(incoming("amy", "a")),
            a_write_after_that_does_not_fit(),
        )
        await r.bot.wait_idle(WAIT)
        assert r.sink.texts_to("amy") == [messages.NOT_STORED]
        assert r.dify.request_count == 0
        pending, _ = await r.store.inbox_pending(now=r.bot._clock(), max_age=1e12)
        assert {p.user_key for p in pending} == {"filler"}


@pytest.mark.parametrize("sends_at_once", [False, True], ids=["stored-first", "sent-at-once"])
async def test_an_answer_that_cannot_be_stored_is_still_sent_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sends_at_once: bool
) -> None:
    """Sent at once, the first part is already out when its row fails: it is not sent again,
    and the others follow it without a durable copy."""
    caplog.set_level(logging.INFO)
    async with bot_rig(tmp_path, sends_at_once=sends_at_once, reply_format="plain") as r:
        long_answer = " ".join(f"word{n}" for n in range(1200))  # > one page of outbox rows

        def answer(ctx: object) -> str:
            fill_to_the_page_limit(r.store)  # the disk fills while Dify thinks
            return long_answer

        r.dify.answer = answer
        await r.bot.on_message(incoming("amy", "tell me a lot"))
        await r.bot.wait_idle(WAIT)
        items = [item for item in r.sink.items if item.screen_name == "amy"]
        assert len(items) >= 2
        assert [item.text.split(" ", 1)[0] for item in items] == [
            f"({n}/{len(items)})" for n in range(1, len(items) + 1)
        ]
        at_once = r.sink.at_once
        assert len(at_once) == (1 if sends_at_once else 0)
        unstored = [item.id for item in items if item not in at_once]
        assert unstored == sorted(unstored) and all(i < 0 for i in unstored)  # order kept
        assert len({item.text for item in items}) == len(items)  # none sent twice
        assert await r.store.outbox_pending() == []  # no outbox row, the one sent at once's neither
        log = "\n".join(record.getMessage() for record in caplog.records)
        assert "could not store the answer for amy" in log
        pending, _ = await r.store.inbox_pending(now=r.bot._clock(), max_age=1e12)
        assert "tell me a lot" in [p.text for p in pending]  # as the log says: still there
