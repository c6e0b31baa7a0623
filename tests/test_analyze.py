"""`python -m ela.analyze` on a real small CPU sweep (2 seeds) in a temporary MLflow store."""

import os
import subprocess
import sys

import pytest
from conftest import FAKE_GPU, LOCAL, PARENT, REPO, all_runs, client, run_ela

pytestmark = pytest.mark.slow  # real sweeps, then `python -m ela.analyze`


def small_sweep(tmp, seeds: str):
    """fp32/bf16 x batch 4/16 x these seeds of the MiniLM on 40 sentences (fake GPU meter), into tmp's store."""
    proc = run_ela(
        tmp,
        "precision=fp32,bf16",
        "batch=4,16",
        f"seed={seeds}",
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


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return small_sweep(tmp_path_factory.mktemp("analyze"), "0,1,2")


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
        "pareto_cost_energy.png",
        "pareto_p90_energy.png",
        "accuracy_vs_energy.png",
        "cost_vs_p90_latency.png",
        "difficulty_by_length.png",
        "difficulty_by_fp32_confidence.png",
    } <= pngs
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "12 finished jobs, 0 failed, 4 configurations" in proc.stdout
    assert "note: Energy method: fake-counter." in proc.stdout  # a test double is never hidden
    assert "recommended (knee):" in proc.stdout and "recommended (best):" in proc.stdout
    parent = next(r for r in all_runs(swept) if PARENT not in r.data.tags)
    logged = {a.path for a in client(swept).list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/report.html", "analysis/report.md", "analysis/plots"} <= logged


def test_aggregation_matches_the_runs(swept):
    import pandas as pd

    configs = pd.read_csv(swept / "multirun" / "analysis" / "configs.csv")
    runs = pd.read_csv(swept / "multirun" / "analysis" / "runs.csv")
    assert len(configs) == 4 and set(configs["n_seeds"]) == {3}
    row = configs[configs["config"] == "bf16-b4"].iloc[0]
    seeds = runs[(runs["params.precision.name"] == "bf16") & (runs["params.batch"] == 4)]["cost_ms_per_sample"]
    assert row["cost_ms_per_sample"] == pytest.approx(seeds.mean())
    assert row["cost_ms_per_sample_sd"] == pytest.approx(seeds.std(ddof=1))
    assert row["cost_ms_per_sample_ci"] == pytest.approx(4.30265273 * seeds.std(ddof=1) / 3**0.5)  # t(.975, 2)
    assert set(configs["ci_basis"]) == {"seeds (n=3)"} and configs["verdict"].isin(["ok", "noisy", "unreliable"]).all()
    assert {"drift_cost_ms_per_sample", "drift_energy_j_per_sample"} <= set(configs.columns)
    assert configs.loc[configs["config"] == "fp32-b4", "speedup_vs_fp32"].item() == pytest.approx(1.0)
    assert configs["front_cost_energy"].notna().all() and configs["front_p90_energy"].notna().all()


def test_repetitions_are_interleaved_every_config_once_before_any_twice(swept):
    kids = sorted(
        (r for r in all_runs(swept) if PARENT in r.data.tags), key=lambda r: int(r.data.tags["ela.sweep_position"])
    )
    seeds = [int(r.data.params["seed"]) for r in kids]
    assert seeds == [0] * 4 + [1] * 4 + [2] * 4  # seed outermost, not 0,1,2 per configuration in a row
    configs = [(r.data.params["precision.name"], r.data.params["batch"]) for r in kids]
    assert len(set(configs[:4])) == 4 and configs[:4] == configs[4:8] == configs[8:]


def test_seeds_share_a_config_hash_and_batches_do_not(swept):
    kids = [r for r in all_runs(swept) if PARENT in r.data.tags]
    by_config: dict = {}
    for r in kids:
        by_config.setdefault((r.data.params["precision.name"], r.data.params["batch"]), []).append(r.data.tags)
    assert len(by_config) == 4 and all(len(tags) == 3 for tags in by_config.values())
    for tags in by_config.values():  # three seeds: one config hash, three run hashes
        assert len({t["ela.config_hash"] for t in tags}) == 1 and len({t["ela.run_hash"] for t in tags}) == 3
    assert len({tags[0]["ela.config_hash"] for tags in by_config.values()}) == 4


def test_difficulty_table_has_quintiles_per_config(swept):
    import pandas as pd

    d = pd.read_csv(swept / "multirun" / "analysis" / "difficulty.csv")
    assert set(d["binning"]) == {"length_quintile", "fp32_confidence_quintile"}
    per = d[d["binning"] == "length_quintile"].groupby(["precision", "batch"])["n"].sum()
    assert (per == 120).all()  # 40 sentences x 3 seeds in each configuration


def test_clear_errors_for_unknown_sweep_empty_experiment_and_bad_args(swept, tmp_path):
    proc = analyze(swept, "sweep=nope")
    assert proc.returncode == 2 and "no sweep 'nope'" in proc.stderr and "recent sweeps" in proc.stderr
    proc = analyze(swept, "experiment=empty")
    assert proc.returncode == 2 and "no experiment 'empty'" in proc.stderr
    proc = analyze(swept, "sweeep=latest")
    assert proc.returncode == 2 and "unknown key 'sweeep': did you mean 'sweep'?" in proc.stderr
    proc = analyze(swept, "--help")
    assert proc.returncode == 0 and "ela.analyze: pull one sweep back from MLflow" in proc.stdout
    assert "max_latency_ms: null" in proc.stdout and "python -m ela.analyze sweep=" in proc.stdout
    proc = analyze(tmp_path)  # no store there at all
    assert proc.returncode == 2 and "no MLflow store" in proc.stderr


def test_jobs_on_two_kinds_of_gpu_are_a_warning_and_the_filter_it_names_works(swept, tmp_path):
    import shutil

    shutil.copy(swept / "mlflow.db", tmp_path / "mlflow.db")  # a copy: the module's other tests keep one card
    children = [r for r in all_runs(tmp_path) if PARENT in r.data.tags]
    for i, run in enumerate(children):  # as a sweep resumed on another machine
        client(tmp_path).set_tag(run.info.run_id, "gpu.name", "Card A" if i % 2 else "Card B")
    proc = analyze(tmp_path, "log_to_mlflow=false", f"out={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING: jobs ran on 2 kinds of GPU (Card A (6), Card B (6) jobs)" in proc.stdout
    assert "recommendation compare cards as well as configurations" in proc.stdout
    assert 'Analyse one card\'s jobs with card="Card A"' in proc.stdout
    proc = analyze(tmp_path, "log_to_mlflow=false", f"out={tmp_path / 'b'}", "card=Card A")  # as a shell passes it
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kinds of GPU" not in proc.stdout and "6 finished jobs" in proc.stdout
    proc = analyze(tmp_path, "log_to_mlflow=false", "card=Card C")  # a typo names the choices
    assert proc.returncode == 2 and "its jobs ran on: Card A, Card B" in proc.stderr


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
    assert "knee:" in text and "12 finished" in text


@pytest.fixture(scope="module")
def cpu_axis_sweep(tmp_path_factory):
    """A CPU sweep with an extra axis (attention kernel), one seed, energy from the CPU meter (RAPL or model)."""
    tmp = tmp_path_factory.mktemp("axis")
    proc = run_ela(
        tmp,
        "precision=fp32,bf16",
        "model.attn_implementation=sdpa,eager",
        *LOCAL,
        "dataset.limit=40",
        "measure.idle_window_s=0.3",
        "measure.min_window_s=0.3",
        "measure.warmup_batches=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert analyze(tmp).returncode == 0
    return tmp


def test_an_extra_axis_gives_distinct_configs_each_against_its_own_fp32(cpu_axis_sweep):
    import pandas as pd

    configs = pd.read_csv(cpu_axis_sweep / "multirun" / "analysis" / "configs.csv").set_index("config")
    assert sorted(configs.index) == [
        "bf16-b8-attn_implementation=eager",
        "bf16-b8-attn_implementation=sdpa",
        "fp32-b8-attn_implementation=eager",
        "fp32-b8-attn_implementation=sdpa",
    ]
    for attn in ("eager", "sdpa"):
        fp32, bf16 = (
            configs.loc[f"fp32-b8-attn_implementation={attn}"],
            configs.loc[f"bf16-b8-attn_implementation={attn}"],
        )
        assert fp32["speedup_vs_fp32"] == pytest.approx(1.0)
        assert bf16["speedup_vs_fp32"] == pytest.approx(fp32["cost_ms_per_sample"] / bf16["cost_ms_per_sample"])


def test_a_cpu_sweep_has_energy_fronts_and_a_knee_labelled_by_how_energy_was_obtained(cpu_axis_sweep):
    import pandas as pd

    out = cpu_axis_sweep / "multirun" / "analysis"
    configs = pd.read_csv(out / "configs.csv")
    assert configs["energy_j_per_sample"].gt(0).all() and configs["front_cost_energy"].notna().all()
    # One seed: the CI of cost and energy comes from the job's own windows, and says so.
    assert set(configs["ci_basis"]) == {"within-job windows (n=3; one seed)"}
    assert configs["energy_j_per_sample_ci"].notna().all() and configs["cost_ms_per_sample_ci"].notna().all()
    report = (out / "report.md").read_text()
    assert "**knee**" in report
    assert "Energy method: rapl(" in report or "Energy method: codecarbon-model(" in report
    assert (out / "plots" / "pareto_cost_energy.png").is_file()


def test_runs_whose_predictions_cannot_be_read_are_named(cpu_axis_sweep):
    # Runs last in this module: it removes an artifact of the fixture's sweep.
    names = sorted(r.info.run_name for r in all_runs(cpu_axis_sweep) if PARENT in r.data.tags)
    assert names == [  # run names carry the extra axis, so no two jobs of the sweep share one
        "bf16-b8-attn_implementation=eager-s0",
        "bf16-b8-attn_implementation=sdpa-s0",
        "fp32-b8-attn_implementation=eager-s0",
        "fp32-b8-attn_implementation=sdpa-s0",
    ]
    run = next(r for r in all_runs(cpu_axis_sweep) if r.info.run_name == "bf16-b8-attn_implementation=sdpa-s0")
    path = client(cpu_axis_sweep).download_artifacts(run.info.run_id, "predictions.csv")
    from pathlib import Path

    Path(run.info.artifact_uri.removeprefix("file://"), "predictions.csv").unlink()
    proc = analyze(cpu_axis_sweep, "log_to_mlflow=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "Left out of the difficulty table (no readable predictions.csv): bf16-b8-attn_implementation=sdpa-s0"
        in proc.stdout
    )
    assert path


def test_a_sweep_without_idle_baseline_is_analysed_with_gross_energy_and_says_so(tmp_path):
    # measure.idle_window_s=0 (benchmarks/headline.sh): no dynamic figures anywhere, and the analysis notes it.
    import pandas as pd

    proc = run_ela(tmp_path, "precision=fp32,bf16", *LOCAL, *FAKE_GPU, "dataset.limit=24", "measure.repeats=1",
                   "measure.idle_window_s=0", "codecarbon.enabled=false")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dynamic n/a, no idle baseline" in proc.stdout
    result = analyze(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 job(s) ran without an idle baseline (measure.idle_window_s=0)" in result.stdout
    configs = pd.read_csv(tmp_path / "multirun" / "analysis" / "configs.csv")
    assert configs["energy_j_per_sample"].gt(0).all() and "dynamic_energy_j_per_sample" not in configs


def test_killed_jobs_are_counted_apart_from_failed_ones():
    """A job a deadline or a user stopped (KILLED) is not reported as a failure."""
    from types import SimpleNamespace

    import pandas as pd

    from ela.analysis.report import job_counts

    runs = pd.DataFrame({"status": ["FINISHED"] * 3})
    for statuses, text in [
        ([], "3 finished jobs, 0 failed"),
        (["KILLED", "KILLED"], "3 finished jobs, 0 failed, 2 killed"),
        (["FAILED", "KILLED"], "3 finished jobs, 1 failed, 1 killed"),
    ]:
        failed = pd.DataFrame({"status": statuses}) if statuses else pd.DataFrame()
        assert job_counts(SimpleNamespace(runs=runs, failed=failed)) == text
