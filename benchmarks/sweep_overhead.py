"""How much of a sweep's wall time is measurement? On CPU, with the real launchers.

Runs the same small CPU sweep (MiniLM SST-2, 128 sentences per job) twice per launcher (basic:
in-process; joblib_gpus: 2 reused worker processes; submitit_local: a process per job), with
`--few` and `--many` jobs, and separates a sweep's wall time into

    wall = start-up (once per sweep) + jobs x (measured + fixed overhead per job)

from the two sweeps (slope and intercept). "Measured" is what a job times (latency passes + energy
windows), read back from MLflow; the fixed overhead per job is everything else a job costs (process
start where the launcher starts one, model load from the page cache, tokenisation, CodeCarbon,
warm-up, MLflow logging). In-job overhead is `job_wall_s` minus measured and minus `device_wait_s`
(time queued for the host's CPU lock behind another job), over all jobs but the first.

    python benchmarks/sweep_overhead.py [--few 1] [--many 5] [--window 1.0]
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
    """Wall seconds of one sweep and its FINISHED job runs (oldest first)."""
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
    runs = c.search_runs([c.get_experiment_by_name("ela").experiment_id], order_by=["attributes.start_time ASC"])
    return wall, [r for r in runs if r.info.status == "FINISHED" and "accuracy" in r.data.metrics]


def measured_s(run) -> float:
    """Seconds the job spent timing the model: the latency passes and the energy windows."""
    m = run.data.metrics
    return m["latency_window_s"] + m["energy_window_s"] * m["energy_windows"]


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--few", type=int, default=1)
    ap.add_argument("--many", type=int, default=5)
    ap.add_argument("--window", type=float, default=1.0)
    a = ap.parse_args()
    print(f"CPU: {os.cpu_count()} cores; jobs of 128 SST-2 sentences, batch 16, 1 window of >= {a.window} s\n")
    print(
        "| launcher | wall s (few / many jobs) | measured s per job | start-up s per sweep | "
        "fixed overhead s per job | in-job overhead s (after the first) |"
    )
    print("|---|---|---|---|---|---|")
    for launcher in ("basic", "joblib_gpus", "submitit_local_gpus"):
        walls, measured, in_job = [], [], []
        for jobs in (a.few, a.many):
            with tempfile.TemporaryDirectory() as tmp:
                wall, runs = run_sweep(launcher, jobs, a.window, Path(tmp))
            assert len(runs) == jobs, f"{launcher}: {len(runs)} of {jobs} jobs finished"
            walls.append(wall)
            measured.append(sum(map(measured_s, runs)))
            if jobs == a.many:
                m = [r.data.metrics for r in runs[1:]]
                in_job = [
                    x["job_wall_s"] - x["device_wait_s"] - measured_s(r) for x, r in zip(m, runs[1:], strict=True)
                ]
        slope = (walls[1] - walls[0]) / (a.many - a.few)
        per_job_measured = (measured[1] - measured[0]) / (a.many - a.few)
        fixed = slope - per_job_measured
        startup = walls[0] - a.few * slope
        print(
            f"| {launcher} | {walls[0]:.1f} / {walls[1]:.1f} | {per_job_measured:.2f} | {startup:.1f} | "
            f"{fixed:.2f} | {sum(in_job) / len(in_job):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
