"""Energy meters with a measurement-window API (after ml-energy/zeus).

A meter wraps a cumulative energy counter. `begin_window` / `end_window` synchronise the
device (so queued kernels are inside the window), read the clock and the counter at both
ends, and return a `Window` with units. No meter is ever read inside a timed batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ela import ElaError


class MeasurementError(ElaError):
    """A window whose reading cannot be trusted (zero energy, counter went backwards)."""


class EnergyCounter(Protocol):
    """A monotonically increasing energy counter."""

    method: str  # how the figure is obtained, logged as a tag (e.g. "nvml-counter")

    def read_j(self) -> float:
        """Cumulative energy in joules since an arbitrary origin."""
        ...


@dataclass(frozen=True)
class Window:
    """One measurement window: wall time and energy between two synchronised reads."""

    duration_s: float
    energy_j: float
    method: str

    @property
    def avg_power_w(self) -> float:
        """Energy / duration, W."""
        return self.energy_j / self.duration_s


class FakeCounter:
    """Test double: a counter that integrates a constant power over wall-clock time."""

    method = "fake-counter"

    def __init__(self, power_w: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self._power_w, self._clock, self._t0 = power_w, clock, clock()

    def read_j(self) -> float:
        """The constant power times the time since creation."""
        return self._power_w * (self._clock() - self._t0)

    def read_power_w(self) -> float:
        """The constant power."""
        return self._power_w


class ReplayCounter:
    """Test double: replays recorded counter readings in order (quantised, reset, stuck, ...)."""

    method = "replay-counter"

    def __init__(self, readings_j: Iterable[float]) -> None:
        self._readings: Iterator[float] = iter(readings_j)

    def read_j(self) -> float:
        """The next recorded reading."""
        return next(self._readings)


class RaplCounter:
    """The CPU packages' (and DRAM's, where exposed) RAPL energy counters under /sys/class/powercap, summed.

    Each counter wraps at its `max_energy_range_uj`; a read below the previous one adds one range.
    Windows and the trace read it often enough (a range is hundreds of kJ: many minutes at full power).
    """

    def __init__(self, root: Path = Path("/sys/class/powercap")) -> None:
        self._zones = rapl_zones(root)
        if isinstance(self._zones, str):
            raise MeasurementError(self._zones)
        self.method = "rapl(" + ",".join(name for name, _, _ in self._zones) + ")"
        self._last = [_read_uj(path) for _, path, _ in self._zones]
        self._offset = [0] * len(self._zones)

    def read_j(self) -> float:
        """Joules since an arbitrary origin, all zones summed, wrap-arounds added back."""
        total = 0
        for i, (_, path, span) in enumerate(self._zones):
            raw = _read_uj(path)
            if raw < self._last[i]:  # wrapped around since the last read
                self._offset[i] += span
            self._last[i] = raw
            total += raw + self._offset[i]
        return total / 1e6


def rapl_zones(root: Path) -> list[tuple[str, Path, int]] | str:
    """(name, energy_uj file, wrap range) of each package and DRAM zone, or why there are none readable.

    Top-level zones named `package-N` and their `dram` subzones; `psys` (the whole platform, which
    contains the packages) and core/uncore subzones (inside the package figure) are left out.
    """
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        top = zone.name.count(":") == 1
        if (top and name.startswith("package")) or (not top and name == "dram"):
            zones.append((name if top else f"{name}-{zone.name.split(':')[1]}", zone / "energy_uj", zone))
    if not zones:
        return f"no RAPL package zones under {root}"
    out = []
    for name, path, zone in zones:
        try:
            _read_uj(path)
            span = int((zone / "max_energy_range_uj").read_text())
        except PermissionError:
            return f"RAPL counters under {root} are not readable by this user (they need root)"
        except (OSError, ValueError) as err:
            return f"RAPL counter {path} unreadable: {err}"
        out.append((name, path, span))
    return out


def _read_uj(path: Path) -> int:
    return int(path.read_text())


class Meter(Protocol):
    """What the measured loops need of a meter: windows with units, the device's sync, how it measures."""

    method: str
    counter: EnergyCounter | None  # for the background trace; None where there is no counter to sample

    def sync(self) -> None:
        """Wait for the work queued on the measured device."""
        ...

    def begin_window(self, name: str) -> None:
        """Open a window: synchronise, read the clock and the meter."""
        ...

    def end_window(self, name: str) -> Window:
        """Close it: synchronise, read both again, return the window (invalid readings raise)."""
        ...


class WindowMeter:
    """Measures windows on one counter: `begin_window(name)` ... `end_window(name) -> Window`."""

    def __init__(
        self,
        counter: EnergyCounter,
        sync: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.counter, self._sync, self._clock = counter, sync, clock
        self._open: dict[str, tuple[float, float]] = {}

    @property
    def method(self) -> str:
        """How the counter obtains its figure (a tag)."""
        return self.counter.method

    def sync(self) -> None:
        """Wait for all work queued on the measured device."""
        self._sync()

    def begin_window(self, name: str) -> None:
        """Synchronise, then read clock and counter."""
        if name in self._open:
            raise RuntimeError(f"window {name!r} is already open")
        self._sync()
        self._open[name] = (self._clock(), self.counter.read_j())

    def end_window(self, name: str) -> Window:
        """Synchronise, read clock and counter, and return the window; invalid readings raise."""
        self._sync()
        t1, e1 = self._clock(), self.counter.read_j()
        t0, e0 = self._open.pop(name)
        return checked_window(name, self.method, t1 - t0, e1 - e0)


def checked_window(name: str, method: str, duration_s: float, energy_j: float) -> Window:
    """A window, or MeasurementError when its energy is negative (a reset) or zero (no reading)."""
    if energy_j < 0:
        raise MeasurementError(f"{method} went backwards in window {name!r} ({energy_j:.3f} J): counter reset")
    if energy_j == 0:
        raise MeasurementError(
            f"{method} did not move in window {name!r} ({duration_s:.3f} s): a zero reading is "
            "invalid, not 0 J; lengthen the window (measure.min_window_s)"
        )
    return Window(duration_s=duration_s, energy_j=energy_j, method=method)


def dynamic_energy_j(window: Window, idle_power_w: float) -> float:
    """Energy above the idle baseline: gross - idle power x window length."""
    return window.energy_j - idle_power_w * window.duration_s


CONTINUOUS_READS = 25  # a counter that moved on (nearly) every one of this many reads has no tick worth measuring


def tick_period_s(
    counter: EnergyCounter,
    max_s: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """How often the counter moves: median interval between changes seen by polling for up to max_s.

    None when it moves on every read (a continuous counter such as the fake, or RAPL's ~1 ms updates): known
    after CONTINUOUS_READS reads, without polling on to max_s; or when fewer than 3 changes were seen.
    NVML's counter moves about every 100 ms, so a window needs >= 1 s for 10 ticks.
    """
    t_end, last, changes, reads = clock() + max_s, counter.read_j(), [], 0
    while clock() < t_end:
        value, reads = counter.read_j(), reads + 1
        if value != last:
            changes.append(clock())
            last = value
        if reads >= CONTINUOUS_READS and len(changes) >= reads - 1:
            break  # ~50 ms of reads and (nearly) each one moved: continuous, no need to poll on to max_s
        sleep(0.002)
    if len(changes) < 3 or len(changes) >= reads - 1:  # moved on (nearly) every read: continuous
        return None
    gaps = sorted(b - a for a, b in zip(changes, changes[1:], strict=False))
    return gaps[len(gaps) // 2]


def settle(
    read_power_w: Callable[[], float],
    max_s: float,
    step_s: float = 0.5,
    rel_tol: float = 0.01,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until power stops falling (two steps without a drop of more than rel_tol), at most max_s.

    Returns the seconds waited. Idle power right after work is high and decays (80-120 W seen on an
    H200), so measuring it too early overstates idle and understates dynamic energy.
    """
    t0, previous, steady = clock(), read_power_w(), 0
    while steady < 2 and clock() - t0 + step_s <= max_s:
        sleep(step_s)
        now = read_power_w()
        steady = steady + 1 if now >= previous * (1 - rel_tol) else 0
        previous = min(previous, now)
    return clock() - t0
