"""Aggregation across seeds: mean, SD and a t-based 95% confidence interval per configuration.

With a single seed there is no spread across repetitions; where the run logged its spread across
energy windows (`<metric>_sd` over `energy_windows`), the CI comes from those windows instead and
`ci_basis` says so: it describes noise within one job, not between jobs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CI_LEVEL = 0.95
CI_METHOD = "t-based 95% CI of the mean across seeds: mean ± t(0.975, n-1) · sd/√n"
WINDOWS = "energy_windows"


def t_half_width(sd: float, n: int) -> float:
    """Half-width of the t-based 95% CI of a mean of n values with sample SD sd; NaN for n < 2."""
    if n < 2 or pd.isna(sd):
        return float("nan")
    return float(stats.t.ppf(0.5 + CI_LEVEL / 2, n - 1) * sd / np.sqrt(n))


def ci_half_width(values: pd.Series) -> float:
    """Half-width of the t-based 95% CI of the mean; NaN with fewer than 2 values."""
    v = values.dropna()
    return t_half_width(float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v))


def aggregate(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per configuration (keys): n_seeds, ci_basis and, per metric, mean, _sd, _ci, _lo, _hi."""
    rows = []
    for key, group in runs.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        n = len(group)
        row["n_seeds"] = n
        within = n == 1 and WINDOWS in group and group[WINDOWS].iloc[0] >= 2
        row["ci_basis"] = f"seeds (n={n})" if n > 1 else "none (1 seed)"
        for m in metrics:
            if m not in group or group[m].isna().all():
                continue
            v = group[m].astype(float)
            half = ci_half_width(v)
            if within and f"{m}_sd" in group and pd.notna(group[f"{m}_sd"].iloc[0]):
                windows = int(group[WINDOWS].iloc[0])
                half = t_half_width(float(group[f"{m}_sd"].iloc[0]), windows)
                row["ci_basis"] = f"within-job windows (n={windows}; one seed)"
            row[m] = v.mean()
            row[f"{m}_sd"] = v.std(ddof=1) if len(v.dropna()) > 1 else float("nan")
            row[f"{m}_ci"] = half
            row[f"{m}_lo"], row[f"{m}_hi"] = v.mean() - half, v.mean() + half
        rows.append(row)
    return pd.DataFrame(rows)
