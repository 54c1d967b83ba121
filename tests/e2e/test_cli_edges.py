"""Edges an operator trips over, each with a clear message instead of silence or a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aimbot.devserver.dify_standin import DifyStandIn
from aimbot.devserver.oscar_server import OscarServer
from aimbot.store import Store, StoreError
from tests.helpers.cli import (
    assert_no_traceback,
    bot_env,
    clean_env,
    dify_fixture,  # noqa: F401 - fixture "dify"
    main_py,
    oscar_fixture,  # noqa: F401 - fixture "oscar"
    run,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)


@pytest.mark.parametrize("command", [(), ("--check-config",), ("doctor",), ("users",)])
async def test_a_named_env_file_that_does_not_exist_is_an_error(
    workdir: Path, command: tuple[str, ...]
) -> None:
    result = await run(*main_py(*command, "--env-file", "/nope/.env"), env=clean_env(), cwd=workdir)
    assert result.code == 2, result.output
    assert "--env-file /nope/.env does not exist" in result.stderr
    assert_no_traceback(result.output)


async def test_a_dify_url_without_v1_is_flagged_by_check_config(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    base = dify.url.removesuffix("/v1")
    assert base != dify.url
    env = bot_env(oscar, dify, workdir / "state", DIFY_API_URL=base)
    result = await run(*main_py("--check-config"), env=env, cwd=workdir)
    assert result.code == 0, result.output
    assert f"warning: DIFY_API_URL {base} does not end in /v1" in result.stderr
    good = await run(*main_py("--check-config"), env=bot_env(oscar, dify, workdir), cwd=workdir)
    assert "warning" not in good.stderr


async def test_doctor_never_calls_a_404_reachable(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state", DIFY_API_URL=dify.url.removesuffix("/v1"))
    result = await run(*main_py("doctor", "--skip-login"), env=env, cwd=workdir)
    assert result.code == 1, result.output
    line = next(x for x in result.stdout.splitlines() if "Dify URL reachable" in x)
    assert line.startswith("✗ ") and "HTTP 404" in line and "/v1" in line, line
    assert "✓ Dify URL reachable" not in result.stdout


async def test_doctor_json_is_one_object_with_every_check(
    oscar: OscarServer, dify: DifyStandIn, workdir: Path
) -> None:
    env = bot_env(oscar, dify, workdir / "state")
    result = await run(*main_py("doctor", "--json", "--skip-login"), env=env, cwd=workdir)
    assert result.code == 0, result.output
    body = json.loads(result.stdout)
    assert body["ok"] is True and body["exit_code"] == 0
    statuses = {c["check"]: c["status"] for c in body["checks"]}
    assert statuses["AIM login works"] == "skip"
    assert statuses["Dify key accepted"] == "pass" and len(statuses) == 6
    broken = await run(*main_py("doctor", "--json"), env=clean_env(AIM_USERNAME="x"), cwd=workdir)
    body = json.loads(broken.stdout)
    assert broken.code == 2 and body["exit_code"] == 2
    assert body["checks"][0]["status"] == "fail" and "AIM_PASSWORD" in body["checks"][0]["detail"]


@pytest.mark.parametrize("inside", [False, True])
async def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path, inside: bool) -> None:
    blocker = tmp_path / "hostname"
    blocker.write_text("not a directory\n")
    data_dir = blocker / "state" if inside else blocker
    with pytest.raises(StoreError) as caught:
        await Store.open(data_dir / "aimbot.sqlite3")
    assert str(caught.value) == (
        f"cannot open the state database: DATA_DIR {data_dir}: {blocker} is a file, not a directory"
    )


@pytest.mark.skipif(shutil.which("python3", path="/usr/bin") is None, reason="no /usr/bin/python3")
def test_python_m_aimbot_outside_the_venv_says_what_to_do(workdir: Path) -> None:
    system = "/usr/bin/python3"
    env = clean_env()
    probe = subprocess.run(
        [system, "-c", "import aiohttp"], env=env, cwd=workdir, capture_output=True, timeout=60
    )
    if probe.returncode == 0:
        pytest.skip("the system Python has the dependencies installed")
    result = subprocess.run(
        [system, "-m", "aimbot", "--version"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "python3 main.py" in result.stderr and "requirements.txt" in result.stderr
    assert "ModuleNotFoundError" not in result.stderr and "Traceback" not in result.stderr
