"""Pareto fronts on aggregated configurations: pure functions on DataFrames.

Aggregated frames hold, per objective column `c`, the mean in `c` and the 95% CI bounds in
`c_lo` / `c_hi` (NaN when a configuration has a single seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FRONT, TIE, DOMINATED, DOMINATED_NO_CI = "front", "tie (within CI)", "dominated", "dominated (1 seed, no CI)"


@dataclass(frozen=True)
class Objective:
    """One axis of a front: a column, minimised or maximised."""

    column: str
    minimize: bool = True

    def better(self, a: float, b: float) -> bool:
        """A is strictly better than b on this objective."""
        return a < b if self.minimize else a > b

    def no_worse(self, a: float, b: float) -> bool:
        """A is at least as good as b on this objective."""
        return a <= b if self.minimize else a >= b


def dominates(a: pd.Series, b: pd.Series, objectives: list[Objective]) -> bool:
    """A is no worse than b on every objective and better on one (by means)."""
    cols = [o.column for o in objectives]
    if a[cols].isna().any() or b[cols].isna().any():
        return False
    return all(o.no_worse(a[o.column], b[o.column]) for o in objectives) and any(
        o.better(a[o.column], b[o.column]) for o in objectives
    )


def dominates_beyond_ci(a: pd.Series, b: pd.Series, objectives: list[Objective]) -> bool | None:
    """Domination that survives the confidence intervals.

    a is no worse by means everywhere, and on some objective a's whole interval is better than b's.
    None when either lacks a CI (one seed).
    """
    if not dominates(a, b, objectives):
        return False
    bounds = [f"{o.column}_{s}" for o in objectives for s in ("lo", "hi")]
    if any(k not in a or pd.isna(a[k]) or pd.isna(b[k]) for k in bounds):
        return None
    for o in objectives:
        c = o.column
        if (o.minimize and a[f"{c}_hi"] < b[f"{c}_lo"]) or (not o.minimize and a[f"{c}_lo"] > b[f"{c}_hi"]):
            return True
    return False


def classify(df: pd.DataFrame, objectives: list[Objective]) -> pd.Series:
    """Per row: on the front, dominated beyond the CIs, dominated without CIs, or tied within CIs."""
    status = pd.Series(FRONT, index=df.index, dtype=object)
    for i, b in df.iterrows():
        if b[[o.column for o in objectives]].isna().any():
            status[i] = np.nan  # an objective is missing: not part of this front
            continue
        verdicts = [dominates_beyond_ci(a, b, objectives) for j, a in df.iterrows() if j != i]
        if any(v is True for v in verdicts):
            status[i] = DOMINATED
        elif any(v is None for v in verdicts):
            status[i] = DOMINATED_NO_CI
        elif any(dominates(a, b, objectives) for j, a in df.iterrows() if j != i):
            status[i] = TIE
    return status


def knee(df: pd.DataFrame, x: str, y: str) -> object | None:
    """Index of the front point closest to the utopia point (min x, min y) after min-max scaling."""
    if df.empty:
        return None
    pts = df[[x, y]].astype(float)
    span = (pts.max() - pts.min()).replace(0, 1.0)
    scaled = (pts - pts.min()) / span
    return (scaled**2).sum(axis=1).idxmin()
