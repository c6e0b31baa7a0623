"""Per-run derived metrics, and one row per configuration: aggregated, labelled, compared, judged."""

from __future__ import annotations

import pandas as pd

from ela import schema as s
from ela.analysis import compare
from ela.analysis.stats import aggregate
from ela.measure import quality

# Metrics aggregated across seeds (those a sweep has; derived ones are added per run first).
METRICS = [
    s.ACCURACY,
    s.AGREE_FP32,
    s.COST,
    s.P50,
    s.P90,
    s.P99,
    s.STALLED_SHARE,
    s.THROUGHPUT,
    s.ENERGY,
    s.DYNAMIC_ENERGY,
    s.AVG_POWER,
    s.IDLE_POWER,
    s.EMISSIONS_G,
    s.CODECARBON_KWH,
    "peak_memory_mb",
    s.ENERGY_PER_CORRECT,
    "samples_per_j",
    "dynamic_share",
    s.EMISSIONS,
    # task=generation
    s.TTFT_P50,
    s.TTFT_P90,
    s.TPOT_P50,
    s.TPOT_P90,
    s.TOKENS_PER_S,
    s.TOKEN_ENERGY,
    "dynamic_energy_j_per_output_token",
    s.PREFILL_ENERGY,
    s.DECODE_ENERGY,
    s.GEN_AGREE_FP32,
    s.GEN_PREFIX_FP32,
    "exact_match",
    "token_f1",
]
DRIFT = [s.COST, s.ENERGY]  # checked for drift from the first to the last repetition


def add_derived(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-run derived metrics (each defined from measured ones; absent when their inputs are)."""
    r = runs.copy()
    if s.ENERGY in r:
        window_sd = r.get(f"{s.ENERGY}_sd", float("nan"))  # spread across the job's windows
        if s.ACCURACY in r:  # generation scored by reference (or not at all) has no accuracy
            r[s.ENERGY_PER_CORRECT] = r[s.ENERGY] / r[s.ACCURACY]
            r[f"{s.ENERGY_PER_CORRECT}_sd"] = window_sd / r[s.ACCURACY]
        r["samples_per_j"] = 1.0 / r[s.ENERGY]
        if s.DYNAMIC_ENERGY in r:  # absent where jobs ran without an idle baseline (measure.idle_window_s=0)
            r["dynamic_share"] = r[s.DYNAMIC_ENERGY] / r[s.ENERGY]
        if s.EMISSIONS_G in r and s.CODECARBON_KWH in r:
            # Window energy x the grid intensity CodeCarbon used (g/kWh) -> mg CO2e per sample.
            factor = r[s.EMISSIONS_G] / r[s.CODECARBON_KWH] / 3.6e6 * 1000.0
            r[s.EMISSIONS] = r[s.ENERGY] * factor
            r[f"{s.EMISSIONS}_sd"] = window_sd * factor
    return r


def configurations(finished: pd.DataFrame) -> pd.DataFrame:
    """One row per config hash: its params, aggregated metrics, label, fp32 comparisons, drift and verdict."""
    params = finished.groupby(compare.HASH, sort=True)[compare.param_columns(finished)].first().reset_index()
    configs = params.merge(aggregate(finished, [compare.HASH], [m for m in METRICS if m in finished]), on=compare.HASH)
    configs.insert(0, "config", compare.labels(configs))
    configs = compare.relative_to_fp32(configs, s.COST, s.ENERGY)
    drift = compare.drift(finished, [m for m in DRIFT if m in finished])
    if not drift.empty:
        configs = configs.merge(drift, on=compare.HASH, how="left")
    for m in DRIFT:  # drift beyond the CI of the mean: the machine moved during the sweep
        if f"drift_{m}_abs" in configs and f"{m}_ci" in configs:
            configs[f"drift_{m}_beyond_ci"] = configs[f"drift_{m}_abs"].abs() > configs[f"{m}_ci"]
    verdicts = [_verdict(row, finished[finished[compare.HASH] == row[compare.HASH]]) for _, row in configs.iterrows()]
    configs["verdict"] = [v for v, _ in verdicts]
    configs["verdict_reasons"] = ["; ".join(r) for _, r in verdicts]
    return configs


def _verdict(row: pd.Series, runs: pd.DataFrame) -> tuple[str, list[str]]:
    """Worst of the config's jobs' verdicts, its CI width, and drift beyond its CI."""
    levels, reasons = [], []
    for _, run in runs.iterrows():
        level, why = quality.verdict(run.to_dict())
        levels.append(level)
        reasons += [f"{run.get('tags.mlflow.runName', '')}: {w}" for w in why]
    rel = {f"{m}_ci_rel": abs(row[f"{m}_ci"] / row[m]) for m in (s.COST, s.ENERGY) if f"{m}_ci" in row and row[m]}
    level, why = quality.verdict(rel, quality.CI_CHECKS)
    levels.append(level)
    reasons += why
    for m in DRIFT:
        if row.get(f"drift_{m}_beyond_ci") is True:
            levels.append(quality.NOISY)
            reasons.append(f"{m} drifted {row[f'drift_{m}']:+.1%} from first to last repetition, beyond its CI (noisy)")
    return quality.worst(levels), reasons


def drift_notes(configs: pd.DataFrame) -> list[str]:
    """A note for each configuration whose cost moved beyond its CI between its first and last repetition."""
    beyond = configs.get(f"drift_{s.COST}_beyond_ci", pd.Series(False, index=configs.index))
    return [
        f"Drift: {r['config']} cost per sample moved {r[f'drift_{s.COST}']:+.1%} from its first to its last "
        "repetition, more than its 95% CI: the machine changed during the sweep."
        for _, r in configs[beyond.fillna(False).astype(bool)].iterrows()
    ]
