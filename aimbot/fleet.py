"""`python main.py fleet add NAME`: one more bot in the docker compose fleet, without YAML by hand.

It writes bots/NAME.env from the template (bots/example.env) and appends a service to
docker-compose.yml that merges the shared `x-aimbot` definition, with its own data and log
volumes and its own published health/metrics port on the host's loopback (the next free one
from 8081). The compose file is edited as text, so its comments survive; the new file is then
checked like CI checks it (.ci/check_compose.py) and left untouched if that fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,30}")
FIRST_PORT: Final = 8081
CONTAINER_HEALTH_PORT: Final = 8080
TEMPLATE: Final = Path("bots/example.env")
PUBLISHED: Final = re.compile(r'"?127\.0\.0\.1:(\d+):\d+"?')


class FleetError(Exception):
    """The fleet cannot take this bot (bad name, exists already, files missing)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py fleet",
        description="Manage the docker compose fleet (docker-compose.yml and bots/*.env).",
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="add")
    add = commands.add_parser(
        "add",
        help="add a bot: bots/NAME.env from the template and a service bot-NAME",
        description=(
            "Add a bot: writes bots/NAME.env from bots/example.env (fill in its screen name, "
            "password and Dify key) and appends the service bot-NAME to docker-compose.yml, "
            "with its own volumes and its own health/metrics port on 127.0.0.1."
        ),
    )
    add.add_argument("name", metavar="NAME", help="lower-case letters, digits and '-'")
    add.add_argument(
        "--compose",
        type=Path,
        default=Path("docker-compose.yml"),
        metavar="FILE",
        help="the compose file (default: docker-compose.yml; bots/ is next to it)",
    )
    return parser


def main(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        env_file, port = add_bot(args.compose, args.name)
    except FleetError as e:
        print(f"aimbot fleet: {e}", file=err)
        return 1
    print(f"added bot-{args.name}: health and metrics on http://127.0.0.1:{port}/", file=out)
    print(f"next: fill in {env_file}, then: docker compose up -d --build", file=out)
    return 0


def service_block(name: str, port: int) -> str:
    return (
        f"  bot-{name}:\n"
        "    <<: *aimbot\n"
        f"    env_file: bots/{name}.env\n"
        "    ports:\n"
        f'      - "127.0.0.1:{port}:{CONTAINER_HEALTH_PORT}"\n'
        "    volumes:\n"
        f"      - {name}-data:/app/data\n"
        f"      - {name}-logs:/app/logs\n"
        "\n"
    )


def add_bot(compose: Path, name: str) -> tuple[Path, int]:
    """Write bots/NAME.env and the service; returns (env file, published port)."""
    if not NAME.fullmatch(name):
        raise FleetError(f"bot name {name!r}: use 1-31 lower-case letters, digits and '-'")
    try:
        text = compose.read_text(encoding="utf-8")
    except OSError as e:
        raise FleetError(f"cannot read {compose}: {e.strerror or e}") from e
    root = compose.parent
    template = root / TEMPLATE
    env_file = root / "bots" / f"{name}.env"
    if re.search(rf"^  bot-{re.escape(name)}:", text, re.MULTILINE):
        raise FleetError(f"{compose} already has a service bot-{name}")
    if env_file.exists():
        raise FleetError(f"{env_file} exists already; remove it or choose another name")
    if not template.is_file():
        raise FleetError(f"the template {template} is missing")
    volumes_at = re.search(r"^volumes:\s*$", text, re.MULTILINE)
    if volumes_at is None:
        raise FleetError(f"{compose} has no top-level volumes: section to extend")
    used = {int(port) for port in PUBLISHED.findall(text)}
    port = next(p for p in range(FIRST_PORT, 65536) if p not in used)
    head, tail = text[: volumes_at.start()], text[volumes_at.start() :]
    new_text = head + service_block(name, port) + tail.rstrip("\n") + "\n"
    new_text += f"  {name}-data:\n  {name}-logs:\n"
    problems = _check(new_text)
    if problems:
        raise FleetError("the result would not pass the compose check: " + "; ".join(problems))
    shutil.copyfile(template, env_file)
    env_file.chmod(0o600)
    compose.write_text(new_text, encoding="utf-8")
    return env_file, port


def _check(text: str) -> list[str]:
    """The CI compose checker's verdict on the structure (env files are written after)."""
    checker = Path(__file__).resolve().parents[1] / ".ci" / "check_compose.py"
    spec = importlib.util.spec_from_file_location("check_compose", checker)
    if spec is None or spec.loader is None:  # an installed copy without .ci: skip the check
        return []
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    problems: list[str] = module.check_compose(text)
    return problems
