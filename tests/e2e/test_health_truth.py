"""/healthz tells the truth: 503 with a named reason for a rejected Dify key, an open Dify
breaker, and an AIM login that retrying cannot fix; and the latest real cause of being offline.

The real Application against our devserver and the Dify stand-in, on loopback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from aimbot.app import Application
from aimbot.ops.health import CHECK_AIM_LOGIN, CHECK_DIFY_CIRCUIT, CHECK_DIFY_KEY, health_body
from tests.helpers.e2e import BOT_PASSWORD, DIFY_KEY, WAIT, bot_settings, rig
from tests.integration.test_aim_handler import RecordWaiter


async def healthz(app: Application) -> tuple[int, dict[str, Any]]:
    """What /healthz answers (the HTTP layer itself is tested in test_health.py)."""
    return health_body(app.health())


@pytest.fixture
def records() -> Any:
    waiter = RecordWaiter()
    root = logging.getLogger("aimbot")
    level = root.level
    root.addHandler(waiter)
    root.setLevel(logging.DEBUG)
    yield waiter
    root.removeHandler(waiter)
    root.setLevel(level)


async def test_a_rejected_dify_key_is_unhealthy_with_one_clear_error(
    tmp_path: Path, records: RecordWaiter
) -> None:
    wrong_key = "app-not-the-right-key-31337"
    async with rig(tmp_path) as r:
        app = await r.start_bot(DIFY_API_KEY=wrong_key)
        await app.dify_key.wait_checked(WAIT)
        status, body = await healthz(app)
        assert status == 503, body
        assert body["checks"][CHECK_DIFY_KEY] is False
        assert body["checks"]["aim_signed_on"] is True  # the bot keeps running
        assert any(reason.startswith("Dify rejects DIFY_API_KEY") for reason in body["reasons"])
        errors = [
            rec
            for rec in records.records
            if rec.levelno >= logging.ERROR and "DIFY_API_KEY" in rec.getMessage()
        ]
        assert len(errors) == 1, [rec.getMessage() for rec in errors]
        for rec in records.records:
            assert wrong_key not in rec.getMessage()


async def test_the_key_accepted_is_healthy_and_a_refused_chat_turns_it_unhealthy(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        app = await r.start_bot()
        await app.dify_key.wait_checked(WAIT)
        status, body = await healthz(app)
        assert status == 200, body
        assert body["checks"][CHECK_DIFY_KEY] is True
        # Whenever it happens: a chat refused with 401 (key revoked while running).
        app.dify_key.observe("auth", 0.1)
        status, body = await healthz(app)
        assert status == 503
        assert any("Dify rejects DIFY_API_KEY" in reason for reason in body["reasons"])
        app.dify_key.observe("ok", 0.1)
        status, _ = await healthz(app)
        assert status == 200


async def test_an_open_dify_breaker_is_unhealthy(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        app = await r.start_bot(DIFY_BREAKER_THRESHOLD="1", DIFY_RETRY_MAX_ATTEMPTS="1")
        await app.dify_key.wait_checked(WAIT)
        r.dify.set_down(True)
        kim = await r.person("kim")
        await kim.say("are you there?")
        await kim.reply()  # the apology
        status, body = await healthz(app)
        assert status == 503, body
        assert body["checks"][CHECK_DIFY_CIRCUIT] is False
        assert any("circuit breaker is open" in reason for reason in body["reasons"]), body


async def test_a_wrong_aim_password_is_unhealthy_with_the_servers_reason(
    tmp_path: Path, records: RecordWaiter
) -> None:
    async with rig(tmp_path) as r:
        app = Application(
            bot_settings(r.oscar, r.dify, r.data_dir, AIM_PASSWORD="not-" + BOT_PASSWORD)
        )
        r.app = app
        await app.start()
        logged = await records.wait_for(
            lambda rec: "cannot sign on as" in rec.getMessage(), 1, WAIT
        )
        # One format for the server's code, in the log as in /healthz and the doctor.
        assert "incorrect password (code 0x0005)" in logged[0].getMessage()
        status, body = await healthz(app)
        assert status == 503, body
        assert body["checks"][CHECK_AIM_LOGIN] is False
        reasons = " | ".join(body["reasons"])
        assert "refuses the bot's login" in reasons
        assert "incorrect password (code 0x0005)" in reasons, reasons
        assert "last disconnect: sign-on failed" in reasons, reasons
        assert BOT_PASSWORD not in reasons
        assert DIFY_KEY not in reasons


async def test_the_last_disconnect_is_the_latest_real_cause(
    tmp_path: Path, records: RecordWaiter
) -> None:
    async with rig(tmp_path) as r:
        app = await r.start_bot()
        await r.oscar.stop()  # the session ends, then every sign-on is refused at TCP
        await records.wait_for(lambda rec: rec.getMessage().startswith("sign-on failed"), 1, WAIT)
        status, body = await healthz(app)
        assert status == 503
        reasons = " | ".join(body["reasons"])
        assert "last disconnect: sign-on failed: cannot connect to" in reasons, reasons
        assert body["checks"][CHECK_AIM_LOGIN] is True  # a refused connection heals by itself
