"""After a crash, the restart notice goes to recent writers who are online; for one who is offline
by then it is dropped, not held for their return (it would only puzzle them later)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from aimbot.app import DB_FILENAME
from aimbot.bot import messages
from tests.helpers.e2e import WAIT, rig


def mark_unclean_stop(data_dir: Path) -> None:
    """What a SIGKILL leaves behind: the clean-stop marker still says "running"."""
    with sqlite3.connect(data_dir / DB_FILENAME) as db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'running'")
    db.close()


async def test_the_restart_notice_is_dropped_for_an_offline_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.bot.aim_handler")
    async with rig(tmp_path) as r:
        await r.start_bot()
        jon, lee = await r.person("jon"), await r.person("lee")
        for person in (jon, lee):
            await person.say(f"hello from {person.name}")
            assert "hello from" in (await person.reply()).text
        await r.quiescent()
        await lee.sign_off()
        await r.oscar.wait_offline("lee", timeout=WAIT)
        await r.stop_bot()
        mark_unclean_stop(r.data_dir)

        app = await r.start_bot()
        assert (await jon.reply()).text == messages.RESTARTED  # online: asked
        # Offline: the server refuses the notice and the bot drops it instead of holding it,
        # so nothing is left to deliver.
        assert await app.handler.flush(WAIT), "a notice is still held"
        assert any(
            "lee is offline; notice" in rec.getMessage() and "dropped, not held" in rec.getMessage()
            for rec in caplog.records
        )
        lee = await r.person("lee")
        await lee.say("sentinel")
        assert "sentinel" in (await lee.reply()).text
        await r.quiescent()
        assert lee.received.empty()
        assert all(im.text != messages.RESTARTED for im in lee.all_received)
