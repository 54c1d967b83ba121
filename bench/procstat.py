"""RSS and CPU time of a process from /proc (psutil is deliberately not a dependency)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcError(Exception):
    """The process is gone or /proc said something we cannot read."""


@dataclass(frozen=True)
class ProcSample:
    rss_bytes: int
    cpu_seconds: float  # user + system, since the process started


def parse_vmrss(status_text: str) -> int:
    """Bytes of "VmRSS:  1234 kB" in /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                raise ProcError(f"unreadable VmRSS line: {line!r}")
            unit = parts[2].lower() if len(parts) > 2 else "kb"
            if unit != "kb":
                raise ProcError(f"VmRSS in unexpected unit {parts[2]!r}")
            return int(parts[1]) * 1024
    raise ProcError("no VmRSS line (a zombie or kernel thread?)")


def parse_cpu_ticks(stat_text: str) -> int:
    """utime + stime, in clock ticks, from /proc/<pid>/stat.

    The command name (field 2) may contain spaces and parentheses, so fields are counted from
    the LAST ")" — field 3 is then the first one after it, utime is field 14 and stime 15.
    """
    _, paren, rest = stat_text.rpartition(")")
    if not paren:
        raise ProcError("no command name in /proc/<pid>/stat")
    fields = rest.split()
    if len(fields) < 13:
        raise ProcError(f"/proc/<pid>/stat has only {len(fields) + 2} fields")
    utime, stime = fields[11], fields[12]
    if not (utime.isdigit() and stime.isdigit()):
        raise ProcError(f"utime/stime are not numbers: {utime!r}, {stime!r}")
    return int(utime) + int(stime)


def sample(pid: int | str = "self", proc: Path = Path("/proc")) -> ProcSample:
    base = proc / str(pid)
    try:
        status = (base / "status").read_text()
        stat = (base / "stat").read_text()
    except OSError as e:
        raise ProcError(f"cannot read {base}: {e.strerror or e}") from e
    return ProcSample(parse_vmrss(status), parse_cpu_ticks(stat) / CLOCK_TICKS)
