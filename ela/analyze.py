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

import numpy as np
import pandas as pd

from ela import ElaError
from ela.pareto import FRONT, Objective, classify, knee
from ela.stats import CI_METHOD, aggregate
from ela.tracking import PARENT_TAG, Tracker, tracking_uri

# Metrics aggregated across seeds (those a sweep has; derived ones are added per run first).
METRICS = [
    "accuracy",
    "agreement_with_fp32",
    "latency_ms_per_sample",
    "batch_latency_ms_p50",
    "batch_latency_ms_p99",
    "throughput_samples_per_s",
    "energy_j_per_sample",
    "dynamic_energy_j_per_sample",
    "avg_power_w",
    "idle_power_w",
    "emissions_g",
    "codecarbon_energy_kwh",
    "peak_memory_mb",
    "energy_per_correct_j",
    "samples_per_j",
    "dynamic_share",
    "emissions_mg_per_sample",
]
# Configuration identity besides the config hash, for labels (precision, batch, model, dataset).
LABELS = ["params.precision.name", "params.batch", "params.engine.name", "params.model.name", "params.dataset.name"]
LATENCY, ENERGY, EMISSIONS, ACCURACY = (
    "latency_ms_per_sample",
    "energy_j_per_sample",
    "emissions_mg_per_sample",
    "accuracy",
)
FRONTS = {
    "latency_energy": [Objective(LATENCY), Objective(ENERGY)],
    "latency_emissions": [Objective(LATENCY), Objective(EMISSIONS)],
    "energy_accuracy": [Objective(ENERGY), Objective(ACCURACY, minimize=False)],
    "energy_latency_accuracy": [Objective(ENERGY), Objective(LATENCY), Objective(ACCURACY, minimize=False)],
}


@dataclass
class AnalyzeConfig:
    """Options, given on the command line as key=value."""

    sweep: str = "latest"  # parent run id, parent run name (e.g. 2026-11-26/14-13-37), or latest
    experiment: str = "ela"
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlflow.db
    tolerance: float = 0.99  # quality constraint: accuracy >= tolerance x fp32 accuracy (MLPerf-style 99%)
    max_latency_ms: float | None = None  # constraint on latency_ms_per_sample for the recommendation
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
    parent: object
    runs: pd.DataFrame  # FINISHED children, params cast, derived metrics added
    failed: pd.DataFrame  # children that did not finish
    configs: pd.DataFrame  # one row per configuration, aggregated across seeds, with front status
    difficulty: pd.DataFrame
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
    """All child runs of the sweep as a DataFrame (mlflow.search_runs), params cast to their types."""
    import mlflow

    query = f"tags.`{PARENT_TAG}` = '{parent_id}'" + (f" and {extra_filter}" if extra_filter else "")
    mlflow.set_tracking_uri(tracker.uri)
    df = mlflow.search_runs([tracker.experiment_id], filter_string=query, max_results=50000)
    for col in [c for c in df.columns if c.startswith("params.")]:
        df[col] = df[col].map(_cast)
    df.columns = [c.removeprefix("metrics.") for c in df.columns]
    return df


def add_derived(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-run derived metrics (each defined from measured ones; absent when their inputs are)."""
    r = runs.copy()
    if ENERGY in r:
        r["energy_per_correct_j"] = r[ENERGY] / r[ACCURACY]
        r["samples_per_j"] = 1.0 / r[ENERGY]
        r["dynamic_share"] = r["dynamic_energy_j_per_sample"] / r[ENERGY]
        if "emissions_g" in r and "codecarbon_energy_kwh" in r:
            # GPU window energy x the grid intensity CodeCarbon used (g/kWh) -> mg CO2e per sample.
            intensity = r["emissions_g"] / r["codecarbon_energy_kwh"]
            r[EMISSIONS] = r[ENERGY] / 3.6e6 * intensity * 1000.0
    return r


def relative_to_fp32(configs: pd.DataFrame) -> pd.DataFrame:
    """Speed-up and energy saving against fp32 with the same batch, model and dataset (means)."""
    c = configs.copy()
    same = [k for k in ("params.batch", "params.engine.name", "params.model.name", "params.dataset.name") if k in c]
    ref = c[c["params.precision.name"] == "fp32"].set_index(same)
    for col, name, fn in (
        (LATENCY, "speedup_vs_fp32", lambda ref_v, v: ref_v / v),
        (ENERGY, "energy_saving_vs_fp32", lambda ref_v, v: 1.0 - v / ref_v),
    ):
        if col not in c or ref.empty:
            continue
        c[name] = [
            fn(ref.loc[key, col], v) if key in ref.index else np.nan
            for key, v in zip(c[same].itertuples(index=False, name=None), c[col], strict=True)
        ]
    return c


def label(row: pd.Series) -> str:
    engine = row.get("params.engine.name", "eager")
    return f"{row['params.precision.name']}-b{row['params.batch']}" + (
        "" if engine in ("eager", None) else f"-{engine}"
    )


def difficulty_table(tracker: Tracker, runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and confidence by sentence-length and fp32-confidence quintile, per precision x batch."""
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, run in runs.iterrows():
            try:
                path = tracker.client.download_artifacts(run["run_id"], "predictions.csv", tmp)
            except Exception:  # noqa: BLE001 - a run without the table is left out, not fatal
                continue
            t = pd.read_csv(path)
            t["precision"], t["batch"], t["seed"] = (
                run["params.precision.name"],
                run["params.batch"],
                run["params.seed"],
            )
            tables.append(t)
    if not tables:
        return pd.DataFrame()
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
    return pd.concat(frames, ignore_index=True)


def _by_bin(per_sample: pd.DataFrame, column: str) -> pd.DataFrame:
    g = per_sample.groupby(["precision", "batch", column], observed=True)
    out = g.agg(accuracy=("correct", "mean"), confidence=("confidence", "mean"), n=("correct", "size"))
    out = out.reset_index().rename(columns={column: "bin"})
    out.insert(0, "binning", column)
    return out


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
    failed = all_runs[all_runs["status"] != "FINISHED"]
    notes = [f"Confidence intervals: {CI_METHOD}."]
    for tag, what in (("tags.ela.method.energy_gpu", "GPU energy method"), ("tags.gpu.name", "card")):
        if tag in finished:
            notes.append(f"{what}: {', '.join(sorted(finished[tag].dropna().astype(str).unique())) or 'none'}.")
    if finished.empty:
        raise ElaError(f"sweep {parent.info.run_name} has no FINISHED jobs ({len(failed)} failed)")
    keys = ["tags.ela.config_hash", *[k for k in LABELS if k in finished]]
    configs = aggregate(finished, keys, [m for m in METRICS if m in finished])
    configs.insert(0, "config", configs.apply(label, axis=1))
    configs = relative_to_fp32(configs)
    if (configs["n_seeds"] < 2).any():
        notes.append("Configurations with one seed have no CI: their domination is by means only.")

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
            notes.append(f"Front {name} skipped: this sweep has no {', '.join(missing)} (no GPU energy meter?).")

    recs = recommend(configs, cfg)
    difficulty = difficulty_table(tracker, finished)
    return Analysis(parent, finished, failed, configs, difficulty, threshold, notes, recs), tracker


def recommend(configs: pd.DataFrame, cfg: AnalyzeConfig) -> dict[str, str]:
    """The knee of the quality-constrained latency-energy front, and the best config under constraints."""
    recs: dict[str, str] = {}
    col = "front_latency_energy_quality"
    if col in configs:
        front = configs[configs[col] == FRONT]
        k = knee(front, LATENCY, ENERGY)
        if k is not None:
            r = configs.loc[k]
            recs["knee"] = (
                f"{r['config']}: {r[LATENCY]:.3f} ms/sample, {r[ENERGY]:.4f} J/sample, accuracy {r[ACCURACY]:.4f} "
                "(front point closest to the utopia point after min-max scaling)"
            )
    ok = configs[configs["quality_ok"]]
    if cfg.max_latency_ms is not None:
        ok = ok[ok[LATENCY] <= cfg.max_latency_ms]
    if cfg.min_accuracy is not None:
        ok = ok[ok[ACCURACY] >= cfg.min_accuracy]
    goal = ENERGY if ENERGY in ok else LATENCY
    constraints = ", ".join(
        f"{k}={v}" for k, v in (("max_latency_ms", cfg.max_latency_ms), ("min_accuracy", cfg.min_accuracy)) if v
    )
    if ok.empty:
        recs["best"] = f"no configuration meets the constraints ({constraints or 'quality only'})"
    else:
        r = ok.loc[ok[goal].idxmin()]
        recs["best"] = (
            f"{r['config']}: lowest {goal} under {constraints or 'the quality constraint'} "
            f"({r[LATENCY]:.3f} ms/sample" + (f", {r[ENERGY]:.4f} J/sample" if ENERGY in r else "") + ")"
        )
    return recs


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
    from ela.analysis_report import summary_text, write_outputs

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
