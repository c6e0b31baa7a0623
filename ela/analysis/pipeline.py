"""The analysis of one sweep, end to end but for writing files: load, derive, aggregate, judge, recommend."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ela import ElaError
from ela import schema as s
from ela.analysis import compare
from ela.analysis.derive import add_derived, configurations, drift_notes
from ela.analysis.difficulty import difficulty_table
from ela.analysis.load import find_sweep, load_runs
from ela.analysis.recommend import Constraints, fronts, quality_constraint, recommend
from ela.analysis.stats import CI_METHOD
from ela.tracking.store import Tracker, tracking_uri


def unfinished(failed: pd.DataFrame) -> str:
    """'1 failed' or '0 failed, 2 killed': jobs that did not finish, the killed ones apart.

    A job a SIGTERM or SIGINT stopped (a deadline, a user) ends KILLED, not FAILED. One killed outright (SIGKILL)
    closes nothing: its run stays RUNNING until a resume marks it FAILED.
    """
    killed = int((failed["status"] == "KILLED").sum()) if len(failed) else 0
    return f"{len(failed) - killed} failed" + (f", {killed} killed" if killed else "")


@dataclass
class AnalyzeConfig:
    """What to analyse and how (conf/analysis/analyze.yaml holds the same keys, with a comment each)."""

    sweep: str | list[str] = "latest"  # a list analyses several sweeps together (e.g. an encoder's and a decoder's)
    experiment: str = "ela"
    tracking_uri: str | None = None
    tolerance: float = 0.99
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    out: str | None = None
    filter: str | None = None
    card: str | None = None  # only the jobs on this GPU model (tag gpu.name)
    log_to_mlflow: bool = True


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


def analyze(cfg: AnalyzeConfig) -> tuple[Analysis, Tracker]:
    """Everything but the output: runs, aggregation, fronts, recommendations, difficulty."""
    uri = tracking_uri(cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), Path.cwd())
    tracker = Tracker(uri, cfg.experiment, create=False)
    parents = [find_sweep(tracker, str(name)) for name in (cfg.sweep if isinstance(cfg.sweep, list) else [cfg.sweep])]
    parent = parents[0]  # where the files are logged and named after
    card = f"tags.`gpu.name` = '{cfg.card}'" if cfg.card else None
    where = " and ".join(f for f in (cfg.filter, card) if f) or None
    loaded = [load_runs(tracker, p.info.run_id, where) for p in parents]
    all_runs = pd.concat([df for df, _ in loaded], ignore_index=True)
    rerun = sum(n for _, n in loaded)
    if all_runs.empty:
        raise ElaError(
            f"sweep {parent.info.run_name} has no jobs"
            + (f" matching {where!r}" if where else "")
            + (f"; its jobs ran on: {cards_of(tracker, parents)}" if cfg.card else "")
        )
    finished = add_derived(all_runs[all_runs["status"] == "FINISHED"])
    running = all_runs[all_runs["status"] == "RUNNING"]
    failed = all_runs[~all_runs["status"].isin(["FINISHED", "RUNNING"])]
    if finished.empty:
        raise ElaError(
            f"sweep {parent.info.run_name} has no FINISHED jobs ({unfinished(failed)}, {len(running)} running)"
        )
    notes = [f"Confidence intervals: {CI_METHOD}."]
    if rerun:
        notes.append(f"{rerun} earlier attempt(s) of jobs that resume=true ran again are left out (one row a job).")
    if len(parents) > 1:
        notes.append(
            "Sweeps analysed together: "
            + ", ".join(f"{p.info.run_name} ({p.info.run_id[:8]})" for p in parents)
            + "; the files are logged on the first one's parent run."
        )
    for tag, what in (("tags.ela.method.energy", "Energy method"), ("tags.gpu.name", "card")):
        if tag in finished:
            notes.append(f"{what}: {', '.join(sorted(finished[tag].dropna().astype(str).unique())) or 'none'}.")
    notes += mixed_hardware(finished)
    if "tags.ela.energy_scope" in finished and (finished["tags.ela.energy_scope"] == "cpu+ram").any():
        notes.append(
            "Energy per sample here is CodeCarbon's CPU+RAM model over each window (no readable RAPL): modelled."
        )
    idle = finished[s.IDLE_POWER] if s.IDLE_POWER in finished else pd.Series(float("nan"), index=finished.index)
    if s.ENERGY in finished and (no_idle := finished[s.ENERGY].notna() & idle.isna()).any():
        notes.append(
            f"{int(no_idle.sum())} job(s) ran without an idle baseline (measure.idle_window_s=0): gross energy only, "
            "no dynamic (above-idle) figures."
        )
    if len(running):
        notes.append(f"{len(running)} job(s) still RUNNING, left out: " + ", ".join(running["tags.mlflow.runName"]))
    configs = configurations(finished)
    finished = finished.merge(configs[[compare.HASH, "config"]], on=compare.HASH)
    if (configs["n_seeds"] < 2).any():
        notes.append(
            "Configurations with one seed: CIs of cost and energy come from their energy windows (noise within "
            "one job, labelled in ci_basis); other metrics have none and their domination is by means only."
        )
    notes += drift_notes(configs)
    configs, threshold, note = quality_constraint(configs, cfg.tolerance)
    configs, skipped = fronts(configs)
    notes += [note, *skipped]
    recs = recommend(configs, Constraints(cfg.max_latency_ms, cfg.min_accuracy))
    difficulty, unread = difficulty_table(tracker, finished)
    if unread:
        notes.append("Left out of the difficulty table (no readable predictions.csv): " + ", ".join(unread))
    return Analysis(parent, finished, failed, configs, difficulty, running, threshold, notes, recs), tracker


def output_dir(cfg: AnalyzeConfig, parent) -> Path:
    """Where files go: out=, else <sweep folder>/analysis if it exists here, else ./analysis/<run id>."""
    if cfg.out:
        return Path(cfg.out)
    sweep_dir = Path(parent.data.tags.get("ela.sweep_dir", ""))
    if str(sweep_dir) and sweep_dir.is_dir():
        return sweep_dir / "analysis"
    return Path("analysis") / parent.info.run_id


def cards_of(tracker: Tracker, parents: list) -> str:
    """The GPU models a sweep's jobs ran on (their gpu.name tags), for an error that names the choices."""
    runs = pd.concat([load_runs(tracker, p.info.run_id, None)[0] for p in parents], ignore_index=True)
    names = sorted(runs["tags.gpu.name"].dropna().astype(str).unique()) if "tags.gpu.name" in runs else []
    return ", ".join(names) or "no GPU (a CPU sweep: leave card unset)"


def mixed_hardware(runs: pd.DataFrame) -> list[str]:
    """A warning when a sweep's jobs ran on different GPU models (a sweep resumed elsewhere, a mixed cluster).

    Its fronts, speed-ups and recommendation would then compare cards as well as configurations.
    """
    if "tags.gpu.name" not in runs:
        return []
    cards = runs["tags.gpu.name"].dropna().astype(str)
    if cards.nunique() < 2:
        return []
    counts = cards.value_counts().sort_index()
    listed = ", ".join(f"{card} ({n})" for card, n in counts.items())
    return [
        f"WARNING: jobs ran on {cards.nunique()} kinds of GPU ({listed} jobs): fronts, speed-ups and the "
        "recommendation compare cards as well as configurations. Analyse one card's jobs with "
        f'card="{counts.idxmax()}", or run the sweep on one kind.'
    ]
