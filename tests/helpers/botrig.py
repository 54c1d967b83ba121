"""The bot core on its own: a real SQLite file, the Dify stand-in over loopback, and a sink
that records what the bot hands over for delivery (instead of an AIM session)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aimbot.api.dify_client import DifyClient, DifyOptions
from aimbot.bot.bot import AIMBot, BotOptions
from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.oscar.events import IncomingIM, TypingState
from aimbot.store import OutboxItem, Store

WAIT = 10.0
BOT = "TestBot"


@dataclass
class RecordingSink:
    max_message_bytes: int = 512
    items: list[OutboxItem] = field(default_factory=list)
    typing_states: list[tuple[str, TypingState]] = field(default_factory=list)
    # Whether a finished answer's first reply "goes out at once" (before its row is stored),
    # as the AIMHandler's does with its sender idle; those land in `at_once` as well.
    sends_at_once: bool = False
    at_once: list[OutboxItem] = field(default_factory=list)
    # Replies handed over with at_once=False (all to wait in the queue).
    held: list[OutboxItem] = field(default_factory=list)

    def deliver(
        self, items: Iterable[OutboxItem], *, urgent: bool = False, at_once: bool = True
    ) -> None:
        items = list(items)
        self.items.extend(items)
        if not at_once:
            self.held.extend(items)

    def send_at_once(self, item: OutboxItem) -> bool:
        if self.sends_at_once:
            self.items.append(item)
            self.at_once.append(item)
        return self.sends_at_once

    def busy_wait(self, user_key: str) -> float | None:
        return None  # the reply queue is never slow here

    def deliver_or_drop(self, items: Iterable[OutboxItem]) -> None:
        self.deliver(items)

    def typing(self, screen_name: str, state: TypingState) -> None:
        self.typing_states.append((screen_name, state))

    def texts_to(self, screen_name: str) -> list[str]:
        return [item.text for item in self.items if item.screen_name == screen_name]


@dataclass
class BotRig:
    bot: AIMBot
    store: Store
    dify: DifyStandIn
    sink: RecordingSink


def incoming(sender: str, text: str, *, auto_response: bool = False) -> IncomingIM:
    return IncomingIM(sender, text, text, b"\x00" * 8, auto_response)


@contextlib.asynccontextmanager
async def bot_rig(
    tmp_path: Path, *, sends_at_once: bool = False, **options: Any
) -> AsyncIterator[BotRig]:
    options = {"buffer_window": 0.0, "buffer_max_wait": 0.0, "reply_format": "plain", **options}
    async with (
        DifyStandIn(api_key="app-botrig-key-0123456789", ping_interval=0.5) as dify,
        aiohttp.ClientSession() as session,
    ):
        client = DifyClient(
            session,
            dify.api_key,
            DifyOptions(base_url=dify.url, retry_base=0.01, retry_cap=0.02),
        )
        store = await Store.open(tmp_path / "bot.sqlite3")
        sink = RecordingSink(sends_at_once=sends_at_once)
        bot = AIMBot(BotOptions(screen_name=BOT, **options), store, client, sink)
        try:
            yield BotRig(bot, store, dify, sink)
        finally:
            await bot.close()
            await store.close()
