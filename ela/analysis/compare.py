"""Configurations of a sweep side by side: what identifies one, its label, its fp32 reference, its drift.

A configuration is every run with the same `ela.config_hash` (the whole measured config but the seed).
Its label names the params that tell it apart from the others in the sweep, so a sweep over
`model.attn_implementation=sdpa,padded_triton` gives two labels, not one twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ela.schema import SPEEDUP_VS_CI
from ela.tracking.identity import BOOKKEEPING

HASH = "tags.ela.config_hash"
PRECISION = "params.precision.name"
ALWAYS = ["params.precision.name", "params.batch"]  # always in a label, varying or not
FIRST = ["params.engine.name", "params.model.name", "params.dataset.name"]  # tried before the rest


def param_columns(runs: pd.DataFrame) -> list[str]:
    """The params that define the measured work (not the seed or bookkeeping keys)."""
    skip = tuple(f"params.{k}" for k in BOOKKEEPING)
    return [c for c in runs.columns if c.startswith("params.") and not c.startswith(skip)]


def as_text(df: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Values as text, a missing one as "nan" (a param only some sweeps have: pandas keeps NaN through astype).

    `DataFrame.map` needs pandas >= 2.1 (pyproject.toml).
    """
    return df.map(str)


def key_of(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """One text key per row from these columns ("" without columns)."""
    return as_text(df[cols]).agg("|".join, axis=1) if cols else pd.Series("", index=df.index)


def varying(configs: pd.DataFrame) -> list[str]:
    """Params with more than one value across the configurations."""
    return [c for c in param_columns(configs) if as_text(configs[c]).nunique(dropna=False) > 1]


def _value(value: object) -> str:
    """A param as typed on the command line: null for a missing one, 128 (not 128.0) in a column pandas made float."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "null"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _piece(column: str, value: object, short: bool) -> str:
    key, value = column.removeprefix("params."), _value(value)
    if column == "params.precision.name":
        return str(value)
    if column == "params.batch":
        return f"b{value}"
    if column == "params.engine.name":
        return str(value)
    return f"{key.rsplit('.', 1)[-1] if short else key}={value}"


def labels(configs: pd.DataFrame) -> pd.Series:
    """A short label per configuration: precision, batch, then each varying param that tells configs apart.

    Params are added greedily (engine, model, dataset first, then the rest by name) and only when they
    separate configurations that still share a label, so params implied by another (precision.* by
    precision.name, engine.buckets by engine.name) are left out.
    """
    cols = [c for c in ALWAYS if c in configs]
    rest = [c for c in varying(configs) if c not in cols]
    rest = [c for c in FIRST if c in rest] + sorted(c for c in rest if c not in FIRST)
    if "params.engine.name" in configs and "params.engine.name" not in rest:
        rest.insert(0, "params.engine.name")  # a non-eager engine is named even when all share it
    chosen = list(cols)
    for c in rest:
        key = key_of(configs, chosen)
        with_c = key + "|" + as_text(configs[c])
        if with_c.nunique() > key.nunique() or c == "params.engine.name":
            chosen.append(c)
    short = {c: sum(o.rsplit(".", 1)[-1] == c.rsplit(".", 1)[-1] for o in chosen) == 1 for c in chosen}

    def one(row: pd.Series) -> str:
        parts = []
        for c in chosen:
            if c == "params.engine.name" and row[c] in ("eager", None):
                continue
            parts.append(_piece(c, row[c], short[c]))
        return "-".join(parts)

    return configs.apply(one, axis=1)


def reference_key(configs: pd.DataFrame) -> pd.Series:
    """Per configuration, every varying param but the precision ones: equal keys compare against each other."""
    return key_of(configs, [c for c in varying(configs) if not c.startswith("params.precision.")])


def relative_to_fp32(configs: pd.DataFrame, cost: str, energy: str) -> pd.DataFrame:
    """Speed-up (on the cost per sample) and energy saving against fp32 with all other varying params equal."""
    c = configs.copy()
    if PRECISION not in c:
        return c
    key = reference_key(c)
    is_fp32 = c[PRECISION] == "fp32"
    for col, name, fn in (
        (cost, "speedup_vs_fp32", lambda ref, v: ref / v),
        (energy, "energy_saving_vs_fp32", lambda ref, v: 1.0 - v / ref),
    ):
        if col not in c or not is_fp32.any():
            continue
        ref = dict(zip(key[is_fp32], c.loc[is_fp32, col], strict=True))
        c[name] = [fn(ref[k], v) if k in ref else np.nan for k, v in zip(key, c[col], strict=True)]
    lo, hi = f"{cost}_lo", f"{cost}_hi"
    if lo in c and hi in c and is_fp32.any():  # a speed-up whose CIs overlap fp32's has no direction to claim
        ref_lo, ref_hi = (dict(zip(key[is_fp32], c.loc[is_fp32, col], strict=True)) for col in (lo, hi))
        c[SPEEDUP_VS_CI] = [
            "" if ref or k not in ref_lo or np.isnan(a) or np.isnan(ref_lo[k])  # fp32 itself: the reference
            else "faster" if b < ref_lo[k] else "slower" if a > ref_hi[k] else "within CI"
            for k, a, b, ref in zip(key, c[lo], c[hi], is_fp32, strict=True)
        ]  # fmt: skip
    return c


def drift(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per configuration with >= 2 runs: relative change of each metric from its first to its last run.

    Runs are ordered by their position in the sweep (`ela.sweep_position`; interleaved, the first and
    last repetition are a whole grid apart), else by start time.
    """
    order = runs.copy()
    pos = "tags.ela.sweep_position"
    order["_pos"] = pd.to_numeric(order[pos], errors="coerce") if pos in order else np.nan
    order = order.sort_values(["_pos", "start_time"] if "start_time" in order else ["_pos"])
    rows = []
    for key, group in order.groupby(HASH, sort=False):
        if len(group) < 2:
            continue
        row: dict[str, object] = {HASH: key}
        for m in metrics:
            if m in group and group[m].notna().sum() >= 2:
                first, last = group[m].dropna().iloc[0], group[m].dropna().iloc[-1]
                row[f"drift_{m}"] = (last - first) / first if first else np.nan
                row[f"drift_{m}_abs"] = last - first
        rows.append(row)
    return pd.DataFrame(rows, columns=[HASH] if not rows else None)
