"""`python main.py --demo`: three parts up, and a terminal-client user gets an answer."""

from __future__ import annotations

import shlex
import signal
import socket
from pathlib import Path

from aimbot.demo import DEMO_BOT_PASSWORD
from tests.helpers.cli import (
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
