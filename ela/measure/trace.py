"""A background power/energy trace of a job, sampled at NVML's ~10 Hz update rate, with phase marks."""

from __future__ import annotations

import threading
import time

import pandas as pd

from ela.measure.meters import EnergyCounter


class PowerTrace:
    """Samples counter energy (and power, where the counter has it) from a daemon thread.

    NVML calls go through ctypes, which releases the GIL, so the sampler barely touches the
    launching thread; the benchmark in benchmarks/overhead.py measures ela with it running.
    """

    def __init__(self, counter: EnergyCounter, interval_s: float = 0.1) -> None:
        self._counter, self._interval = counter, interval_s
        self._rows: list[tuple[float, str, float, float | None]] = []
        self._phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ela-power-trace", daemon=True)
        self._t0 = time.perf_counter()

    def start(self) -> PowerTrace:
        self._thread.start()
        return self

    def mark(self, phase: str) -> None:
        """Label the samples from now on with this phase (e.g. `window 2`); sample once right away so
        even a phase shorter than the interval shows up. Called between phases, never inside a window."""
        self._phase = phase
        self._sample()

    def _sample(self) -> None:
        read_power = getattr(self._counter, "read_power_w", None)
        power = read_power() if read_power else None
        self._rows.append((time.perf_counter() - self._t0, self._phase, self._counter.read_j(), power))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def stop(self) -> pd.DataFrame:
        """Stop sampling; the trace with energy relative to its first sample."""
        self._stop.set()
        self._thread.join(timeout=5)
        df = pd.DataFrame(self._rows, columns=["t_s", "phase", "energy_j", "power_w"])
        df = df.sort_values("t_s", kind="stable").reset_index(drop=True)  # two threads append
        if len(df):
            df["energy_j"] -= df["energy_j"].iloc[0]
        return df
