"""What else the host was doing while a job measured: CPU time of other processes, from /proc/stat."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class HostSample:
    """Host-wide busy CPU seconds and this process's own CPU seconds at one moment."""

    wall_s: float
    busy_s: float
    own_s: float


def sample(stat: Path = Path("/proc/stat")) -> HostSample | None:
    """Read the counters now; None where the host has no /proc/stat (not Linux)."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return HostSample(time.perf_counter(), busy * TICK_S, usage.ru_utime + usage.ru_stime)


def other_cpu_share(start: HostSample | None, end: HostSample | None, cpus: int | None = None) -> float | None:
    """Share of the host's CPU capacity that other processes used between two samples (0 = the host was ours)."""
    if start is None or end is None or end.wall_s <= start.wall_s:
        return None
    capacity = (end.wall_s - start.wall_s) * (cpus or os.cpu_count() or 1)
    other = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return min(max(other / capacity, 0.0), 1.0)
