"""Measurement-quality verdicts: ok, noisy or unreliable, with the reasons, from logged metrics alone.

A job's verdict is recomputed the same way from its MLflow metrics, so the analysis and the run page
never disagree. Thresholds are stated here once, each with the figure it judges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OK, NOISY, UNRELIABLE = "ok", "noisy", "unreliable"
LEVELS = (OK, NOISY, UNRELIABLE)


@dataclass(frozen=True)
class Check:
    """One figure with its noisy and unreliable thresholds (above them; below them if `low`)."""

    metric: str
    says: str  # how a reason reads, formatted with the value `v`
    noisy: float
    unreliable: float
    low: bool = False  # True: small values are the bad ones

    def level(self, value: float) -> str:
        """ok, noisy or unreliable for this value."""
        worse = (lambda a, b: a < b) if self.low else (lambda a, b: a > b)
        if worse(value, self.unreliable):
            return UNRELIABLE
        return NOISY if worse(value, self.noisy) else OK


JOB_CHECKS = (
    Check("cost_ms_per_sample_cv", "cost per sample varies {v:.1%} across energy windows", 0.05, 0.15),
    Check("energy_j_per_sample_cv", "energy per sample varies {v:.1%} across energy windows", 0.05, 0.15),
    Check("stalled_batch_share", "{v:.1%} of timed batches stalled", 0.01, 0.05),
    Check("energy_window_ticks_min", "a window spans only {v:.0f} energy-counter ticks", 10, 5, low=True),
    Check("host_other_cpu_share", "other processes used {v:.0%} of the host's CPU during the windows", 0.25, 0.5),
    # Synchronising every batch can only add time: synced passes much slower than the windows point to
    # stalls in the passes, much faster to disturbed windows.
    Check("latency_cost_ratio", "synced passes took {v:.2f}x the windows' time per sample", 1.5, 3.0),
    Check("latency_cost_ratio", "synced passes took {v:.2f}x the windows' time per sample", 0.8, 0.5, low=True),
)
# Configuration level: the CI half-width of the mean across seeds, relative to the mean.
CI_CHECKS = (
    Check("cost_ms_per_sample_ci_rel", "cost per sample's 95% CI is ±{v:.1%} of its mean", 0.10, 0.25),
    Check("energy_j_per_sample_ci_rel", "energy per sample's 95% CI is ±{v:.1%} of its mean", 0.10, 0.25),
)


def worst(levels: Iterable[str]) -> str:
    """The worst of some verdicts (ok if there are none)."""
    return max(levels, key=LEVELS.index, default=OK)


def verdict(metrics: Mapping[str, float], checks: tuple[Check, ...] = JOB_CHECKS) -> tuple[str, list[str]]:
    """The verdict and a reason for each figure past a threshold; figures a job lacks are not judged."""
    found = []
    for check in checks:
        value = metrics.get(check.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        level = check.level(float(value))
        if level != OK:
            found.append((level, f"{check.says.format(v=float(value))} ({level})"))
    return worst(level for level, _ in found), [reason for _, reason in found]
