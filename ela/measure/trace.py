"""A background power/energy trace of a job, sampled at NVML's ~10 Hz update rate, with phase marks."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ela.measure.meters import EnergyCounter
from ela.measure.sidecar import Sidecar

if TYPE_CHECKING:  # pandas is the job's, not the sampler process's (its start stays short)
    import pandas as pd

Row = tuple[float, str, float, "float | None"]  # perf_counter time, phase, energy J, power W


class Sampler:
    """Samples a counter's energy (and power, where it has it) every interval from a daemon thread.

    Runs wherever `PowerTrace` puts it: in a process of its own by default (see ela.measure.sidecar).
    Times are `time.perf_counter()`, the system-wide monotonic clock, so they line up across processes.
    """

    def __init__(self, counter: EnergyCounter, interval_s: float) -> None:
        self._counter, self._interval = counter, interval_s
        self._rows: list[Row] = []
        self._phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ela-power-trace", daemon=True)

    def start(self) -> None:
        """Start sampling in the background."""
        self._thread.start()

    def mark(self, phase: str) -> None:
        """Label the samples from now on with this phase, and sample once now (a short phase shows up)."""
        self._phase = phase
        self._sample()

    def _sample(self) -> None:
        read_power = getattr(self._counter, "read_power_w", None)
        power = read_power() if read_power else None
        self._rows.append((time.perf_counter(), self._phase, self._counter.read_j(), power))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def stop(self) -> list[Row]:
        """Stop sampling; every sample taken."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self._rows


class PowerTrace:
    """The job's trace: a `Sampler` on the meter's counter, in its own process unless `process=False`."""

    def __init__(self, counter: EnergyCounter, interval_s: float = 0.1, process: bool = True) -> None:
        self._t0 = time.perf_counter()
        self._sidecar = Sidecar(Sampler, counter, interval_s, process=process)

    def start(self) -> PowerTrace:
        """Start sampling (returns once the sampler runs)."""
        self._sidecar.start()
        return self

    def mark(self, phase: str) -> None:
        """Label the samples from now on with this phase (e.g. `window 2`); between phases, never in a window."""
        self._sidecar.mark(phase)

    def close(self) -> None:
        """Stop sampling if `stop` was never reached (a failed job); idempotent."""
        self._sidecar.close()

    def stop(self) -> pd.DataFrame:
        """Stop sampling; the trace, time from this trace's creation, energy relative to its first sample."""
        import pandas as pd

        df = pd.DataFrame(self._sidecar.stop(), columns=["t_s", "phase", "energy_j", "power_w"])
        df["t_s"] -= self._t0
        df = df.sort_values("t_s", kind="stable").reset_index(drop=True)  # two threads append
        if len(df):
            df["energy_j"] -= df["energy_j"].iloc[0]
        return df


def power_trace_png(trace: pd.DataFrame, title: str) -> bytes:
    """Power over the job, one shaded band per phase, so a reader sees what each window covered."""
    from ela.figures import plt, png  # matplotlib only in jobs that draw

    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    power = trace["power_w"]
    if power.isna().all():  # counters without a power reading: derive it from the energy samples
        power = trace["energy_j"].diff() / trace["t_s"].diff()
    ax.plot(trace["t_s"], power, lw=1.0, color="black")
    colors = plt.cm.tab10.colors
    phases = trace["phase"].ne(trace["phase"].shift()).cumsum()
    for i, (_, seg) in enumerate(trace.groupby(phases)):
        ax.axvspan(seg["t_s"].iloc[0], seg["t_s"].iloc[-1], color=colors[i % 10], alpha=0.15, lw=0)
        ax.text(
            seg["t_s"].iloc[0],
            1.0,
            seg["phase"].iloc[0],
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
        )
    ax.set(xlabel="time since job start [s]", ylabel="GPU power [W]", title=title)
    ax.set_ylim(bottom=0)
    return png(fig)
