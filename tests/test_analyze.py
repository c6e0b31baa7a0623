"""`python -m ela.analyze` on a real small CPU sweep (2 seeds) in a temporary MLflow store."""

import os
import subprocess
import sys

import pytest
from conftest import FAKE_GPU, LOCAL, PARENT, REPO, all_runs, client, run_ela


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze")
    proc = run_ela(
        tmp,
        "precision=fp32,bf16",
        "batch=4,16",
        "seed=0,1",
        *LOCAL,
        "dataset.limit=40",
        *FAKE_GPU,
        "measure.idle_window_s=0.1",
        "measure.repeats=1",
        "measure.min_window_s=0.1",
        "measure.warmup_batches=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


def analyze(tmp, *args):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "ela.analyze", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )


def test_analyze_writes_tables_plots_and_report_and_logs_them(swept):
    proc = analyze(swept, "max_latency_ms=1000", "min_accuracy=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = swept / "multirun" / "analysis"  # the sweep's own folder
    for name in ("configs.csv", "runs.csv", "difficulty.csv", "report.md", "report.html"):
        assert (out / name).is_file(), name
    pngs = {p.name for p in (out / "plots").glob("*.png")}
    assert {
        "accuracy_by_precision.png",
        "energy_by_precision.png",
        "pareto_latency_energy.png",
        "accuracy_vs_energy.png",
        "latency_vs_throughput.png",
        "difficulty_by_length.png",
        "difficulty_by_fp32_confidence.png",
    } <= pngs
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "8 finished jobs, 0 failed, 4 configurations" in proc.stdout
    assert "note: GPU energy method: fake-counter." in proc.stdout  # a test double is never hidden
    assert "recommended (knee):" in proc.stdout and "recommended (best):" in proc.stdout
    parent = next(r for r in all_runs(swept) if PARENT not in r.data.tags)
    logged = {a.path for a in client(swept).list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/report.html", "analysis/report.md", "analysis/plots"} <= logged


def test_aggregation_matches_the_runs(swept):
    import pandas as pd

    configs = pd.read_csv(swept / "multirun" / "analysis" / "configs.csv")
    runs = pd.read_csv(swept / "multirun" / "analysis" / "runs.csv")
    assert len(configs) == 4 and set(configs["n_seeds"]) == {2}
    row = configs[configs["config"] == "bf16-b4"].iloc[0]
    seeds = runs[(runs["params.precision.name"] == "bf16") & (runs["params.batch"] == 4)]["latency_ms_per_sample"]
    assert row["latency_ms_per_sample"] == pytest.approx(seeds.mean())
    assert row["latency_ms_per_sample_sd"] == pytest.approx(seeds.std(ddof=1))
    assert row["latency_ms_per_sample_ci"] == pytest.approx(12.7062047 * seeds.std(ddof=1) / 2**0.5)  # t(.975, 1)
    assert configs.loc[configs["config"] == "fp32-b4", "speedup_vs_fp32"].item() == pytest.approx(1.0)
    assert configs["front_latency_energy"].notna().all()


def test_difficulty_table_has_quintiles_per_config(swept):
    import pandas as pd

    d = pd.read_csv(swept / "multirun" / "analysis" / "difficulty.csv")
    assert set(d["binning"]) == {"length_quintile", "fp32_confidence_quintile"}
    per = d[d["binning"] == "length_quintile"].groupby(["precision", "batch"])["n"].sum()
    assert (per == 80).all()  # 40 sentences x 2 seeds in each configuration


def test_clear_errors_for_unknown_sweep_empty_experiment_and_bad_args(swept, tmp_path):
    proc = analyze(swept, "sweep=nope")
    assert proc.returncode == 2 and "no sweep 'nope'" in proc.stderr and "recent sweeps" in proc.stderr
    proc = analyze(swept, "experiment=empty")
    assert proc.returncode == 2 and "no experiment 'empty'" in proc.stderr
    proc = analyze(swept, "sweeep=latest")
    assert proc.returncode == 2 and "unknown argument 'sweeep=latest'" in proc.stderr
    proc = analyze(tmp_path)  # no store there at all
    assert proc.returncode == 2 and "no MLflow store" in proc.stderr


def test_notebook_runs_against_the_sweep(swept):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{swept / 'mlflow.db'}"
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(swept)}}).execute()
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "knee:" in text and "8 finished" in text
