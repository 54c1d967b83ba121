"""The session layer against the real Open OSCAR Server (skipped where ../shared is absent).

What the devserver can only imitate: an is_bot account is advertised the ordinary rate classes
and never hears from the rate limiter (AIM_THROTTLE=auto must learn that from the silence), and
a second login of the bot's screen name brings a notice IM from "OOS System Msg" (never
answered, never sent to Dify). With the one-session login the server kicks the older session
instead of announcing the second one, so the notice is sent here through the server's own API,
which sends as the system screen name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp
import pytest

from aimbot.app import Application
from aimbot.config.settings import load_settings
from aimbot.devserver.dify_standin import AnswerContext, DifyStandIn
from aimbot.oscar.client import OscarClient
from aimbot.oscar.events import IncomingIM
from tests.helpers.logs import log_signal
from tests.helpers.oos_server import OOS_SKIP_REASON, OosServer, oos_binary, running_oos

pytestmark = pytest.mark.skipif(oos_binary() is None, reason=OOS_SKIP_REASON)

WAIT = 30.0
DIFY_KEY = "app-oos-session-key-0123456789"


def _settings(oos: OosServer, dify: DifyStandIn, data_dir: Path, name: str, password: str):  # type: ignore[no-untyped-def]
    env = {
        "AIM_USERNAME": name,
        "AIM_PASSWORD": password,
        "AIM_SERVER": "127.0.0.1",
        "AIM_PORT": str(oos.oscar_port),
        "DIFY_API_KEY": DIFY_KEY,
        "DIFY_API_URL": dify.url,
        "DATA_DIR": str(data_dir),
        "HEALTH_PORT": "0",
        "BUFFER_WINDOW": "0",
        "BUFFER_MAX_WAIT": "0",
        "TYPING_NOTIFICATIONS": "false",
        "USER_RATE_LIMIT": "0",
    }
    return load_settings(env, env_file=None)


async def _collect(client: OscarClient, into: asyncio.Queue[IncomingIM]) -> None:
    async for event in client.events():
        if isinstance(event, IncomingIM):
            into.put_nowait(event)


def _long_answer(ctx: AnswerContext) -> str:
    """Several IMs per answer: even one answer is a burst that crosses the alert line."""
    return ctx.query + " " + "lorem ipsum " * 200


async def test_an_exempt_account_is_learned_and_answers_a_burst_unpaced(tmp_path: Path) -> None:
    dify = DifyStandIn(api_key=DIFY_KEY, ping_interval=0.5, answer=_long_answer)
    async with running_oos() as oos:
        await oos.create_user("oosbot", "oosbot-pw1", is_bot=True)
        await oos.create_user("burster", "burster-pw1", is_bot=True)  # may write fast itself
        await dify.start()
        app = Application(_settings(oos, dify, tmp_path / "data", "oosbot", "oosbot-pw1"))
        user = OscarClient("burster", "burster-pw1", "127.0.0.1", oos.oscar_port, throttle=False)
        replies: asyncio.Queue[IncomingIM] = asyncio.Queue()
        reader: asyncio.Task[None] | None = None
        try:
            with log_signal("aimbot.oscar.throttle", "does not enforce") as learned:
                await app.start()
                await app.handler.wait_online(WAIT)
                await user.connect()
                reader = asyncio.create_task(_collect(user, replies))
                for n in range(12):
                    await user.send_im("oosbot", f"question {n}")
                # Questions that arrive while one is being answered are joined into one query,
                # so count the questions answered, not the replies.
                answered = ""
                while not all(f"question {n}" in answered for n in range(12)):
                    async with asyncio.timeout(WAIT):
                        answered += (await replies.get()).text + "\n"
                async with asyncio.timeout(WAIT):
                    await learned.wait()
            assert app.handler.sessions == 1
        finally:
            await user.close()
            if reader is not None:
                async with asyncio.timeout(WAIT):
                    await reader
            await app.shutdown()
            await dify.stop()


async def test_a_notice_from_the_system_screen_name_is_not_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimbot.bot.senders")
    dify = DifyStandIn(api_key=DIFY_KEY, ping_interval=0.5)
    async with running_oos() as oos:
        await oos.create_user("noticebot", "noticebot-pw1")
        await dify.start()
        app = Application(_settings(oos, dify, tmp_path / "data", "noticebot", "noticebot-pw1"))
        notice = {"from": "OOS System Msg", "to": "noticebot", "text": "Your account is 2x on"}
        try:
            with log_signal("aimbot.bot.senders", "not answering 'OOS System Msg'") as noticed:
                await app.start()
                await app.handler.wait_online(WAIT)
                # The server's own API sends as its system screen name, as its notices do. The
                # server may register the bot's session a moment after the bot sees it online
                # (an IM then is kept for later): send again until one is delivered, bounded.
                async with aiohttp.ClientSession() as http:
                    for _ in range(5):
                        url = f"http://127.0.0.1:{oos.api_port}/instant-message"
                        async with http.post(url, json=notice) as r:
                            assert r.status < 300, await r.text()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(3):
                                await noticed.wait()
                            break
                assert noticed.is_set()
            await app.bot.wait_idle(WAIT)
            assert dify.chat_requests == []
            assert await app.handler.flush(WAIT)  # nothing was queued for it either
        finally:
            await app.shutdown()
            await dify.stop()
    said = next(r.getMessage() for r in caplog.records if "OOS System Msg" in r.getMessage())
    assert "Your account is 2x on" in said  # the server's own text is in the log
