"""README.md and TROUBLESHOOTING.md stay true to the code the operator runs."""

from __future__ import annotations

import re

import pytest

from aimbot.config.settings import ENV_NAMES, PLACEHOLDERS, load_settings
from aimbot.doctor import Section
from bench.cli import COMMANDS
from tests.helpers.cli import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
TROUBLESHOOTING = (ROOT / "TROUBLESHOOTING.md").read_text(encoding="utf-8")

# The list: the original project's sections plus ours.
REQUIRED_SECTIONS = (
    "Cannot connect to the AIM server",
    "Connection drops",
    '"clear" errors',
    "Short messages not answered",
    "Dify API failures",
    "429 rate limits",
    "Container env vars",
    'Multiple instances ("signed on elsewhere")',
    "Bad password or login rate-limited",
    "Server rate limits and the is_bot flag",
    "Replies split into parts",
    "Health check failing",
    "Data dir not writable",
    "Config errors",
)


def sections(markdown: str) -> dict[str, str]:
    """Level-2 heading -> the text up to the next level-2 heading."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


TROUBLE_SECTIONS = sections(TROUBLESHOOTING)


def test_every_doctor_fix_names_an_existing_section() -> None:
    for section in Section:
        assert section.value in TROUBLE_SECTIONS, section


@pytest.mark.parametrize("title", REQUIRED_SECTIONS)
def test_troubleshooting_section_has_symptom_cause_fix_and_doctor_line(title: str) -> None:
    body = TROUBLE_SECTIONS.get(title)
    assert body is not None, f"missing section {title!r}"
    for part in ("**Symptom.**", "**Cause", "**Fix", "**Doctor line"):
        assert part in body, f"{title!r} lacks {part}"


def test_troubleshooting_links_resolve() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-") for title in TROUBLE_SECTIONS
    }
    for link in re.findall(r"\]\(#([^)]+)\)", TROUBLESHOOTING):
        assert link in anchors, link


def test_readme_quickstart_is_exactly_the_two_commands() -> None:
    quickstart = sections(README)["Quickstart"]
    first_block = re.search(r"```\n(.*?)```", quickstart, flags=re.DOTALL)
    assert first_block is not None
    assert first_block.group(1).splitlines() == ["python3 main.py --demo", "python3 main.py test"]


def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE))
    assert set(rows) == set(ENV_NAMES)
    required = {name: "x-" + name.lower() for name in PLACEHOLDERS}
    defaults = dict(load_settings(required, env_file=None).describe())
    for name in ENV_NAMES:
        shown = rows[name].strip()
        if name in PLACEHOLDERS:
            assert shown == "(required)", name
        elif defaults[name] == "":
            assert shown == "(empty)", name
        else:
            assert shown == f"`{defaults[name]}`", name


def test_docs_benchmarks_documents_every_benchmark_command_with_figures() -> None:
    section = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        assert f"python -m bench {command}" in section, command
    assert "Latest figures" in section and "commit" in section
    summary = sections(README)["Benchmarks"].strip()
    assert len(summary.splitlines()) <= 6 and "docs/benchmarks.md" in summary


def test_every_troubleshooting_reference_in_the_code_names_an_existing_section() -> None:
    """'see TROUBLESHOOTING.md, "X"' in any message must lead to a real heading (issue 13)."""
    headings = list(TROUBLE_SECTIONS)
    found = 0
    for path in (ROOT / "aimbot").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r'TROUBLESHOOTING\.md, (?:section )?\\?"([^"\\]+)\\?"', text):
            found += 1
            assert any(h.startswith(name) for h in headings), f"{path.name}: {name!r}"
    assert found >= 5
