"""The docs can be trusted: every docs/… path (and § section) named in the code exists, and every
command in README's code blocks is run by a test or by .ci/run (checked against that list)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT

# A path, then any "§N" / ", §N.M" / "-§N" after it (a line break and "#" between allowed).
REFERENCE = re.compile(r"docs/([\w./-]+\.md)((?:(?:,|-|–)?\s*#?\s*§\d+(?:\.\d+)?)*)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
SOURCES = [
    path
    for folder in ("aimbot", "bench", "tests", ".ci")
    for path in sorted((ROOT / folder).rglob("*.py"))
]


def headings(doc: Path) -> set[str]:
    """Section numbers of a doc: "## 4. Login" gives "4", "### 12.1 Lengths" gives "12.1"."""
    found = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", doc.read_text(encoding="utf-8"), re.M)
    return set(found)


def references() -> list[tuple[str, str, str]]:
    """(source file, doc path, section or "") for every docs/ reference in the code."""
    found = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for doc, sections in REFERENCE.findall(text):
            name = str(source.relative_to(ROOT))
            found.append((name, doc, ""))
            found += [(name, doc, number) for number in SECTION.findall(sections)]
    return found


def test_every_docs_reference_in_the_code_exists_with_its_section() -> None:
    refs = references()
    assert len({doc for _, doc, _ in refs}) >= 2 and len(refs) >= 49
    for source, doc, section in refs:
        path = ROOT / "docs" / doc
        assert path.is_file(), f"{source} names docs/{doc}, which does not exist"
        if section:
            assert section in headings(path), f"{source}: docs/{doc} has no section §{section}"


def test_the_code_no_longer_points_outside_the_repository() -> None:
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        if source.name == "test_docs_truth.py":
            continue
        assert not re.search(r"\bdoc §", text), f"{source}: 'doc §N' (say docs/… §N)"
        assert "../shared/docs" not in text, source


# Each README command (as a regex) -> where it is exercised: (file, text that file must contain).
# The list is verified below: the file exists and really contains the text.
EXERCISED: dict[str, tuple[str, str]] = {
    r"python3 main\.py --demo": (
        "tests/e2e/test_cli_demo.py",
        'main_py("--demo", "--aim-port", "0")',
    ),
    r"python3 main\.py test": (".ci/run", "python3 main.py test"),
    r"\.venv/bin/python main\.py chat --server \S+ --port \d+ --screen-name \S+ --password \S+ "
    r"--peer \S+": ("tests/e2e/test_cli_demo.py", "test_demo_answers_the_printed_chat_command"),
    r"python3 main\.py status": ("tests/e2e/test_cli_admin.py", '"status"'),
    r"python3 main\.py users": ("tests/e2e/test_cli_admin.py", '"users"'),
    r'python3 main\.py reset "[^"]+"': ("tests/e2e/test_cli_admin.py", '"reset", USER'),
    r"python3 main\.py purge --older-than \d+": (
        "tests/e2e/test_cli_admin.py",
        '"purge", "--older-than", "30"',
    ),
    r"cp bots/(alice|bob)\.env\.example bots/\1\.env": (
        "tests/unit/test_compose.py",
        "for command in commands:",
    ),
    # No Docker engine in CI: the compose file it would start is checked as .ci/run does, on a
    # copy with the example env files copied as above.
    r"docker compose up -d --build": (".ci/run", '.ci/check_compose.py" docker-compose.yml'),
}
COMMAND_START = re.compile(r"^\s*(python3?|\.venv/bin/python|cp|docker|pip)\b")


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", readme, re.S | re.M):
        if language not in ("", "sh", "bash", "console"):
            continue
        for line in body.splitlines():
            if COMMAND_START.match(line):
                commands.append(line.split("  #", 1)[0].strip())
    return commands


def test_readme_quickstart_commands_come_first() -> None:
    assert readme_commands()[:2] == ["python3 main.py --demo", "python3 main.py test"]


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_is_exercised(command: str) -> None:
    matches = [pattern for pattern in EXERCISED if re.fullmatch(pattern, command)]
    assert matches, f"README command {command!r} is run by no test (add it to EXERCISED)"
    for pattern in matches:
        where, marker = EXERCISED[pattern]
        text = (ROOT / where).read_text(encoding="utf-8")
        assert marker in text, f"{where} does not contain {marker!r} any more"


def test_the_exercised_list_has_no_stale_entries() -> None:
    commands = readme_commands()
    for pattern in EXERCISED:
        assert any(re.fullmatch(pattern, c) for c in commands), f"{pattern!r} is not in README"
