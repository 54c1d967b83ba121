"""A finished answer's first reply goes to the server before its row is written, and the row
follows in the same step (AIMBot._stage_commit): what the store holds afterwards, and what is
sent when it cannot hold it."""

from __future__ import annotations

from pathlib import Path

from aimbot.store import OutboxItem
from tests.helpers.botrig import WAIT, bot_rig, incoming


def _rows(items: list[OutboxItem]) -> list[tuple[int, str, bytes]]:
    return [(item.id, item.text, item.cookie) for item in items]


async def test_the_reply_sent_at_once_is_stored_under_the_id_and_cookie_it_went_out_with(
    tmp_path: Path,
) -> None:
    async with bot_rig(tmp_path, sends_at_once=True) as r:
        await r.bot.on_message(incoming("amy", "hello"))
        await r.bot.wait_idle(WAIT)
        assert len(r.sink.at_once) == 1
        assert r.sink.items == r.sink.at_once  # nothing else was handed over
        # Not acknowledged here, so its row is kept for a resend, as if stored first.
        assert _rows(await r.store.outbox_pending()) == _rows(r.sink.at_once)
        pending, _ = await r.store.inbox_pending(now=r.bot._clock(), max_age=1e12)
        assert pending == []  # the swap committed: a restart does not ask again


async def test_only_the_first_part_goes_at_once_the_rest_queue_and_every_part_keeps_its_row(
    tmp_path: Path,
) -> None:
    async with bot_rig(tmp_path, sends_at_once=True, stream_parts=False) as r:
        r.dify.answer = lambda ctx: " ".join(f"word{n}" for n in range(400))
        await r.bot.on_message(incoming("amy", "tell me a lot"))
        await r.bot.wait_idle(WAIT)
        items = r.sink.items
        assert len(items) >= 3
        assert r.sink.at_once == items[:1]
        assert r.sink.held == items[1:]  # the rest wait their turn in the queue
        assert [item.text.split(" ", 1)[0] for item in items] == [
            f"({n}/{len(items)})" for n in range(1, len(items) + 1)
        ]
        assert _rows(await r.store.outbox_pending()) == _rows(items)


async def test_without_sending_at_once_every_reply_is_handed_over_with_its_row(
    tmp_path: Path,
) -> None:
    async with bot_rig(tmp_path) as r:
        await r.bot.on_message(incoming("amy", "hello"))
        await r.bot.wait_idle(WAIT)
        assert r.sink.at_once == r.sink.held == []
        assert len(r.sink.items) == 1
        assert _rows(await r.store.outbox_pending()) == _rows(r.sink.items)
