"""RSS and CPU time of a process, and the machine's stolen CPU time, from /proc (psutil is
deliberately not a dependency)."""

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


@dataclass(frozen=True)
class CpuTotals:
    """All CPUs' time since boot, in clock ticks, from the first line of /proc/stat."""

    total: int  # user, nice, system, idle, iowait, irq, softirq and steal
    steal: int  # time the hypervisor ran something else while these CPUs had work


def parse_cpu_totals(stat_text: str) -> CpuTotals:
    """The "cpu" line of /proc/stat. Its guest fields (9 and 10) are already inside user and
    nice, so only the first eight count."""
    fields = stat_text.split("\n", 1)[0].split()
    if len(fields) < 9 or fields[0] != "cpu" or not all(f.isdigit() for f in fields[1:9]):
        raise ProcError(f"unreadable first line of /proc/stat: {fields[:9]!r}")
    values = [int(f) for f in fields[1:9]]
    return CpuTotals(sum(values), values[7])


def cpu_totals(proc: Path = Path("/proc")) -> CpuTotals:
    try:
        text = (proc / "stat").read_text()
    except OSError as e:
        raise ProcError(f"cannot read {proc / 'stat'}: {e.strerror or e}") from e
    return parse_cpu_totals(text)


def steal_share(before: CpuTotals, after: CpuTotals) -> float:
    """The share (0..1) of all CPU time between two readings that the hypervisor took."""
    elapsed = after.total - before.total
    return (after.steal - before.steal) / elapsed if elapsed > 0 else 0.0
