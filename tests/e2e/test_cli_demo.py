"""`python main.py --demo`: three parts up, and a terminal-client user gets an answer."""

from __future__ import annotations

import re
import shlex
import signal
import socket
from pathlib import Path

from aimbot.demo import DEMO_BOT_PASSWORD, DEMO_DATA_DIR, choose_dify, demo_overrides
from aimbot.devserver.dify_standin import AnswerContext, DifyStandIn
from tests.helpers.cli import (
    DIFY_KEY,
    PYTHON,
    assert_no_traceback,
    clean_env,
    main_py,
    run,
    running,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)


async def test_demo_answers_the_printed_chat_command(workdir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    env = clean_env(DATA_DIR=str(data_dir))

    async with running(*main_py("--demo", "--aim-port", "0"), env=env, cwd=workdir) as demo:
        port_line = await demo.wait_stdout(r"OSCAR server: 127\.0\.0\.1:(\d+)")
        port = int(port_line.group(1))
        assert port > 0
        await demo.wait_stdout(r"Dify: local stand-in at http://127\.0\.0\.1:\d+/v1")
        command = (await demo.wait_stdout(r"^\s+(\S+ \S+main\.py chat .*)$")).group(1)

        # Run exactly what the demo told the user to run, plus the scripted-check flags.
        argv = shlex.split(command)
        assert argv[0] == PYTHON
        assert argv[argv.index("--port") + 1] == str(port)
        reply = await run(
            *argv[1:], "--send", "hello", "--wait-reply", "20", env=clean_env(), cwd=workdir
        )
        assert reply.code == 0, reply.output
        # The stand-in echoes the text and counts turns; the bot renders it as AIM HTML.
        assert "you said 'hello'; this is turn 1 of conversation" in reply.stdout

        demo.send_signal(signal.SIGINT)  # what Ctrl-C does
        finished = await demo.finish()

    assert finished.code == 0, finished.output
    assert (data_dir / "aimbot.sqlite3").is_file()  # state went to DATA_DIR
    assert_no_traceback(finished.output)
    assert DEMO_BOT_PASSWORD not in finished.stderr  # the logs redact even the demo password


async def test_demo_port_in_use_is_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(DATA_DIR=str(tmp_path / "demo-data"))
        result = await run(*main_py("--demo", "--aim-port", str(port)), env=env, cwd=workdir)

    assert result.code == 1, result.output
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--aim-port 0" in result.stderr
    assert_no_traceback(result.output)


async def test_demo_uses_the_configured_dify_app(workdir: Path, tmp_path: Path) -> None:
    def real_app(ctx: AnswerContext) -> str:
        return f"the configured app heard {ctx.query!r}"

    async with DifyStandIn(api_key=DIFY_KEY, answer=real_app) as configured:
        # Key from .env, URL from the environment: both places count.
        (workdir / ".env").write_text(f"DIFY_API_KEY={DIFY_KEY}\n")
        env = clean_env(DATA_DIR=str(tmp_path / "demo-data"), DIFY_API_URL=configured.url)
        async with running(*main_py("--demo", "--aim-port", "0"), env=env, cwd=workdir) as demo:
            await demo.wait_stdout(f"Dify: your Dify app at {re.escape(configured.url)} ")
            command = (await demo.wait_stdout(r"^\s+(\S+ \S+main\.py chat .*)$")).group(1)
            argv = [*shlex.split(command)[1:], "--send", "ping", "--wait-reply", "20"]
            reply = await run(*argv, env=clean_env(), cwd=workdir)
            demo.send_signal(signal.SIGTERM)
            finished = await demo.finish()

    assert reply.code == 0, reply.output
    assert "the configured app heard 'ping'" in reply.stdout
    assert finished.code == 0, finished.output
    assert DIFY_KEY not in finished.output


def test_demo_chooses_the_stand_in_unless_a_real_key_is_set() -> None:
    assert not choose_dify({}, {}).use_real_app
    assert not choose_dify({"DIFY_API_URL": "https://dify.example/v1"}, {}).use_real_app
    assert not choose_dify({}, {"DIFY_API_KEY": "app-change-me"}).use_real_app  # placeholder
    assert not choose_dify({"DIFY_API_KEY": "  "}, {}).use_real_app
    assert choose_dify({"DIFY_API_KEY": "app-real"}, {}).use_real_app
    assert choose_dify({}, {"DIFY_API_KEY": "app-real"}).use_real_app


def test_demo_overrides_keep_operator_state_apart() -> None:
    stand_in = demo_overrides({}, aim_port=5190, dify_url="http://x/v1", dify_key="app-k")
    assert stand_in["DATA_DIR"] == str(DEMO_DATA_DIR)
    assert stand_in["HEALTH_PORT"] == "0" and stand_in["LOG_FILE"] == ""
    assert stand_in["DIFY_API_KEY"] == "app-k"

    env = {"DATA_DIR": "/srv/demo", "HEALTH_PORT": "9000", "LOG_FILE": "demo.log"}
    real = demo_overrides(env, aim_port=0, dify_url=None, dify_key=None)
    assert real["DATA_DIR"] == "/srv/demo"
    assert "HEALTH_PORT" not in real and "LOG_FILE" not in real  # the environment's values apply
    assert "DIFY_API_KEY" not in real and "DIFY_API_URL" not in real
    assert real["AIM_USERNAME"] == "aimbot" and real["AIM_PORT"] == "0"
