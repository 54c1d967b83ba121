"""`python main.py users | reset | purge | status` against a live bot and against a stopped one.

A live bot owns its state file, so the commands must ask it (through its health port); a
stopped bot's file is opened directly. Both answer the same JSON, told apart only by "via".
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from tests.helpers.cli import (
    BOT,
    BOT_PASSWORD,
    DIFY_KEY,
    USER,
    USER_PASSWORD,
    WAIT,
    Finished,
    assert_no_traceback,
    bot_env,
    dify_fixture,  # noqa: F401 - fixture "dify"
    main_py,
    oscar_fixture,  # noqa: F401 - fixture "oscar"
    run,
    running,
    signed_on,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)
from tests.helpers.ports import free_port


async def command(env: dict[str, str], cwd: Path, *args: str) -> tuple[Finished, Any]:
    result = await run(*main_py(*args, "--json"), env=env, cwd=cwd)
    assert_no_traceback(result.output)
    assert BOT_PASSWORD not in result.output and DIFY_KEY not in result.output
    assert result.code == 0, result.output
    return result, json.loads(result.stdout)


async def chat_once(oscar: OscarServer, text: str) -> None:
    async with signed_on(USER, USER_PASSWORD, oscar.port) as user:
        await user.say(BOT, text)
        await user.next_im()


def user_entry(body: dict[str, Any]) -> dict[str, Any]:
    entries = [u for u in body["users"] if u["user"] == USER.lower()]
    assert len(entries) == 1, body
    entry: dict[str, Any] = entries[0]
    return entry


async def test_commands_against_a_live_bot_ask_it_through_its_health_port(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state", HEALTH_PORT=str(free_port()))
    async with running(*main_py(), env=env, cwd=workdir) as bot:
        await bot.wait_stderr(r"health and metrics on")
        await oscar.wait_online(BOT, timeout=WAIT)
        await chat_once(oscar, "hello there")

        _, status = await command(env, workdir, "status")
        assert status["via"] == "bot" and status["running"] is True
        assert status["signed_on"] is True and status["screen_name"] == BOT
        assert status["healthy"] is True and status["store"]["conversations"] == 1

        _, users = await command(env, workdir, "users")
        assert users["via"] == "bot"
        entry = user_entry(users)
        conversation = entry["conversation_id"]
        assert conversation and entry["screen_name"] == USER and entry["pending"] == 0

        _, reset = await command(env, workdir, "reset", USER)
        assert reset == {
            "user": USER.lower(),
            "forgotten_conversation_id": conversation,
            "via": "bot",
        }
        # The bot really forgot it: the next IM starts a new conversation.
        await chat_once(oscar, "again")
        _, users = await command(env, workdir, "users")
        new_conversation = user_entry(users)["conversation_id"]
        assert new_conversation and new_conversation != conversation

        _, purged = await command(env, workdir, "purge", "--older-than", "0")
        assert purged["conversations_forgotten"] == 1 and purged["via"] == "bot"
        assert bot.exited is False  # never stopped or disturbed the bot
        await bot.wait_stderr(r"operator purge: 1 conversations")


async def test_commands_against_a_stopped_bot_open_the_state_file(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state", HEALTH_PORT=str(free_port()))
    async with running(*main_py(), env=env, cwd=workdir) as bot:
        await bot.wait_stderr(r"health and metrics on")
        await oscar.wait_online(BOT, timeout=WAIT)
        await chat_once(oscar, "remember me")
        bot.send_signal(signal.SIGTERM)
        assert (await bot.finish()).code == 0
    assert not (workdir / "state" / "admin.token").exists()  # the bot took its token away

    _, status = await command(env, workdir, "status")
    assert status["via"] == "state file" and status["running"] is False
    assert status["store"]["conversations"] == 1
    assert (
        "running: no (via the state file)"
        in (await run(*main_py("status"), env=env, cwd=workdir)).stdout
    )

    _, users = await command(env, workdir, "users")
    conversation = user_entry(users)["conversation_id"]
    text = (await run(*main_py("users"), env=env, cwd=workdir)).stdout
    assert text.splitlines()[0].startswith("SCREEN NAME")
    assert USER in text and "1 users (via the state file)" in text

    _, reset = await command(env, workdir, "reset", USER)
    assert reset["forgotten_conversation_id"] == conversation
    _, again = await command(env, workdir, "reset", USER)
    assert again["forgotten_conversation_id"] is None
    _, purged = await command(env, workdir, "purge", "--older-than", "30")
    assert purged["conversations_forgotten"] == 0


async def test_a_bot_that_cannot_be_asked_is_named_not_waited_for(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state", HEALTH_PORT="0")
    async with running(*main_py(), env=env, cwd=workdir):
        await oscar.wait_online(BOT, timeout=WAIT)
        result = await run(*main_py("users"), env=env, cwd=workdir)
    assert result.code == 1
    assert "a bot is running on" in result.stderr and "HEALTH_PORT" in result.stderr
    assert_no_traceback(result.output)


async def test_each_command_has_its_own_help_and_checks_its_input(workdir: Path) -> None:
    from tests.helpers.cli import clean_env

    for name, words in [
        ("users", "--limit"),
        ("reset", "SCREEN_NAME"),
        ("purge", "--older-than DAYS"),
        ("status", "--json"),
        ("doctor", "--skip-login"),
    ]:
        result = await run(*main_py(name, "--help"), env=clean_env(), cwd=workdir)
        assert result.code == 0, result.output
        assert result.stdout.startswith(f"usage: python main.py {name}"), result.stdout
        assert words in result.stdout
    missing = await run(*main_py("purge"), env=clean_env(), cwd=workdir)
    assert missing.code == 2 and "--older-than" in missing.stderr
    version = await run(*main_py("--version"), env=clean_env(), cwd=workdir)
    assert version.code == 0 and version.stdout.startswith("aimbot 0.")
