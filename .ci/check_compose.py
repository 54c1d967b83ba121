#!/usr/bin/env python3
"""Check docker-compose.yml without a Docker engine: python .ci/check_compose.py FILE

CI machines have no Docker, so `docker compose config` cannot vouch for the fleet file. This
reads it with PyYAML and checks what keeps a fleet of bots safe to run unattended: every bot
comes from the shared `x-aimbot: &aimbot` definition, reads its own secrets file under bots/,
restarts unless stopped, has a health check, keeps its state and its logs in volumes of its own,
publishes its health port (if at all) on a host port of its own, and no password or key is
written into the compose file itself. Given the file's path, it also checks that every env file
exists (a fresh clone has only bots/*.env.example: copy them as README says).

Exit status: 0 when the file is fine, 1 with the list of problems, 2 on wrong usage.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ANCHOR_KEY = "x-aimbot"
DATA_TARGET = "/app/data"
LOGS_TARGET = "/app/logs"
SECRETS_DIR = "bots"
TEMPLATE_ENV_FILE = "bots/example.env"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY", re.IGNORECASE)


def _mapping_items(node: yaml.Node) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    """(key text, key node, value node) of a mapping node, scalar keys only."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield str(key.value), key, value


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """YAML lets a later key silently replace an earlier one: a second bot-bob would hide one."""
    problems: list[str] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for text, key, value in _mapping_items(node):
                line = key.start_mark.line + 1
                if text in first_line and text != "<<":
                    problems.append(
                        f"{path}{text} (line {line}) repeats the key of line {first_line[text]}; "
                        "YAML keeps only the last one"
                    )
                first_line.setdefault(text, line)
                stack.append((value, f"{path}{text}."))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, path) for item in node.value)
    return problems


def _merges_anchor(service: yaml.Node, anchor: yaml.Node) -> bool:
    for text, _key, value in _mapping_items(service):
        if text != "<<":
            continue
        if value is anchor:
            return True
        if isinstance(value, yaml.SequenceNode) and any(item is anchor for item in value.value):
            return True
    return False


def _env_files(service: dict[str, Any]) -> list[str] | None:
    """The env_file entries as paths, or None when the value has an unusable shape."""
    raw = service.get("env_file")
    entries = raw if isinstance(raw, list) else [raw]
    paths = []
    for entry in entries:
        path = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(path, str) or not path.strip():
            return None
        paths.append(str(PurePosixPath(path.strip())))
    return paths


def _data_volume_sources(service: dict[str, Any], target_dir: str = DATA_TARGET) -> list[str]:
    """The sources mounted at /app/data (or `target_dir`; "" for an anonymous volume)."""
    sources = []
    volumes = service.get("volumes")
    for entry in volumes if isinstance(volumes, list) else []:
        if isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) == 1:
                source, target = "", parts[0]
            else:
                source, target = parts[0], parts[1]
        elif isinstance(entry, dict):
            source, target = str(entry.get("source") or ""), str(entry.get("target") or "")
        else:
            continue
        if target.rstrip("/") == target_dir:
            sources.append(source)
    return sources


def _published_host_ports(service: dict[str, Any]) -> list[str]:
    """The host port of each published port (two bots cannot both bind one, whatever the IP)."""
    published = []
    ports = service.get("ports")
    for entry in ports if isinstance(ports, list) else []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                published.append(str(entry["published"]))
        elif isinstance(entry, str | int):
            parts = str(entry).split("/")[0].split(":")
            if len(parts) >= 2:
                published.append(parts[-2])
    return published


def _environment_names(service: dict[str, Any]) -> list[str]:
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return [str(name) for name in environment]
    if isinstance(environment, list):
        return [str(item).split("=", 1)[0] for item in environment]
    return []


def _build_arg_names(service: dict[str, Any]) -> list[str]:
    build = service.get("build")
    args = build.get("args") if isinstance(build, dict) else None
    if isinstance(args, dict):
        return [str(name) for name in args]
    if isinstance(args, list):
        return [str(item).split("=", 1)[0] for item in args]
    return []


def _healthcheck_problem(service: dict[str, Any]) -> str | None:
    check = service.get("healthcheck")
    if isinstance(check, dict) and (
        check.get("disable") is True or check.get("test") in (["NONE"], "NONE")
    ):
        return "has its healthcheck disabled"
    if not isinstance(check, dict) or not check.get("test"):
        return "has no healthcheck (set one in x-aimbot)"
    return None


def _is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith(("/", ".", "~", "$"))


def check_service(
    name: str, service: Any, declared_volumes: set[str], uses_anchor: bool
) -> list[str]:
    """Problems of one service, each starting with its name."""
    if not isinstance(service, dict):
        return [f"service {name}: is not a mapping"]
    problems = []
    if not uses_anchor:
        problems.append(f"service {name}: does not start with `<<: *aimbot`")

    env_files = _env_files(service)
    if service.get("env_file") is None:
        problems.append(f"service {name}: has no env_file (its secrets go in bots/{name}.env)")
    elif env_files is None:
        problems.append(f"service {name}: env_file is not a path or a list of paths")
    else:
        for path in env_files:
            if PurePosixPath(path).parent != PurePosixPath(SECRETS_DIR) or not path.endswith(
                ".env"
            ):
                problems.append(
                    f"service {name}: env_file {path} is not a bots/<name>.env file "
                    "(only those are git-ignored)"
                )
            elif path == TEMPLATE_ENV_FILE:
                problems.append(
                    f"service {name}: env_file is the committed template {TEMPLATE_ENV_FILE}; "
                    "copy it to a bots/<name>.env of its own"
                )

    if service.get("restart") != "unless-stopped":
        problems.append(
            f"service {name}: restart is {service.get('restart')!r}, expected 'unless-stopped'"
        )

    health = _healthcheck_problem(service)
    if health:
        problems.append(f"service {name}: {health}")

    sources = _data_volume_sources(service)
    if not sources:
        problems.append(f"service {name}: has no volume mounted at {DATA_TARGET}")
    for source in sources:
        if not source:
            problems.append(
                f"service {name}: {DATA_TARGET} is an anonymous volume (lost when the container "
                "is recreated); give it a named volume"
            )
        elif _is_named_volume(source) and source not in declared_volumes:
            problems.append(
                f"service {name}: volume {source} is not declared under the top-level volumes:"
            )

    for variable in _environment_names(service):
        if SECRET_NAME.search(variable):
            problems.append(
                f"service {name}: environment sets {variable}; secrets belong in its env_file"
            )
    for variable in _build_arg_names(service):
        if SECRET_NAME.search(variable):
            problems.append(f"service {name}: build arg {variable} looks like a secret")
    return problems


def check_compose(text: str, base_dir: Path | None = None) -> list[str]:
    """Every problem in a compose file's text; empty when the fleet file is fine.

    With `base_dir` (the compose file's directory) every env file must also exist there.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"not valid YAML: {e}"]
    if root is None:
        return ["the file is empty"]
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return ["the top level is not a mapping"]

    problems = _duplicate_keys(root)
    top_nodes = {text: value for text, _key, value in _mapping_items(root)}
    anchor = top_nodes.get(ANCHOR_KEY)
    if anchor is None or not isinstance(anchor, yaml.MappingNode):
        problems.append(f"no `{ANCHOR_KEY}: &aimbot` mapping that the services share")
    if "services" not in top_nodes:
        return [*problems, "no services: section"]
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        return [*problems, "services: is empty or not a mapping"]

    declared = data.get("volumes") or {}
    declared_volumes = set(declared) if isinstance(declared, dict) else set()
    service_nodes = {text: value for text, _key, value in _mapping_items(top_nodes["services"])}
    owners: dict[tuple[str, str], str] = {}
    for name, service in services.items():
        node = service_nodes.get(str(name))
        uses_anchor = anchor is not None and node is not None and _merges_anchor(node, anchor)
        problems += check_service(str(name), service, declared_volumes, uses_anchor)
        if not isinstance(service, dict):
            continue
        env_files = _env_files(service) or []
        if base_dir is not None:
            for path in env_files:
                if not (base_dir / path).is_file():
                    example = f"{path}.example"
                    hint = (
                        f"cp {example} {path} and fill it in"
                        if (base_dir / example).is_file()
                        else "python3 main.py fleet add NAME writes one"
                    )
                    problems.append(f"service {name}: env_file {path} does not exist ({hint})")
        shared = [("env_file", path) for path in env_files]
        shared += [("data volume", source) for source in _data_volume_sources(service) if source]
        shared += [
            ("log volume", source)
            for source in _data_volume_sources(service, LOGS_TARGET)
            if source
        ]
        shared += [("published port", port) for port in _published_host_ports(service)]
        for what, value in shared:
            owner = owners.setdefault((what, value), str(name))
            if owner != name:
                problems.append(f"service {name}: shares {what} {value} with {owner}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: check_compose.py docker-compose.yml\n")
        return 2
    path = Path(argv[0])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        sys.stderr.write(f"{path}: cannot read it: {e}\n")
        return 1
    problems = check_compose(text, path.resolve().parent)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{path}: {len(problems)} {noun}:"] + [f"  - {p}" for p in problems]
        sys.stderr.write("\n".join(lines) + "\n")
        return 1
    services = yaml.safe_load(text)["services"]
    sys.stdout.write(f"{path}: OK ({len(services)} services: {', '.join(map(str, services))})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
