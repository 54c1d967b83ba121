"""After a kill, the restart notice goes to recent writers who are online; for one who is offline
by then it is dropped, not held for their return (it would only puzzle them later)."""

from __future__ import annotations

from pathlib import Path

from aimbot.bot import messages
from tests.helpers.e2e import BOT, WAIT, BotProcess, bot_environment, rig


async def test_the_restart_notice_is_dropped_for_an_offline_writer(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        bot = BotProcess(bot_environment(r.oscar, r.dify, r.data_dir), tmp_path / "bot.log")
        jon, lee = await r.person("jon"), await r.person("lee")
        bot.start()
        try:
            await r.oscar.wait_online(BOT, timeout=WAIT)
            for person in (jon, lee):
                await person.say(f"hello from {person.name}")
                assert "hello from" in (await person.reply()).text
            first_seen = {im.cookie for im in lee.all_received}
            await lee.sign_off()
            await r.oscar.wait_offline("lee", timeout=WAIT)
            bot.kill()
            await r.oscar.wait_offline(BOT, timeout=WAIT)
            bot.start()
            assert (await jon.reply()).text == messages.RESTARTED  # online: asked
            # Offline: the server refuses the notice and the bot drops it instead of holding it.
            lee = await r.person("lee")
            await lee.say("sentinel")
            while True:  # a reply whose ack the kill lost comes again, under its first cookie
                reply = await lee.reply()
                if reply.cookie not in first_seen:
                    break
            assert "sentinel" in reply.text, reply
            assert lee.received.empty()
            assert bot.terminate() == 0
            assert "lee is offline; notice" in bot.output() and "dropped, not held" in bot.output()
            assert all(im.text != messages.RESTARTED for im in lee.all_received)
        finally:
            if bot.proc is not None and bot.proc.poll() is None:
                assert bot.terminate() == 0, bot.output()[-3000:]
