"""One status line per job for a person watching: `job 3/6 fp16-b8-s0 · window 2/3 · 41% · ETA 3 min`.

It is drawn only on a terminal (tqdm decides), is updated between passes, never inside a timed batch,
and estimates the sweep's remaining time from the jobs before this one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

JOBS_ENV, START_ENV = "ELA_SWEEP_JOBS", "ELA_SWEEP_START"  # set by ela's sweeper for every job


def eta_text(position: int, total: int | None, started: float | None, now: float) -> str:
    """`ETA 3 min` from the mean time of the jobs before this one (serial launchers), or '' if unknown."""
    if not total or started is None or position < 1:
        return ""
    left = (total - position) * (now - started) / position  # this job and the ones after it
    return f"ETA {left / 60:.0f} min" if left >= 90 else f"ETA {left:.0f} s"


class Progress:
    """A job's status line: its place in the sweep, the phase it is in, how far through, and the ETA."""

    def __init__(self, name: str, position: int | None = None, clock: Callable[[], float] = time.time) -> None:
        from tqdm import tqdm

        total = os.environ.get(JOBS_ENV)
        started = os.environ.get(START_ENV)
        self.total = int(total) if total else None
        self.started = float(started) if started else None
        self.position, self.name, self.clock = position, name, clock
        self.phase_name, self.fraction = "start", None
        self._bar = tqdm(total=1, bar_format="{desc}", leave=False, disable=None)
        self._draw()

    def text(self) -> str:
        """The line as it reads now."""
        head = f"job {self.position + 1}/{self.total} " if self.total and self.position is not None else ""
        parts = [f"{head}{self.name}", self.phase_name]
        if self.fraction is not None:
            parts.append(f"{min(self.fraction, 1.0):.0%}")
        eta = eta_text(self.position or 0, self.total, self.started, self.clock())
        return " · ".join([*parts, *([eta] if eta else [])])

    def phase(self, name: str) -> None:
        """Enter a phase (load, latency passes, window 2/3, ...)."""
        self.phase_name, self.fraction = name, None
        self._draw()

    def tick(self, fraction: float) -> None:
        """How far through the current phase (called between passes)."""
        self.fraction = fraction
        self._draw()

    def close(self) -> None:
        """Remove the line (the job's summary line follows)."""
        self._bar.close()

    def _draw(self) -> None:
        self._bar.set_description_str(self.text(), refresh=True)
