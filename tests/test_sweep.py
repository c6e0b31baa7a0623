"""Real Hydra multiruns in a subprocess into a real MLflow SQLite store, checked from MLflow."""

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import FAKE_GPU, LOCAL, PARENT, all_runs, client, run_ela
from transformers import AutoModelForSequenceClassification, AutoTokenizer

pytestmark = pytest.mark.slow  # real Hydra multiruns in a subprocess


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """precision=fp32,bf16 x batch=1,8 on 48 SST-2 sentences, GPU energy from the fake meter."""
    tmp = tmp_path_factory.mktemp("sweep")
    proc = run_ela(
        tmp,
        "precision=fp32,bf16",
        "batch=1,8",
        *LOCAL,
        "dataset.limit=48",
        *FAKE_GPU,
        "measure.idle_window_s=0.2",
        "measure.repeats=2",
    )
    return tmp, proc


def test_sweep_logs_one_parent_and_four_finished_children(sweep):
    tmp, proc = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = all_runs(tmp)
    parents = [r for r in runs if PARENT not in r.data.tags]
    children = [r for r in runs if PARENT in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["ela.run_kind"] == "sweep"
    assert parent.data.metrics["jobs_finished"] == 4 and parent.data.metrics["jobs_failed"] == 0
    assert {c.data.tags[PARENT] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.info.run_name for c in children) == ["bf16-b1-s0", "bf16-b8-s0", "fp32-b1-s0", "fp32-b8-s0"]
    # Sweep folder: the parent id for every launcher, and the end-of-sweep table.
    info = json.loads((tmp / "multirun" / "ela_sweep.json").read_text())
    assert info["parent_run_id"] == parent.info.run_id
    assert (tmp / "multirun" / "summary.csv").read_text().count("FINISHED") == 4
    assert "4 finished, 0 failed" in proc.stdout and "[ela] fp32-b8-s0 FINISHED acc" in proc.stdout


def test_children_carry_sane_metrics(sweep):
    tmp, _ = sweep
    for run in all_runs(tmp):
        if PARENT not in run.data.tags:
            continue
        m = run.data.metrics
        assert m["num_samples"] == 48
        assert 0.85 <= m["accuracy"] <= 1.0
        assert 0 < m["batch_latency_ms_p50"] <= m["batch_latency_ms_p90"] <= m["batch_latency_ms_p99"]
        assert m["cost_ms_per_sample"] > 0  # exactly its windows' figure: the artifact test below
        assert m["throughput_samples_per_s"] > 0 and m["latency_passes"] >= 1 and m["latency_window_s"] >= 0.2
        assert 0 <= m["stalled_batch_share"] <= 1 and m["latency_cost_ratio"] > 0
        assert m["energy_window_s"] >= 0.2 and m["energy_window_passes"] >= 1 and m["energy_windows"] == 2
        # The fake meter integrates 150 W over wall time: what ela logs must be exactly that arithmetic.
        assert m["avg_power_w"] == pytest.approx(150, rel=1e-3)
        assert m["window_energy_j"] == pytest.approx(150 * m["energy_window_s"], rel=1e-3)
        assert m["energy_j_per_sample_cv"] >= 0 and m["throughput_samples_per_s_cv"] >= 0
        assert m["idle_power_w"] == pytest.approx(150, rel=1e-2)
        assert abs(m["dynamic_energy_j_per_sample"]) < 0.02 * m["energy_j_per_sample"]
        assert m["codecarbon_energy_kwh"] > 0 and m["emissions_g"] > 0 and m["codecarbon_gpu_energy_kwh"] == 0
        assert m["peak_memory_mb"] > 0
        assert m["agreement_with_fp32"] >= 0.95


def test_children_carry_tags_params_and_artifacts(sweep):
    tmp, _ = sweep
    c = client(tmp)
    run = next(r for r in all_runs(tmp) if r.info.run_name == "bf16-b8-s0")
    t, p = run.data.tags, run.data.params
    assert t["ela.method.energy"] == "fake-counter"  # a test double is never mistaken for NVML
    assert t["ela.energy_scope"] == "fake" and t["ela.verdict"] in ("ok", "noisy", "unreliable")
    assert t["ela.method.codecarbon_cpu"].startswith("codecarbon-")
    assert t["ela.method.codecarbon_ram"] == "codecarbon-model(ram)"
    assert t["ela.device"] == "cpu" and t["ela.untrained_head"] == "false"
    for key in ("version.torch", "version.transformers", "version.codecarbon", "ela.git_commit", "host.name"):
        assert t[key]
    assert len(t["ela.config_hash"]) == 16
    assert p["precision.name"] == "bf16" and p["batch"] == "8" and p["precision.autocast_dtype"] == "bfloat16"
    assert p["model.path"].endswith("minilm-l6-sst2") and p["measure.min_window_s"] == "0.2"
    names = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "predictions.csv", "batch_latency_ms.csv", "energy_windows.csv", "codecarbon.json"} <= names
    assert {"power_trace.csv", "power_trace.png"} <= names
    trace = Path(c.download_artifacts(run.info.run_id, "power_trace.csv")).read_text()
    for phase in ("load", "idle power", "latency passes", "window 1/2", "window 2/2"):
        assert f",{phase}," in trace
    windows = list(
        csv.DictReader(io.StringIO(Path(c.download_artifacts(run.info.run_id, "energy_windows.csv")).read_text()))
    )
    per_sample = [float(w["energy_j"]) / float(w["samples"]) for w in windows]
    assert len(windows) == 2 and run.data.metrics["energy_j_per_sample"] == pytest.approx(sum(per_sample) / 2)
    cost = [1000 * float(w["duration_s"]) / float(w["samples"]) for w in windows]  # windows may differ in passes
    assert run.data.metrics["cost_ms_per_sample"] == pytest.approx(sum(cost) / 2)
    rows = list(csv.DictReader(io.StringIO(Path(c.download_artifacts(run.info.run_id, "predictions.csv")).read_text())))
    assert len(rows) == 48
    assert set(rows[0]) == {"index", "token_length", "label", "prediction", "confidence", "prediction_fp32"}
    record = json.loads(Path(c.download_artifacts(run.info.run_id, "codecarbon.json")).read_text())
    assert record["country_iso_code"] == "USA" and record["tracking_mode"] == "machine"


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    proc = run_ela(tmp_path, "precision=tf32,fp32", *LOCAL, "dataset.limit=16")
    assert proc.returncode == 1  # some jobs failed
    runs = {r.info.run_name: r for r in all_runs(tmp_path)}
    failed, ok = runs["tf32-b8-s0"], runs["fp32-b8-s0"]
    assert failed.info.status == "FAILED" and ok.info.status == "FINISHED"
    assert "TF32" in failed.data.tags["ela.error"] and failed.data.tags["ela.error_type"] == "ElaError"
    assert "accuracy" not in failed.data.metrics and ok.data.metrics["accuracy"] > 0.8
    names = {a.path for a in client(tmp_path).list_artifacts(failed.info.run_id)}
    assert "error.txt" in names and "config.yaml" in names
    parent = next(r for r in runs.values() if PARENT not in r.data.tags)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["ela.jobs_failed"] == "1" and parent.data.tags["ela.jobs_finished"] == "1"
    assert "1 finished, 1 failed" in proc.stdout


def test_an_invalid_value_is_refused_before_any_run_exists(tmp_path):
    proc = run_ela(tmp_path, *LOCAL, "batch=0", multirun=False)
    assert proc.returncode == 2 and "single run fp32-b0-s0 not started: invalid value batch=0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no run, not even a store, for a value that can't be valid


def test_untrained_head_refused_then_allowed_and_tagged(tmp_path):
    ckpt = tmp_path / "headless"
    AutoModelForSequenceClassification.from_pretrained(LOCAL[1].split("=", 1)[1]).bert.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(LOCAL[1].split("=", 1)[1]).save_pretrained(ckpt)
    proc = run_ela(tmp_path, *LOCAL, f"model.path={ckpt}", "dataset.limit=8", "model.allow_untrained_head=false,true")
    assert proc.returncode == 1
    refused, allowed = sorted(all_runs(tmp_path)[1:], key=lambda r: r.data.params["model.allow_untrained_head"])
    assert refused.info.status == "FAILED" and "never trained" in refused.data.tags["ela.error"]
    assert allowed.info.status == "FINISHED" and allowed.data.tags["ela.untrained_head"] == "true"
    assert "classifier.weight" in allowed.data.tags["ela.newly_initialized_weights"]
