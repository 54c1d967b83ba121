"""Senders that are not people (server notices, listed bots, away messages) are never answered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers.e2e import WAIT, rig


async def test_system_and_listed_senders_never_reach_dify_or_the_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.bot.senders")
    async with rig(tmp_path) as r:
        app = await r.start_bot(IGNORED_SENDERS="Relay Bot, other")
        system = await r.person("OOS System Msg")
        relay = await r.person("relaybot")
        human = await r.person("human")
        await system.say("Your screen name is now signed into AIM in 2 locations.\x1b[2J")
        await system.say("second notice")
        await relay.say("beep")
        await human.say("hello")
        await app.bot.wait_seen(4, timeout=WAIT)
        await r.quiescent()
        assert {req.user for req in r.dify.chat_requests} == {"aim:human"}
        assert system.all_received == [] and relay.all_received == []
        assert len(human.all_received) == 1
        metrics = app.metrics.render()[0].decode()
        assert 'aimbot_ims_ignored_total{reason="system_sender"} 2.0' in metrics
        assert 'aimbot_ims_ignored_total{reason="ignored_sender"} 1.0' in metrics
    said = [rec.getMessage() for rec in caplog.records if rec.name == "aimbot.bot.senders"]
    notices = [line for line in said if line.startswith("not answering")]
    # Once per sender, with the server's text escaped (no raw control characters).
    assert len(notices) == 2, said
    assert "signed into AIM in 2 locations" in notices[0]
    assert "\x1b" not in notices[0] and "\\x1b" in notices[0]
    assert "beep" in notices[1]
