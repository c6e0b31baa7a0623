"""Accuracy by difficulty: per configuration, by token-length and by fp32-confidence quintile."""

from __future__ import annotations

import tempfile

import pandas as pd

from ela.tracking.store import Tracker

QUINTILES = [f"Q{i}" for i in range(1, 6)]


def difficulty_table(tracker: Tracker, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The table from each run's predictions.csv, and the runs whose predictions could not be read."""
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
    per_sample["length_quintile"] = per_sample["index"].map(pd.qcut(lengths.rank(method="first"), 5, QUINTILES))
    frames = [_by_bin(per_sample, "length_quintile", "token_length", "{:.0f}-{:.0f} tokens")]
    fp32 = per_sample[per_sample["precision"] == "fp32"]
    if not fp32.empty:
        conf = fp32.groupby("index")["confidence"].mean()
        per_sample["fp32_confidence_quintile"] = per_sample["index"].map(
            pd.qcut(conf.rank(method="first"), 5, QUINTILES)
        )
        per_sample["fp32_confidence"] = per_sample["index"].map(conf)
        frames.append(
            _by_bin(per_sample, "fp32_confidence_quintile", "fp32_confidence", "fp32 confidence {:.2f}-{:.2f}")
        )
    return pd.concat(frames, ignore_index=True), unread


def _by_bin(per_sample: pd.DataFrame, column: str, value: str, shown: str) -> pd.DataFrame:
    """Accuracy, confidence and count per configuration and bin, each bin labelled with its range."""
    g = per_sample.groupby(["config", "precision", "batch", column], observed=True)
    out = g.agg(accuracy=("correct", "mean"), confidence=("confidence", "mean"), n=("correct", "size"))
    out = out.reset_index().rename(columns={column: "bin"})
    ranges = per_sample.drop_duplicates("index").groupby(column, observed=True)[value].agg(["min", "max", "size"])
    out["range"] = out["bin"].map(
        {b: shown.format(r["min"], r["max"]) + f" (n={r['size']})" for b, r in ranges.iterrows()}
    )
    out.insert(0, "binning", column)
    return out
