"""Issue 13 item 12: after drain() the bot only stores what it is handed; nothing new starts."""

from __future__ import annotations

from pathlib import Path

from aimbot.bot import messages
from tests.helpers.botrig import WAIT, bot_rig, incoming


async def test_after_drain_a_clear_starts_no_dify_delete_and_an_im_is_only_stored(
    tmp_path: Path,
) -> None:
    async with bot_rig(tmp_path, delete_on_clear=True) as r:
        await r.bot.on_message(incoming("amy", "hello"))
        await r.bot.wait_idle(WAIT)
        assert await r.store.get_conversation("amy")  # a conversation a "clear" would delete
        assert await r.bot.drain(WAIT)

        await r.bot.on_message(incoming("amy", "clear"))
        await r.bot.wait_background(WAIT)
        assert not any(c.deleted for c in r.dify.conversations.values())
        assert r.sink.texts_to("amy")[-1] == messages.CLEARED
        assert await r.store.get_conversation("amy") is None

        await r.bot.on_message(incoming("amy", "a question after the drain"))
        assert r.bot.active_users == 0
        assert len(r.dify.chat_requests) == 1  # only the one before the drain
        pending, _ = await r.store.inbox_pending(now=r.bot._clock(), max_age=1e9)
        assert [p.text for p in pending] == ["a question after the drain"]  # for the next start
