"""`python main.py doctor` against our devserver and Dify stand-in, healthy and broken."""

from __future__ import annotations

from pathlib import Path

from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from aimbot.doctor import ALL_TITLES
from tests.helpers.cli import (
    BOT,
    BOT_PASSWORD,
    DIFY_KEY,
    Finished,
    assert_no_traceback,
    bot_env,
    dify_fixture,  # noqa: F401 - fixture "dify"
    main_py,
    oscar_fixture,  # noqa: F401 - fixture "oscar"
    run,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)


def line_for(result: Finished, title: str) -> str:
    matches = [line for line in result.stdout.splitlines() if line[2:].startswith(f"{title}:")]
    assert len(matches) == 1, f"expected one {title!r} line in:\n{result.stdout}"
    return matches[0]


def assert_passed(result: Finished, *titles: str) -> None:
    for title in titles:
        assert line_for(result, title).startswith("✓ "), result.stdout


def assert_clean(result: Finished) -> None:
    assert_no_traceback(result.output)
    assert BOT_PASSWORD not in result.output
    assert DIFY_KEY not in result.output


async def doctor(env: dict[str, str], cwd: Path, *args: str) -> Finished:
    return await run(*main_py("doctor", *args), env=env, cwd=cwd)


async def test_doctor_passes_against_a_working_setup(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    data_dir = workdir / "state"
    result = await doctor(bot_env(oscar, dify, data_dir), workdir)

    assert result.code == 0, result.output
    assert len(result.stdout.splitlines()) == len(ALL_TITLES)
    assert_passed(result, *ALL_TITLES)
    assert "✗" not in result.stdout
    assert (data_dir / "aimbot.sqlite3").is_file()  # the data-dir check really wrote there
    assert oscar.stats.logins[BOT.lower()] >= 1  # the login check really signed on
    assert_clean(result)


async def test_doctor_names_a_wrong_password(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state", AIM_PASSWORD="not-the-password-123")
    result = await doctor(env, workdir)

    assert result.code == 1, result.output
    line = line_for(result, "AIM login works")
    assert line.startswith("✗ "), result.stdout
    assert "incorrect password (code 0x0005)" in line  # the same words as the bot's log line
    assert 'TROUBLESHOOTING.md, "Bad password or login rate-limited"' in line
    assert_passed(result, "config valid", "AIM server reachable", "Dify key accepted")
    assert "not-the-password-123" not in result.output
    assert_clean(result)


async def test_doctor_names_an_unreachable_aim_server(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state")
    await oscar.stop()  # its port is now closed: nothing listens there

    result = await doctor(env, workdir)

    assert result.code == 1, result.output
    server_line = line_for(result, "AIM server reachable")
    assert server_line.startswith("✗ ") and "connection refused" in server_line
    assert '"Cannot connect to the AIM server"' in server_line
    assert line_for(result, "AIM login works").startswith("– ")  # skipped, not failed twice
    assert_passed(result, "Dify URL reachable", "Dify key accepted", "data dir writable")
    assert_clean(result)


async def test_doctor_names_a_bad_dify_key(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state", DIFY_API_KEY="app-wrong-key-9f9f9f")
    result = await doctor(env, workdir, "--skip-login")

    assert result.code == 1, result.output
    key_line = line_for(result, "Dify key accepted")
    assert key_line.startswith("✗ ") and "rejected DIFY_API_KEY" in key_line
    assert '"Dify API failures"' in key_line
    assert line_for(result, "AIM login works").startswith("– ")  # --skip-login
    assert_passed(result, "Dify URL reachable", "AIM server reachable", "data dir writable")
    assert sum(oscar.stats.logins.values()) == 0  # --skip-login really did not sign on
    assert "app-wrong-key-9f9f9f" not in result.output
    assert_clean(result)


async def test_doctor_names_unreachable_dify_and_unwritable_data_dir(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    blocker = workdir / "a-file"
    blocker.write_text("not a directory")
    env = bot_env(oscar, dify, blocker / "state")  # a directory inside a file: never writable
    await dify.stop()

    result = await doctor(env, workdir, "--skip-login")

    assert result.code == 1, result.output
    url_line = line_for(result, "Dify URL reachable")
    assert url_line.startswith("✗ ") and "cannot connect" in url_line
    assert line_for(result, "Dify key accepted").startswith("– ")
    data_line = line_for(result, "data dir writable")
    assert data_line.startswith("✗ ") and '"Data dir not writable"' in data_line
    assert_clean(result)
