"""How much of a sweep's wall time is measurement? (CPU, real launchers)

Runs the same small CPU sweep (MiniLM SST-2, 4 jobs) with the basic launcher and with
submitit_local, then prints per launcher: sweep wall time, the sum of what the jobs measured
(latency pass + energy windows + idle reading), and the fixed overhead per job (process start,
imports, model load, CodeCarbon, MLflow logging): (wall - measured) / jobs.

    python benchmarks/sweep_overhead.py [--jobs 4] [--window 1.0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def run_sweep(launcher: str, jobs: int, window: float, tmp: Path) -> tuple[float, list]:
    cmd = [
        sys.executable, "-m", "ela.run", "-m", f"hydra/launcher={launcher}", f"seed={','.join(map(str, range(jobs)))}",
        "model=local", f"model.path={SHARED / 'models' / 'minilm-l6-sst2'}", "model.max_length=64",
        f"dataset.path={SHARED / 'data' / 'sst2'}", "dataset.limit=128", "device=cpu", "batch=16",
        f"measure.min_window_s={window}", "measure.repeats=1", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = [r for r in c.search_runs([c.get_experiment_by_name("ela").experiment_id]) if "accuracy" in r.data.metrics]
    return wall, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--window", type=float, default=1.0)
    a = ap.parse_args()
    print(f"CPU: {os.cpu_count()} cores; {a.jobs} jobs of 128 SST-2 sentences, 1 window of >= {a.window} s each\n")
    print("| launcher | sweep wall s | measured s (sum) | (wall - measured) / jobs s | in-job overhead s (mean) |")
    print("|---|---|---|---|---|")
    for launcher in ("basic", "submitit_local_gpus"):
        with tempfile.TemporaryDirectory() as tmp:
            wall, runs = run_sweep(launcher, a.jobs, a.window, Path(tmp))
        per_job = [
            r.data.metrics["latency_ms_per_sample"] * r.data.metrics["num_samples"] / 1000
            + r.data.metrics["energy_window_s"] * r.data.metrics["energy_windows"]
            for r in runs
        ]
        measured = sum(per_job)
        # In-job overhead: the job's own wall time (load, tokenize, CodeCarbon, warm-up) minus what it measured.
        in_job = sum(r.data.metrics["job_wall_s"] - m for r, m in zip(runs, per_job, strict=True)) / len(runs)
        print(
            f"| {launcher} | {wall:.1f} | {measured:.1f} | {(wall - measured) / len(runs):.2f} | {in_job:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
