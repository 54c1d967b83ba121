"""`python main.py fleet add NAME`: a new bot in the compose fleet that passes the CI checker."""

from __future__ import annotations

import io
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from aimbot.cli import main as cli_main
from aimbot.fleet import FleetError, add_bot
from aimbot.fleet import main as fleet_main
from tests.helpers.ops import REPO_ROOT, load_compose_checker

check_compose = load_compose_checker().check_compose


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / "bots").mkdir()
    shutil.copy(REPO_ROOT / "bots" / "example.env", tmp_path / "bots" / "example.env")
    for name in ("alice", "bob"):
        shutil.copy(REPO_ROOT / "bots" / f"{name}.env.example", tmp_path / "bots" / f"{name}.env")
    return tmp_path / "docker-compose.yml"


def test_fleet_add_writes_the_env_file_and_a_service_that_passes_the_checker(
    fleet: Path,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert fleet_main(["add", "carol", "--compose", str(fleet)], out, err) == 0, err.getvalue()
    assert "http://127.0.0.1:8083/" in out.getvalue()
    env_file = fleet.parent / "bots" / "carol.env"
    assert env_file.read_text() == (fleet.parent / "bots" / "example.env").read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = fleet.read_text()
    assert check_compose(text, fleet.parent) == []
    data = yaml.safe_load(text)
    carol = data["services"]["bot-carol"]
    assert carol["env_file"] == "bots/carol.env"
    assert carol["ports"] == ["127.0.0.1:8083:8080"]
    assert carol["volumes"] == ["carol-data:/app/data", "carol-logs:/app/logs"]
    assert carol["restart"] == "unless-stopped"  # merged from x-aimbot
    assert {"carol-data", "carol-logs"} <= set(data["volumes"])
    assert "# A fleet of bots" in text  # comments survive
    # The next bot takes the next port.
    _, port = add_bot(fleet, "dave")
    assert port == 8084
    assert check_compose(fleet.read_text(), fleet.parent) == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Carol", "use 1-31 lower-case letters"),
        ("../x", "use 1-31 lower-case letters"),
        ("alice", "already has a service bot-alice"),
    ],
)
def test_fleet_add_refuses_bad_or_taken_names_and_changes_nothing(
    fleet: Path, name: str, problem: str
) -> None:
    before = fleet.read_text()
    with pytest.raises(FleetError, match=problem):
        add_bot(fleet, name)
    assert fleet.read_text() == before


def test_fleet_add_keeps_an_existing_env_file(fleet: Path) -> None:
    (fleet.parent / "bots" / "erin.env").write_text("AIM_USERNAME=erin\n")
    with pytest.raises(FleetError, match="exists already"):
        add_bot(fleet, "erin")
    assert (fleet.parent / "bots" / "erin.env").read_text() == "AIM_USERNAME=erin\n"


def test_fleet_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["fleet", "add", "--help"]) == 0
    assert "python main.py fleet add" in capsys.readouterr().out
