"""`python main.py` as the operator runs it: SIGTERM under load, and logs free of secrets."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from tests.helpers.cli import (
    BOT,
    BOT_PASSWORD,
    DIFY_KEY,
    WAIT,
    AimUser,
    assert_no_traceback,
    bot_env,
    dify_fixture,  # noqa: F401 - fixture "dify"
    main_py,
    oscar_fixture,  # noqa: F401 - fixture "oscar"
    running,
    signed_on,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)

GRACE = 3.0
LATENCY = 1.0  # each Dify answer takes this long, so answers are in flight at SIGTERM
USERS = 3
IMS_PER_USER = 2


async def test_sigterm_under_load_exits_0_within_grace_and_logs_no_secret(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    dify.set_latency(LATENCY)
    env = bot_env(oscar, dify, workdir / "state", SHUTDOWN_GRACE=str(GRACE), LOG_LEVEL="DEBUG")

    async with (
        running(*main_py(), env=env, cwd=workdir) as bot,
        contextlib.AsyncExitStack() as stack,
    ):
        await oscar.wait_online(BOT, timeout=WAIT)
        users: list[AimUser] = []
        for n in range(USERS):
            oscar.add_account(f"loaduser{n}", f"load-pw-{n}")
            users.append(
                await stack.enter_async_context(
                    signed_on(f"loaduser{n}", f"load-pw-{n}", oscar.port)
                )
            )
        for i in range(IMS_PER_USER):
            for user in users:
                await user.say(BOT, f"question {i} from {user.name}")
        await dify.wait_requests(USERS, timeout=WAIT)  # every user's first answer is in flight

        bot.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        finished = await bot.finish(within=GRACE + 10)
        exit_seconds = time.monotonic() - signalled

        # Answers already in flight were finished and delivered before the bot signed off.
        for user in users:
            try:
                reply = await user.next_im(within=WAIT)
            except TimeoutError:
                raise AssertionError(f"{user.name} got no answer:\n{finished.stderr}") from None
            assert "you said" in reply.text and user.name in reply.text

    assert finished.code == 0, finished.output
    assert exit_seconds <= GRACE + 2, f"took {exit_seconds:.1f} s to exit"
    assert "SIGTERM received" in finished.stderr
    assert f"starting as {BOT}" in finished.stderr  # the log really was captured
    assert_no_traceback(finished.output)
    assert BOT_PASSWORD not in finished.output
    assert DIFY_KEY not in finished.output


async def test_failing_dify_key_is_logged_without_the_key(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    wrong_key = "app-revoked-key-d41d8cd98f00"
    env = bot_env(oscar, dify, workdir / "state", DIFY_API_KEY=wrong_key, LOG_LEVEL="DEBUG")
    oscar.add_account("asker", "asker-pw")

    async with running(*main_py(), env=env, cwd=workdir) as bot:
        await oscar.wait_online(BOT, timeout=WAIT)
        async with signed_on("asker", "asker-pw", oscar.port) as user:
            await user.say(BOT, "are you there?")
            apology = await user.next_im()  # the bot's friendly error, not silence
            assert apology.text.strip()
        bot.send_signal(signal.SIGTERM)
        finished = await bot.finish()

    assert finished.code == 0, finished.output
    assert "401" in finished.stderr or "auth" in finished.stderr.lower()  # the failure is logged
    assert wrong_key not in finished.output
    assert BOT_PASSWORD not in finished.output
    assert_no_traceback(finished.output)


async def test_unwritable_data_dir_fails_with_a_clear_line(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    blocker = workdir / "a-file"
    blocker.write_text("not a directory")
    env = bot_env(oscar, dify, blocker / "state")

    async with running(*main_py(), env=env, cwd=workdir) as bot:
        finished = await bot.finish()

    assert finished.code == 1, finished.output
    assert 'see TROUBLESHOOTING.md, "Data dir not writable"' in finished.stderr
    assert_no_traceback(finished.output)


async def test_a_second_sigterm_ends_at_once_and_keeps_the_unanswered_im(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    import sqlite3

    dify.set_latency(60.0)  # the answer would take a minute
    state = workdir / "state"
    env = bot_env(oscar, dify, state, SHUTDOWN_GRACE="60")
    oscar.add_account("waiter", "waiter-pw")
    async with running(*main_py(), env=env, cwd=workdir) as bot:
        await oscar.wait_online(BOT, timeout=WAIT)
        async with signed_on("waiter", "waiter-pw", oscar.port) as user:
            await user.say(BOT, "a slow question")
            await dify.wait_requests(1, timeout=WAIT)
            bot.send_signal(signal.SIGTERM)
            await bot.wait_stderr("SIGTERM received")
            bot.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            finished = await bot.finish(within=WAIT)
            exit_seconds = time.monotonic() - signalled

    assert finished.code == 0, finished.output
    assert exit_seconds < 10, f"took {exit_seconds:.1f} s after the second SIGTERM (grace 60 s)"
    assert "SIGTERM again: shutting down now" in finished.stderr
    assert_no_traceback(finished.output)
    db = sqlite3.connect(state / "aimbot.sqlite3")
    try:
        rows = db.execute("SELECT user_key, text FROM inbox").fetchall()
    finally:
        db.close()
    assert rows == [("waiter", "a slow question")]  # answered on the next start


async def test_a_corrupt_database_points_to_its_own_section(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    state = workdir / "state"
    state.mkdir()
    (state / "aimbot.sqlite3").write_bytes(b"this is not a database, just bytes " * 200)
    async with running(*main_py(), env=bot_env(oscar, dify, state), cwd=workdir) as bot:
        finished = await bot.finish()

    assert finished.code == 1, finished.output
    assert "is damaged" in finished.stderr
    assert 'see TROUBLESHOOTING.md, "Corrupt state database"' in finished.stderr
    assert "Data dir not writable" not in finished.stderr
    assert_no_traceback(finished.output)
