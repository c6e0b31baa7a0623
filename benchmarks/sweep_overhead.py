"""How much of a sweep's wall time is measurement? On CPU, with the real launchers.

Runs the same small CPU sweep (MiniLM SST-2, 128 sentences per job) twice per launcher (basic:
in-process; joblib_gpus: 2 reused worker processes; submitit_local: a process per job), with
`--few` and `--many` jobs, and separates a sweep's wall time into

    wall = start-up (once per sweep) + jobs x (measured + fixed overhead per job)

from the two sweeps (slope and intercept). "Measured" is what a job measures (idle power, timed
passes, energy windows: its `phase_*_s` metrics), read back from MLflow; the fixed overhead per job is
everything else a job costs. In-job overhead is `job_wall_s` minus measured and minus `device_wait_s`
(time queued for the host's CPU lock behind another job), over all jobs but the first, split into its
unmeasured phases (load, untimed references, engine setup, warm-up), the device's set-up before the load
(`device_setup_s`: CUDA and NVML start there in a new process), what starting and stopping the samplers
kept the job waiting (`samplers_s`; in processes CodeCarbon starts while the model loads, and a wait for it
counts as load), a GPU job's import of its model code before it queues (`code_import_s`) and the rest
(scoring, MLflow logging); the remainder of
the fixed overhead is outside the job (process start and imports where the launcher starts one, Hydra's
set-up of the job, the MLflow run's creation). The slope of two sweeps is fragile on a busy host (it came
out negative once); the last column measures the same cost
directly where jobs run one at a time: from one run's start to the next's, minus what the first measured,
after the sweep's first job (so `--many` of 3 or more).

    python benchmarks/sweep_overhead.py [--few 1] [--many 5] [--window 1.0] [--model DIR --data DIR --device cuda]
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
sys.path.insert(0, str(REPO))
from ela.schema import MEASURED_PHASES, PHASES  # noqa: E402 (the repo's own names, without installing it)

OVERHEAD_PHASES = [p for p in PHASES if p not in MEASURED_PHASES]


def run_sweep(launcher: str, jobs: int, a: argparse.Namespace, tmp: Path) -> tuple[float, list]:
    """Wall seconds of one sweep and its FINISHED job runs (oldest first)."""
    cmd = [
        sys.executable, "-m", "ela.run", "-m", f"hydra/launcher={launcher}", f"seed={','.join(map(str, range(jobs)))}",
        "model=local", f"model.path={a.model}", "model.max_length=64",
        f"dataset.path={a.data}", "dataset.limit=128", f"device={a.device}", "batch=16",
        f"measure.min_window_s={a.window}", "measure.repeats=1", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"hydra.sweep.dir={tmp / 'multirun'}", *a.set,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:  # the sweep's own words, not only its exit status
        sys.exit(f"{launcher} sweep of {jobs} job(s) exited {done.returncode}:\n{done.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("ela").experiment_id], order_by=["attributes.start_time ASC"])
    return wall, [r for r in runs if r.info.status == "FINISHED" and "accuracy" in r.data.metrics]


# A job's seconds outside its phases, by what they went to: the model's code imported before a GPU job queues
# (beside the job ahead), CUDA's and NVML's start in a new process, starting and stopping the trace and CodeCarbon.
SPANS = ("code_import", "device_setup", "samplers")


def measured_s(run) -> float:
    """Seconds the job spent measuring: idle power, the timed passes and the energy windows (their phases)."""
    return sum(run.data.metrics.get(f"phase_{p}_s", 0.0) for p in MEASURED_PHASES)


def overhead_parts(runs) -> dict[str, float]:
    """Mean seconds per job of each unmeasured phase, of the samplers' start and stop, and of the rest."""
    parts: dict[str, list[float]] = {p: [] for p in (*OVERHEAD_PHASES, *SPANS, "rest")}
    for r in runs:
        m = r.data.metrics
        for p in OVERHEAD_PHASES:
            parts[p].append(m.get(f"phase_{p}_s", 0.0))
        for span in SPANS:
            parts[span].append(m.get(f"{span}_s", 0.0))
        phases = sum(m.get(f"phase_{p}_s", 0.0) for p in PHASES)
        parts["rest"].append(m["job_wall_s"] - m["device_wait_s"] - phases - sum(parts[s][-1] for s in SPANS))
    return {k: sum(v) / len(v) for k, v in parts.items()}


def start_to_start(runs) -> str:
    """Direct per-job overhead: from one run's start to the next's, minus what the first measured.

    Mean over consecutive jobs after the sweep's first (which pays its process's first CUDA context, first
    loads and caches), with its warm-up part in brackets; "n/a (jobs overlap)" where a launcher runs jobs at
    once, so that the gap is no cost of one job.
    """
    runs = runs[1:]
    pairs = list(zip(runs[:-1], runs[1:], strict=True))
    if not pairs:
        return "n/a (needs --many of 3 or more)"
    if any(b.info.start_time < a.info.end_time for a, b in pairs):
        return "n/a (jobs overlap)"
    gaps = [(b.info.start_time - a.info.start_time) / 1000 - measured_s(a) for a, b in pairs]
    warm = [a.data.metrics.get("phase_warmup_s", 0.0) for a, _ in pairs]
    return f"{sum(gaps) / len(gaps):.2f} ({sum(warm) / len(warm):.2f})"


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--few", type=int, default=1)
    ap.add_argument("--many", type=int, default=5)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--launchers", default="basic,joblib_gpus,submitit_local_gpus")
    ap.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-sst2"))
    ap.add_argument("--data", default=str(SHARED / "data" / "sst2"))
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU host (each job's own CUDA start-up counts)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for every job")
    a = ap.parse_args()
    print(
        f"{a.device} jobs, {os.cpu_count()} CPU cores; 128 SST-2 sentences, batch 16, 1 window of >= {a.window} s; "
        f"model {Path(a.model).name}\n"
    )
    print(
        "| launcher | wall s (few / many jobs) | measured s per job | start-up s per sweep | "
        "fixed overhead s per job | in-job overhead s (after the first) | of it: "
        + ", ".join([*OVERHEAD_PHASES, *SPANS, "rest"])
        + " | outside the job (process, imports, run set-up) | start to start - measured s (of it warm-up) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for launcher in a.launchers.split(","):
        walls, measured, in_job = [], [], []
        for jobs in (a.few, a.many):
            with tempfile.TemporaryDirectory() as tmp:
                wall, runs = run_sweep(launcher, jobs, a, Path(tmp))
            assert len(runs) == jobs, f"{launcher}: {len(runs)} of {jobs} jobs finished"
            walls.append(wall)
            measured.append(sum(map(measured_s, runs)))
            if jobs == a.many:
                m = [r.data.metrics for r in runs[1:]]
                in_job = [
                    x["job_wall_s"] - x["device_wait_s"] - measured_s(r) for x, r in zip(m, runs[1:], strict=True)
                ]
                parts = overhead_parts(runs[1:])
                direct = start_to_start(runs)
        slope = (walls[1] - walls[0]) / (a.many - a.few)
        per_job_measured = (measured[1] - measured[0]) / (a.many - a.few)
        fixed = slope - per_job_measured
        startup = walls[0] - a.few * slope
        mean_in_job = sum(in_job) / len(in_job)
        print(
            f"| {launcher} | {walls[0]:.1f} / {walls[1]:.1f} | {per_job_measured:.2f} | {startup:.1f} | "
            f"{fixed:.2f} | {mean_in_job:.2f} | {', '.join(f'{v:.2f}' for v in parts.values())} | "
            f"{fixed - mean_in_job:.2f} | {direct} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
