"""What every command prints: a table for people, then (with --json) one JSON object last.

A figure without the command line, date and machine that produced it cannot be compared with the
next run, so those travel with every report, in the table and in the JSON alike.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

Op = Literal["<=", "<", ">=", ">", "=="]
Number = int | float


@dataclass(frozen=True)
class Machine:
    nproc: int
    cpu_model: str
    python: str
    platform: str

    def describe(self) -> str:
        return f"{self.nproc} × {self.cpu_model}, Python {self.python}, {self.platform}"


def parse_cpu_model(cpuinfo: str) -> str:
    """The first "model name" in /proc/cpuinfo text ("unknown" when there is none)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown"


def machine_info(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> Machine:
    try:
        cpu_model = parse_cpu_model(cpuinfo_path.read_text(errors="replace"))
    except OSError:
        cpu_model = platform.processor() or "unknown"
    return Machine(
        nproc=os.cpu_count() or 1,
        cpu_model=cpu_model,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
    )


ROOT = Path(__file__).resolve().parents[1]


def source_revision(root: Path = ROOT) -> str:
    """The commit the bot under measurement was built from, flagged when its code is modified.

    Other work lands in the same checkout while benchmarks run, so a figure is tied to the
    exact code that produced it, or marked as not reproducible from a commit.
    """
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "aimbot", "main.py"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} + uncommitted changes in aimbot/" if changed else head


@dataclass(frozen=True)
class Target:
    key: str
    op: Op
    bound: Number

    def met(self, value: Number) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.op == "<=":
            return value <= self.bound
        if self.op == "<":
            return value < self.bound
        if self.op == ">=":
            return value >= self.bound
        if self.op == ">":
            return value > self.bound
        return value == self.bound

    def describe(self) -> str:
        return f"{self.key} {self.op} {_number(self.bound)}"


@dataclass(frozen=True)
class Figure:
    """One measured number; `key` is its stable JSON name, `label` and `unit` are for people."""

    key: str
    value: Number
    label: str
    unit: str = ""


@dataclass(frozen=True)
class Report:
    command: str
    command_line: str
    date: str
    machine: Machine
    revision: str
    figures: tuple[Figure, ...]
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def value(self, key: str) -> Number:
        for figure in self.figures:
            if figure.key == key:
                return figure.value
        raise KeyError(f"{self.command} report has no figure {key!r}")

    def verdicts(self) -> list[tuple[Target, bool]]:
        return [(t, t.met(self.value(t.key))) for t in self.targets]


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(["python", "-m", "bench", *argv])


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def make_report(
    command: str,
    argv: Sequence[str],
    figures: Sequence[Figure],
    *,
    targets: Sequence[Target] = (),
    notes: Sequence[str] = (),
    machine: Machine | None = None,
    date: str | None = None,
    revision: str | None = None,
) -> Report:
    keys = [f.key for f in figures]
    duplicated = {k for k in keys if keys.count(k) > 1}
    if duplicated:
        raise ValueError(f"figure keys must be unique: {sorted(duplicated)}")
    missing = [t.key for t in targets if t.key not in keys]
    if missing:
        raise ValueError(f"targets name figures that were not measured: {missing}")
    return Report(
        command=command,
        command_line=command_line(argv),
        date=date or now_utc(),
        machine=machine or machine_info(),
        revision=revision or source_revision(),
        figures=tuple(figures),
        targets=tuple(targets),
        notes=tuple(notes),
    )


def _number(value: Number) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value else "0"


def render_table(report: Report) -> str:
    lines = [
        f"bench {report.command}",
        f"  command: {report.command_line}",
        f"  date:    {report.date}",
        f"  machine: {report.machine.describe()}",
        f"  code:    {report.revision}",
        "",
    ]
    width_label = max((len(f.label) for f in report.figures), default=0)
    width_value = max((len(_value_text(f)) for f in report.figures), default=0)
    for f in report.figures:
        lines.append(f"  {f.label:<{width_label}}  {_value_text(f):>{width_value}}  [{f.key}]")
    verdicts = report.verdicts()
    if verdicts:
        lines.append("")
        lines.append("  targets:")
        for target, met in verdicts:
            mark = "met   " if met else "MISSED"
            value = _number(report.value(target.key))
            lines.append(f"    {mark} {target.describe()} (measured {value})")
    if report.notes:
        lines.append("")
        lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines)


def _value_text(figure: Figure) -> str:
    text = _number(figure.value)
    return f"{text} {figure.unit}" if figure.unit else text


def _json_value(value: Number) -> Number | None:
    # JSON has no inf/nan: an undefined figure is null rather than an unparsable line.
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


def as_json(report: Report) -> dict[str, object]:
    payload: dict[str, object] = {"bench": report.command}
    payload.update({f.key: _json_value(f.value) for f in report.figures})
    payload["targets"] = {
        t.key: {"target": f"{t.op} {_number(t.bound)}", "met": met} for t, met in report.verdicts()
    }
    payload["all_targets_met"] = all(met for _, met in report.verdicts())
    payload["meta"] = {
        "command_line": report.command_line,
        "date": report.date,
        "revision": report.revision,
        "machine": {
            "nproc": report.machine.nproc,
            "cpu_model": report.machine.cpu_model,
            "python": report.machine.python,
            "platform": report.machine.platform,
        },
        "notes": list(report.notes),
    }
    return payload


def json_line(report: Report) -> str:
    return json.dumps(as_json(report), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def emit(report: Report, *, with_json: bool, out: TextIO | None = None) -> None:
    """The table; then, when asked, the JSON object as the very last line."""
    stream = out if out is not None else sys.stdout
    stream.write(render_table(report) + "\n")
    if with_json:
        stream.write(json_line(report) + "\n")
    stream.flush()
