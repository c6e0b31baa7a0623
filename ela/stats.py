"""Aggregation across seeds: mean, SD and a t-based 95% confidence interval per configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CI_LEVEL = 0.95
CI_METHOD = "t-based 95% CI of the mean across seeds: mean ± t(0.975, n-1) · sd/√n"


def ci_half_width(values: pd.Series) -> float:
    """Half-width of the t-based 95% CI of the mean; NaN with fewer than 2 values."""
    v = values.dropna()
    if len(v) < 2:
        return float("nan")
    return float(stats.t.ppf(0.5 + CI_LEVEL / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def aggregate(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per configuration (keys): n_seeds and, per metric, mean, _sd, _ci, _lo, _hi."""
    rows = []
    for key, group in runs.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row["n_seeds"] = len(group)
        for m in metrics:
            if m not in group or group[m].isna().all():
                continue
            v = group[m].astype(float)
            half = ci_half_width(v)
            row[m] = v.mean()
            row[f"{m}_sd"] = v.std(ddof=1) if len(v.dropna()) > 1 else float("nan")
            row[f"{m}_ci"] = half
            row[f"{m}_lo"], row[f"{m}_hi"] = v.mean() - half, v.mean() + half
        rows.append(row)
    return pd.DataFrame(rows)
