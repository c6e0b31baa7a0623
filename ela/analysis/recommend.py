"""The quality constraint, Pareto fronts over the configurations, and what to deploy."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ela import schema as s
from ela.analysis.compare import as_text, key_of
from ela.analysis.pareto import FRONT, Objective, classify, knee
from ela.measure import quality

FRONTS = {
    "cost_energy": [Objective(s.COST), Objective(s.ENERGY)],
    "p90_energy": [Objective(s.P90), Objective(s.ENERGY)],
    "cost_emissions": [Objective(s.COST), Objective(s.EMISSIONS)],
    "energy_accuracy": [Objective(s.ENERGY), Objective(s.ACCURACY, minimize=False)],
    "energy_cost_accuracy": [Objective(s.ENERGY), Objective(s.COST), Objective(s.ACCURACY, minimize=False)],
}
GENERATION_FRONTS = {  # drawn for sweeps with task=generation jobs
    "tpot_token_energy": [Objective(s.TPOT_P50), Objective(s.TOKEN_ENERGY)],
    "ttft_request_energy": [Objective(s.TTFT_P90), Objective(s.ENERGY)],
}


IDENTITY = ("params.task.name", "params.model.name", "params.model.path", "params.dataset.name")


@dataclass(frozen=True)
class Constraints:
    """What a recommendation must meet besides the quality constraint."""

    max_latency_ms: float | None = None  # on the p90 batch latency
    min_accuracy: float | None = None


def quality_constraint(configs: pd.DataFrame, tolerance: float) -> tuple[pd.DataFrame, float | None, str]:
    """Configs with `quality_ok` (accuracy >= tolerance x fp32 accuracy), the threshold, and a note."""
    c = configs.copy()
    # model.fuse_gelu computes another GELU (ela/runtime/epilogue.py): an fp32 run of it is not the reference
    fused = as_text(c["params.model.fuse_gelu"]).str.lower() == "true" if "params.model.fuse_gelu" in c else False
    fp32 = c[(c["params.precision.name"] == "fp32") & ~fused]
    if fp32.empty or s.ACCURACY not in c:
        c["quality_ok"] = True
        return c, None, "No fp32 reference in this sweep: the quality constraint is not applied."
    # Several models, tasks or datasets (sweeps analysed together): each against its own fp32 accuracy.
    key = key_of(c, [col for col in IDENTITY if col in c and as_text(c[col]).nunique() > 1])
    groups = set(key)
    if len(groups) > 1 and set(key[fp32.index]) == groups:
        ref = c.loc[fp32.index].groupby(key[fp32.index])[s.ACCURACY].mean()
        c["quality_threshold"] = tolerance * key.map(ref)
        c["quality_ok"] = c[s.ACCURACY] >= c["quality_threshold"]
        return c, None, f"Quality constraint: accuracy >= {tolerance:g} x the fp32 accuracy of the same model and task."
    threshold = tolerance * fp32[s.ACCURACY].mean()
    c["quality_ok"] = c[s.ACCURACY] >= threshold
    return c, threshold, f"Quality constraint: accuracy >= {tolerance:g} x fp32 accuracy = {threshold:.4f}."


def fronts(configs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`front_<name>` (all configurations) and `front_<name>_quality` columns; a note per front skipped."""
    c, notes = configs.copy(), []
    generative = s.TPOT_P50 in c
    for name, objectives in {**FRONTS, **(GENERATION_FRONTS if generative else {})}.items():
        missing = [o.column for o in objectives if o.column not in c]
        if missing:
            notes.append(f"Front {name} skipped: this sweep has no {', '.join(missing)} (no energy meter?).")
            continue
        c[f"front_{name}"] = classify(c, objectives)
        c[f"front_{name}_quality"] = classify(c[c["quality_ok"]], objectives).reindex(c.index)
    return c, notes


def recommend(configs: pd.DataFrame, limits: Constraints) -> dict[str, str]:
    """The knee of the quality-constrained cost-energy front, and the best config under constraints."""
    recs: dict[str, str] = {}
    col = "front_cost_energy_quality"
    if col in configs:
        k = knee(configs[configs[col] == FRONT], s.COST, s.ENERGY)
        if k is not None:
            r = configs.loc[k]
            recs["knee"] = (
                f"{r['config']}: cost {r[s.COST]:.3f} ms/sample, {r[s.ENERGY]:.4f} J/sample, "
                f"p90 {r[s.P90]:.2f} ms/batch{_accuracy(r)} (front point closest to the utopia "
                "point after min-max scaling)" + _caveat(r)
            )
    ok = configs[configs["quality_ok"]]
    if limits.max_latency_ms is not None:
        ok = ok[ok[s.P90] <= limits.max_latency_ms]
    if limits.min_accuracy is not None:
        ok = ok[ok[s.ACCURACY] >= limits.min_accuracy]
    goal = s.ENERGY if s.ENERGY in ok else s.COST
    named = (("max_latency_ms (p90)", limits.max_latency_ms), ("min_accuracy", limits.min_accuracy))
    constraints = ", ".join(f"{k}={v}" for k, v in named if v)
    if ok.empty:
        recs["best"] = f"no configuration meets the constraints ({constraints or 'quality only'})"
        return recs
    r = ok.loc[ok[goal].idxmin()]
    energy = f", {r[s.ENERGY]:.4f} J/sample" if s.ENERGY in r else ""
    recs["best"] = (
        f"{r['config']}: lowest {goal} under {constraints or 'the quality constraint'} "
        f"(cost {r[s.COST]:.3f} ms/sample, p90 {r[s.P90]:.2f} ms/batch{energy})" + _caveat(r)
    )
    return recs


def _accuracy(row: pd.Series) -> str:
    return f", accuracy {row[s.ACCURACY]:.4f}" if pd.notna(row.get(s.ACCURACY)) else ""


def _caveat(row: pd.Series) -> str:
    """What a recommendation must say when its figures are not trustworthy."""
    if row.get("verdict") == quality.UNRELIABLE:
        return f" -- built on UNRELIABLE figures: {row['verdict_reasons']}"
    if row.get("verdict") == quality.NOISY:
        return f" -- figures are noisy: {row['verdict_reasons']}"
    return ""
