"""The host: what else it was doing while a job measured (/proc/stat), and per-host caches of its facts."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import resource
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class HostSample:
    """Host-wide busy and stolen CPU seconds and this process's own CPU seconds at one moment."""

    wall_s: float
    busy_s: float  # steal included: a VM's CPU that ran someone else was not free for us
    own_s: float
    steal_s: float = 0.0


@dataclass(frozen=True)
class HostLoad:
    """What the host did between two samples, as shares of its CPU capacity (0 = nothing)."""

    other_share: float  # CPU time of other processes, the hypervisor's steal included
    steal_share: float  # the hypervisor ran another guest on this VM's CPUs
    own_cpus: float  # this process's CPU seconds per wall second (a launch-bound loop keeps ~1 busy)
    gc_share: float = 0.0  # of the wall time, the interpreter's garbage collections (it launches nothing then)
    gc_full: int = 0  # full (generation-2) collections, whose cost grows with every object the process holds


def sample(stat: Path = Path("/proc/stat")) -> HostSample | None:
    """Read the counters now; None where the host has no /proc/stat (not Linux)."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return HostSample(time.perf_counter(), busy * TICK_S, usage.ru_utime + usage.ru_stime, ticks[7] * TICK_S)


def load(start: HostSample | None, end: HostSample | None, cpus: int | None = None) -> HostLoad | None:
    """The host's load between two samples; None without both (no /proc/stat) or with no time between."""
    if start is None or end is None or end.wall_s <= start.wall_s:
        return None
    wall = end.wall_s - start.wall_s
    capacity = wall * (cpus or os.cpu_count() or 1)
    own = end.own_s - start.own_s
    other = (end.busy_s - start.busy_s) - own
    share = lambda x: min(max(x / capacity, 0.0), 1.0)  # noqa: E731  (tick rounding can step outside 0-1)
    return HostLoad(share(other), share(end.steal_s - start.steal_s), own / wall)


class Watch:
    """The host's load over a `with` block, garbage collections included: `with Watch() as w: ...; w.load`."""

    def __init__(self) -> None:
        self.load: HostLoad | None = None
        self._gc_s, self._full, self._t = 0.0, 0, 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
            return
        self._gc_s += time.perf_counter() - self._t
        self._full += info.get("generation") == 2

    def __enter__(self) -> Watch:
        gc.callbacks.append(self._on_gc)
        self._start = sample()
        return self

    def __exit__(self, *exc) -> None:
        end = sample()
        gc.callbacks.remove(self._on_gc)
        got = load(self._start, end)
        if got is not None:
            wall = end.wall_s - self._start.wall_s
            self.load = dataclasses.replace(got, gc_share=self._gc_s / wall, gc_full=self._full)


def cache_dir() -> Path:
    """Where ela keeps per-host caches: $ELA_CACHE_DIR, else $XDG_CACHE_HOME/ela, else ~/.cache/ela."""
    if os.environ.get("ELA_CACHE_DIR"):
        return Path(os.environ["ELA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ela"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def cache_cpu_info() -> str:
    """Serve py-cpuinfo's `get_cpu_info` from a per-host file; returns 'file', 'detected' or 'unavailable'.

    CodeCarbon identifies the CPU (for its power model) with py-cpuinfo, ~1.2 s in every process it
    starts in: a process-per-job launcher paid it per job. The file is keyed on host name, boot id and
    py-cpuinfo's version (a processor doesn't change without a reboot) and written atomically, so
    concurrent jobs are safe; where it can't be written, detection simply runs as before.
    """
    try:
        import cpuinfo
    except ImportError:
        return "unavailable"
    if getattr(cpuinfo.get_cpu_info, "ela_cache", None):
        return cpuinfo.get_cpu_info.ela_cache
    detect = cpuinfo.get_cpu_info
    key = f"{socket.gethostname()}|{_boot_id()}|{cpuinfo.CPUINFO_VERSION_STRING}"
    path = cache_dir() / f"cpuinfo-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    try:
        info, how = json.loads(path.read_text()), "file"
    except (OSError, ValueError):
        info, how = detect(), "detected"
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
                json.dump(info, f)
            os.replace(f.name, path)

    def cached() -> dict:
        return dict(info)

    cached.ela_cache = how  # type: ignore[attr-defined]
    cpuinfo.get_cpu_info = cached  # CodeCarbon looks it up at call time (codecarbon.core.util.detect_cpu_model)
    return how
