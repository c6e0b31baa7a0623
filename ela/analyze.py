"""`python -m ela.analyze`: pull a sweep back from MLflow, aggregate seeds, find Pareto fronts,
recommend configurations, draw plots and write a report (logged to the sweep's parent run).

    python -m ela.analyze                          # the latest sweep in ./mlflow.db, experiment 'ela'
    python -m ela.analyze sweep=<parent run id|name> tolerance=0.99 max_latency_ms=5 min_accuracy=0.9
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from ela import ElaError
from ela.analysis import compare
from ela.analysis.pareto import FRONT, Objective, classify, knee
from ela.analysis.stats import CI_METHOD, aggregate
from ela.measure import quality
from ela.tracking.store import PARENT_TAG, Tracker, tracking_uri

COST, P90, ENERGY, EMISSIONS, ACCURACY = (
    "cost_ms_per_sample",
    "batch_latency_ms_p90",
    "energy_j_per_sample",
    "emissions_mg_per_sample",
    "accuracy",
)
# Metrics aggregated across seeds (those a sweep has; derived ones are added per run first).
METRICS = [
    ACCURACY,
    "agreement_with_fp32",
    COST,
    "batch_latency_ms_p50",
    P90,
    "batch_latency_ms_p99",
    "stalled_batch_share",
    "throughput_samples_per_s",
    ENERGY,
    "dynamic_energy_j_per_sample",
    "avg_power_w",
    "idle_power_w",
    "emissions_g",
    "codecarbon_energy_kwh",
    "peak_memory_mb",
    "energy_per_correct_j",
    "samples_per_j",
    "dynamic_share",
    EMISSIONS,
]
DRIFT = [COST, ENERGY]  # checked for drift from the first to the last repetition
FRONTS = {
    "cost_energy": [Objective(COST), Objective(ENERGY)],
    "p90_energy": [Objective(P90), Objective(ENERGY)],
    "cost_emissions": [Objective(COST), Objective(EMISSIONS)],
    "energy_accuracy": [Objective(ENERGY), Objective(ACCURACY, minimize=False)],
    "energy_cost_accuracy": [Objective(ENERGY), Objective(COST), Objective(ACCURACY, minimize=False)],
}


@dataclass
class AnalyzeConfig:
    """Options, given on the command line as key=value."""

    sweep: str = "latest"  # parent run id, parent run name (e.g. 2026-11-26/14-13-37), or latest
    experiment: str = "ela"
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db
    tolerance: float = 0.99  # quality constraint: accuracy >= tolerance x fp32 accuracy (MLPerf-style 99%)
    max_latency_ms: float | None = None  # constraint on the p90 batch latency for the recommendation
    min_accuracy: float | None = None  # constraint on accuracy for the recommendation
    out: str | None = None  # default: <sweep folder>/analysis, else ./analysis/<parent run id>
    filter: str | None = None  # extra MLflow filter on child runs, e.g. "params.batch = '8'"
    log_to_mlflow: bool = True


def parse_args(argv: list[str]) -> AnalyzeConfig:
    """key=value arguments into AnalyzeConfig; unknown keys and bad values are clear errors."""
    cfg, known = AnalyzeConfig(), {f.name: f for f in fields(AnalyzeConfig)}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in known:
            raise ElaError(f"unknown argument {arg!r}: use key=value with key in {', '.join(known)}")
        default = getattr(AnalyzeConfig, key)
        try:
            if value.lower() in ("null", "none", ""):
                parsed = None
            elif isinstance(default, bool):
                parsed = value.lower() in ("1", "true", "yes")
            elif isinstance(default, float) or key in ("max_latency_ms", "min_accuracy"):
                parsed = float(value)
            else:
                parsed = value
        except ValueError:
            raise ElaError(f"invalid value {arg!r}: expected a number") from None
        setattr(cfg, key, parsed)
    return cfg


@dataclass
class Analysis:
    """Everything `ela.analyze` found in a sweep, before it is written out."""

    parent: object
    runs: pd.DataFrame  # FINISHED children, params cast, derived metrics added
    failed: pd.DataFrame  # children that ended FAILED or KILLED
    configs: pd.DataFrame  # one row per configuration, aggregated across seeds, with front status
    difficulty: pd.DataFrame
    running: pd.DataFrame = field(default_factory=pd.DataFrame)  # children still RUNNING
    quality_threshold: float | None = None  # accuracy needed to pass the quality constraint
    notes: list[str] = field(default_factory=list)
    recommendations: dict[str, str] = field(default_factory=dict)


def find_sweep(tracker: Tracker, sweep: str):
    """The parent run of a sweep by id, name or `latest`; a clear error otherwise."""
    parents = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`ela.run_kind` = 'sweep'", order_by=["attributes.start_time DESC"]
    )
    if not parents:
        raise ElaError(
            f"experiment has no sweeps in {tracker.uri}; run one first: python -m ela.run -m precision=fp32,bf16"
        )
    if sweep == "latest":
        return parents[0]
    for p in parents:
        if sweep in (p.info.run_id, p.info.run_name):
            return p
    known = ", ".join(f"{p.info.run_name} ({p.info.run_id[:8]})" for p in parents[:5])
    raise ElaError(f"no sweep {sweep!r} in this experiment; recent sweeps: {known}")


def _cast(value: object) -> object:
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "true": True, "false": False, "None": None}.get(value, value)


def load_runs(tracker: Tracker, parent_id: str, extra_filter: str | None) -> pd.DataFrame:
    """All child runs of the sweep as a DataFrame (through the client, never a global URI), params cast."""
    from mlflow.tracking import MlflowClient

    query = f"tags.`{PARENT_TAG}` = '{parent_id}'" + (f" and {extra_filter}" if extra_filter else "")
    runs = MlflowClient(tracker.uri).search_runs([tracker.experiment_id], filter_string=query, max_results=50000)
    rows = []
    for r in runs:
        row = {"run_id": r.info.run_id, "status": r.info.status, "start_time": r.info.start_time}
        row.update(r.data.metrics)
        row.update({f"params.{k}": _cast(v) for k, v in r.data.params.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def add_derived(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-run derived metrics (each defined from measured ones; absent when their inputs are)."""
    r = runs.copy()
    if ENERGY in r:
        r["energy_per_correct_j"] = r[ENERGY] / r[ACCURACY]
        r["energy_per_correct_j_sd"] = r.get(f"{ENERGY}_sd", float("nan")) / r[ACCURACY]
        r["samples_per_j"] = 1.0 / r[ENERGY]
        r["dynamic_share"] = r["dynamic_energy_j_per_sample"] / r[ENERGY]
        if "emissions_g" in r and "codecarbon_energy_kwh" in r:
            # Window energy x the grid intensity CodeCarbon used (g/kWh) -> mg CO2e per sample.
            factor = r["emissions_g"] / r["codecarbon_energy_kwh"] / 3.6e6 * 1000.0
            r[EMISSIONS] = r[ENERGY] * factor
            r[f"{EMISSIONS}_sd"] = r.get(f"{ENERGY}_sd", float("nan")) * factor
    return r


def difficulty_table(tracker: Tracker, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Accuracy and confidence by sentence-length and fp32-confidence quintile, per config; runs left out."""
    tables, unread = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _, run in runs.iterrows():
            try:
                path = tracker.client.download_artifacts(run["run_id"], "predictions.csv", tmp)
                t = pd.read_csv(path)
            except Exception as err:  # noqa: BLE001 - a run without the table is named, not fatal
                unread.append(f"{run.get('tags.mlflow.runName', run['run_id'])} ({type(err).__name__})")
                continue
            t["config"], t["seed"] = run["config"], run["params.seed"]
            t["precision"], t["batch"] = run["params.precision.name"], run["params.batch"]
            tables.append(t)
    if not tables:
        return pd.DataFrame(), unread
    per_sample = pd.concat(tables, ignore_index=True)
    per_sample["correct"] = per_sample["label"] == per_sample["prediction"]
    lengths = per_sample.drop_duplicates("index").set_index("index")["token_length"]
    length_bin = pd.qcut(lengths.rank(method="first"), 5, labels=[f"Q{i}" for i in range(1, 6)])
    per_sample["length_quintile"] = per_sample["index"].map(length_bin)
    fp32 = per_sample[per_sample["precision"] == "fp32"]
    frames = [_by_bin(per_sample, "length_quintile")]
    if not fp32.empty:
        conf = fp32.groupby("index")["confidence"].mean()
        conf_bin = pd.qcut(conf.rank(method="first"), 5, labels=[f"Q{i}" for i in range(1, 6)])
        per_sample["fp32_confidence_quintile"] = per_sample["index"].map(conf_bin)
        frames.append(_by_bin(per_sample, "fp32_confidence_quintile"))
    return pd.concat(frames, ignore_index=True), unread


def _by_bin(per_sample: pd.DataFrame, column: str) -> pd.DataFrame:
    g = per_sample.groupby(["config", "precision", "batch", column], observed=True)
    out = g.agg(accuracy=("correct", "mean"), confidence=("confidence", "mean"), n=("correct", "size"))
    out = out.reset_index().rename(columns={column: "bin"})
    out.insert(0, "binning", column)
    return out


def configurations(finished: pd.DataFrame) -> pd.DataFrame:
    """One row per config hash: its params, aggregated metrics, label, fp32 comparisons, drift and verdict."""
    params = finished.groupby(compare.HASH, sort=True)[compare.param_columns(finished)].first().reset_index()
    configs = aggregate(finished, [compare.HASH], [m for m in METRICS if m in finished])
    configs = params.merge(configs, on=compare.HASH)
    configs.insert(0, "config", compare.labels(configs))
    configs = compare.relative_to_fp32(configs, COST, ENERGY)
    drift = compare.drift(finished, [m for m in DRIFT if m in finished])
    if not drift.empty:
        configs = configs.merge(drift, on=compare.HASH, how="left")
    for m in DRIFT:  # drift beyond the CI of the mean: the machine moved during the sweep
        if f"drift_{m}_abs" in configs and f"{m}_ci" in configs:
            configs[f"drift_{m}_beyond_ci"] = configs[f"drift_{m}_abs"].abs() > configs[f"{m}_ci"]
    verdicts = [
        _config_verdict(row, finished[finished[compare.HASH] == row[compare.HASH]]) for _, row in configs.iterrows()
    ]
    configs["verdict"] = [v for v, _ in verdicts]
    configs["verdict_reasons"] = ["; ".join(r) for _, r in verdicts]
    return configs


def _config_verdict(row: pd.Series, runs: pd.DataFrame) -> tuple[str, list[str]]:
    """Worst of the config's jobs' verdicts, its CI width, and drift beyond its CI."""
    levels, reasons = [], []
    for _, run in runs.iterrows():
        level, why = quality.verdict(run.to_dict())
        levels.append(level)
        reasons += [f"{run.get('tags.mlflow.runName', '')}: {w}" for w in why]
    rel = {f"{m}_ci_rel": abs(row[f"{m}_ci"] / row[m]) for m in (COST, ENERGY) if f"{m}_ci" in row and row[m]}
    level, why = quality.verdict(rel, quality.CI_CHECKS)
    levels.append(level)
    reasons += why
    for m in DRIFT:
        if row.get(f"drift_{m}_beyond_ci") is True:
            levels.append(quality.NOISY)
            reasons.append(f"{m} drifted {row[f'drift_{m}']:+.1%} from first to last repetition, beyond its CI (noisy)")
    return quality.worst(levels), reasons


def analyze(cfg: AnalyzeConfig) -> tuple[Analysis, Tracker]:
    """Everything but the output: runs, aggregation, fronts, recommendations, difficulty."""
    uri = tracking_uri(cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), Path.cwd())
    tracker = Tracker(uri, cfg.experiment, create=False)
    parent = find_sweep(tracker, cfg.sweep)
    all_runs = load_runs(tracker, parent.info.run_id, cfg.filter)
    if all_runs.empty:
        raise ElaError(
            f"sweep {parent.info.run_name} has no jobs" + (f" matching {cfg.filter!r}" if cfg.filter else "")
        )
    finished = add_derived(all_runs[all_runs["status"] == "FINISHED"])
    running = all_runs[all_runs["status"] == "RUNNING"]
    failed = all_runs[~all_runs["status"].isin(["FINISHED", "RUNNING"])]
    if finished.empty:
        raise ElaError(
            f"sweep {parent.info.run_name} has no FINISHED jobs ({len(failed)} failed, {len(running)} running)"
        )
    notes = [f"Confidence intervals: {CI_METHOD}."]
    for tag, what in (("tags.ela.method.energy", "Energy method"), ("tags.gpu.name", "card")):
        if tag in finished:
            notes.append(f"{what}: {', '.join(sorted(finished[tag].dropna().astype(str).unique())) or 'none'}.")
    if len(running):
        notes.append(f"{len(running)} job(s) still RUNNING, left out: " + ", ".join(running["tags.mlflow.runName"]))
    configs = configurations(finished)
    finished = finished.merge(configs[[compare.HASH, "config"]], on=compare.HASH)
    if (configs["n_seeds"] < 2).any():
        notes.append(
            "Configurations with one seed: CIs of cost and energy come from their energy windows (noise within "
            "one job, labelled in ci_basis); other metrics have none and their domination is by means only."
        )
    beyond = configs.get("drift_cost_ms_per_sample_beyond_ci", pd.Series(False, index=configs.index))
    for _, r in configs[beyond.fillna(False).astype(bool)].iterrows():
        notes.append(
            f"Drift: {r['config']} cost per sample moved {r['drift_cost_ms_per_sample']:+.1%} from its first to "
            "its last repetition, more than its 95% CI: the machine changed during the sweep."
        )

    fp32, threshold = configs[configs["params.precision.name"] == "fp32"], None
    if fp32.empty or ACCURACY not in configs:
        configs["quality_ok"] = True
        notes.append("No fp32 reference in this sweep: the quality constraint is not applied.")
    else:
        threshold = cfg.tolerance * fp32[ACCURACY].mean()
        configs["quality_ok"] = configs[ACCURACY] >= threshold
        notes.append(f"Quality constraint: accuracy >= {cfg.tolerance:g} x fp32 accuracy = {threshold:.4f}.")
    for name, objectives in FRONTS.items():
        if all(o.column in configs for o in objectives):
            configs[f"front_{name}"] = classify(configs, objectives)
            ok = configs[configs["quality_ok"]]
            configs[f"front_{name}_quality"] = classify(ok, objectives).reindex(configs.index)
        else:
            missing = [o.column for o in objectives if o.column not in configs]
            notes.append(f"Front {name} skipped: this sweep has no {', '.join(missing)} (no energy meter?).")

    recs = recommend(configs, cfg)
    difficulty, unread = difficulty_table(tracker, finished)
    if unread:
        notes.append("Left out of the difficulty table (no readable predictions.csv): " + ", ".join(unread))
    result = Analysis(parent, finished, failed, configs, difficulty, running, threshold, notes, recs)
    return result, tracker


def recommend(configs: pd.DataFrame, cfg: AnalyzeConfig) -> dict[str, str]:
    """The knee of the quality-constrained cost-energy front, and the best config under constraints."""
    recs: dict[str, str] = {}
    col = "front_cost_energy_quality"
    if col in configs:
        front = configs[configs[col] == FRONT]
        k = knee(front, COST, ENERGY)
        if k is not None:
            r = configs.loc[k]
            recs["knee"] = (
                f"{r['config']}: cost {r[COST]:.3f} ms/sample, {r[ENERGY]:.4f} J/sample, p90 {r[P90]:.2f} ms/batch, "
                f"accuracy {r[ACCURACY]:.4f} (front point closest to the utopia point after min-max scaling)"
                + _caveat(r)
            )
    ok = configs[configs["quality_ok"]]
    if cfg.max_latency_ms is not None:
        ok = ok[ok[P90] <= cfg.max_latency_ms]
    if cfg.min_accuracy is not None:
        ok = ok[ok[ACCURACY] >= cfg.min_accuracy]
    goal = ENERGY if ENERGY in ok else COST
    constraints = ", ".join(
        f"{k}={v}" for k, v in (("max_latency_ms (p90)", cfg.max_latency_ms), ("min_accuracy", cfg.min_accuracy)) if v
    )
    if ok.empty:
        recs["best"] = f"no configuration meets the constraints ({constraints or 'quality only'})"
    else:
        r = ok.loc[ok[goal].idxmin()]
        recs["best"] = (
            f"{r['config']}: lowest {goal} under {constraints or 'the quality constraint'} "
            f"(cost {r[COST]:.3f} ms/sample, p90 {r[P90]:.2f} ms/batch"
            + (f", {r[ENERGY]:.4f} J/sample" if ENERGY in r else "")
            + ")"
            + _caveat(r)
        )
    return recs


def _caveat(row: pd.Series) -> str:
    """What a recommendation must say when its figures are not trustworthy."""
    if row.get("verdict") == quality.UNRELIABLE:
        return f" -- built on UNRELIABLE figures: {row['verdict_reasons']}"
    if row.get("verdict") == quality.NOISY:
        return f" -- figures are noisy: {row['verdict_reasons']}"
    return ""


def output_dir(cfg: AnalyzeConfig, parent) -> Path:
    """Where files go: out=, else <sweep folder>/analysis if it exists here, else ./analysis/<run id>."""
    if cfg.out:
        return Path(cfg.out)
    sweep_dir = Path(parent.data.tags.get("ela.sweep_dir", ""))
    if str(sweep_dir) and sweep_dir.is_dir():
        return sweep_dir / "analysis"
    return Path("analysis") / parent.info.run_id


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    from ela.analysis.report import summary_text, write_outputs

    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
        result, tracker = analyze(cfg)
        out = output_dir(cfg, result.parent)
        files = write_outputs(result, out)
        if cfg.log_to_mlflow:
            tracker.client.log_artifacts(result.parent.info.run_id, str(out), artifact_path="analysis")
    except ElaError as err:
        print(f"ela.analyze: {err}", file=sys.stderr)
        return 2
    print(summary_text(result))
    print(
        f"\n[ela] {len(files)} files in {out}"
        + (" (also logged to the sweep's parent run)" if cfg.log_to_mlflow else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
