"""`python -m ela.run`: the Hydra entry point. Each job becomes one MLflow run, FINISHED, FAILED or KILLED.

python -m ela.run -m precision=fp32,tf32,fp16,bf16 batch=1,8
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# CUDA numbers GPUs like nvidia-smi/NVML do, so CUDA_VISIBLE_DEVICES=2 means the card NVML calls 2.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ela import ElaError, interrupt
from ela.config import to_container, validate
from ela.job.progress import Progress
from ela.measure.gpu_pool import visible_gpu_count
from ela.tracking.environment import environment_tags
from ela.tracking.identity import AXES_ENV, config_hash, flatten, run_name, swept_labels
from ela.tracking.report import summary_line
from ela.tracking.store import PARENT_ENV, Tracker, job_tracker, one_line

# Set by a launcher whose job processes exit after one job (hydra_plugins/ela_launcher's fork launcher).
PROCESS_ENDS_AFTER_JOB = False


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Run one job inside its own MLflow run; any exception ends that run FAILED, never the sweep."""
    interrupt.install()  # in this process, whichever launcher started it (submitit installs its own first)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    data = to_container(cfg)
    precision = data.get("precision", {}).get("name", "?")
    extra = swept_labels(list(hc.overrides.task), os.environ.get(AXES_ENV)) if multirun else ()
    engine = data.get("engine", {}).get("name", "eager")
    task = data.get("task", {}).get("name", "classification")
    name = run_name(precision, data.get("batch"), data.get("seed"), engine, extra, task)
    sweep_dir = str(hc.sweep.dir) if multirun else None
    if interrupt.received() or interrupt.sweep_stopped(sweep_dir):  # the sweep was stopped: start nothing
        print(f"[ela] {name} not started: the sweep was interrupted", file=sys.stderr, flush=True)
        return {"status": "NOT_STARTED"}
    try:  # a value that can't be valid is refused before any run exists (ela's sweeper checked sweeps already)
        job = validate(data)
    except ElaError as err:
        print(f"[ela] {'job' if multirun else 'single run'} {name} not started: {err}", file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(2)
        return {"status": "FAILED", "error": str(err)}
    try:  # an unusable store is the one error a job can't log: say so plainly, before any work
        tracker = job_tracker(data, hc.runtime.cwd)
    except ElaError as err:
        print(f"[ela] {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    parent = os.environ.get(PARENT_ENV) if multirun else None
    run_hash = config_hash(data, with_seed=True)
    if data.get("resume") and (done := tracker.finished_run(run_hash)):
        print(f"[ela] {name} SKIPPED: already FINISHED as run {done[:8]} (resume=true)", flush=True)
        return {"run_id": done, "status": "SKIPPED"}
    from ela.job.samplers import prepare as prepare_samplers

    prepare_samplers(job, early=True)  # CodeCarbon's process imports while the run is created and logged
    tags = {
        "ela.config_hash": config_hash(data),
        "ela.run_hash": run_hash,
        "ela.sweep_id": parent or "",
        "ela.job_dir": hc.runtime.output_dir,
        "ela.overrides": " ".join(hc.overrides.task),
        **({"ela.sweep_position": str(hc.job.num)} if multirun else {}),
        **({"ela.experiment": str(preset)} if (preset := hc.runtime.choices.get("experiment")) else {}),
        **environment_tags(),
    }
    try:
        run_id = tracker.start_run(name, parent_id=parent, tags=tags)
    except Exception as err:  # noqa: BLE001 - e.g. a full disk: one line, and no run to close
        print(f"[ela] {name}: could not create its MLflow run: {one_line(err)}", file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(2)
        return {"status": "FAILED", "error": one_line(err)}
    progress = Progress(name, hc.job.num if multirun else None)
    t0 = time.perf_counter()
    try:
        tracker.log_params(run_id, flatten(data))
        tracker.log_files(run_id, {"config.yaml": OmegaConf.to_yaml(OmegaConf.create(data))})
        from ela.job import measure_job

        outcome = measure_job(job, Path(hc.runtime.output_dir), progress)
        keep_locally(Path(hc.runtime.output_dir), outcome.metrics, outcome.tags)
        tracker.log_metrics(run_id, {**outcome.metrics, "job_wall_s": time.perf_counter() - t0})
        tracker.set_tags(run_id, {**outcome.tags, **_threads()})
        tracker.log_files(run_id, outcome.files)
        if outcome.dataset is not None:
            d = outcome.dataset
            tracker.log_dataset(run_id, d.name, d.source, d.table)
        tracker.end_run(run_id, "FINISHED")
        progress.close()
        print(summary_line(name, "FINISHED", outcome.metrics, outcome.tags, run_id), flush=True)
        return {"run_id": run_id, "status": "FINISHED"}
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM, raised at a safe point (ela.interrupt)
        progress.close()
        # Where it stopped and where its time went tell a user whether a next try fits their limit
        wall = time.perf_counter() - t0
        reason = f"{str(err) or 'interrupted'}, {wall:.0f} s into the job, in step '{progress.phase_name}'"
        tags = {"ela.error_type": "KeyboardInterrupt", "ela.error": reason, **_threads()}
        spent = getattr(err, "metrics", None)  # set by measure_job (phase_*_s so far, device_wait_s, ...)
        close_run(tracker, run_id, name, "KILLED", tags, metrics={**(spent or {}), "job_wall_s": wall})
        where = "single run" if not multirun else "job"
        print(f"[ela] {where} {name} KILLED ({reason})", file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(interrupt.exit_code(interrupt.received()))
        if not interrupt.is_sweep_process():
            interrupt.clear()  # a launcher worker: this job is closed, the worker may take the next
        return {"run_id": run_id, "status": "KILLED"}
    except Exception as err:  # noqa: BLE001 - a job's crash is a logged failure, not the sweep's
        progress.close()
        message = str(err) if isinstance(err, ElaError) else f"{type(err).__name__}: {one_line(err)}"
        tags = {"ela.error_type": type(err).__name__, "ela.error": message, **_threads()}
        close_run(tracker, run_id, name, "FAILED", tags, {"error.txt": traceback.format_exc()})
        print(summary_line(name, "FAILED", {}, {"ela.error": message}, run_id), file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(1)
        return {"run_id": run_id, "status": "FAILED", "error": message}
    finally:
        if not PROCESS_ENDS_AFTER_JOB:  # a forked job's process exits next: freeing would only cost (~0.5 s)
            release_device()
            if multirun and not interrupt.received():  # the next job's CodeCarbon process imports as it starts
                prepare_samplers(job, early=True)


def _threads() -> dict[str, str]:
    """The tag of torch's CPU threads as the job left them (a CPU job takes the launcher's: launch_threads)."""
    return {"torch.num_threads": str(torch.get_num_threads())}


def close_run(
    tracker: Tracker,
    run_id: str,
    name: str,
    status: str,
    tags: dict[str, str],
    files: dict | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """End a run with its reason; if the store itself is failing (a full disk), say so in one line."""
    try:
        tracker.set_tags(run_id, tags)
        if metrics:
            tracker.log_metrics(run_id, metrics)
        if files:
            tracker.log_files(run_id, files)
    except Exception as err:  # noqa: BLE001 - still try to end the run below
        print(f"[ela] {name}: could not record why it ended: {one_line(err)}", file=sys.stderr, flush=True)
    try:
        tracker.end_run(run_id, status)
    except Exception as err:  # noqa: BLE001
        print(f"[ela] {name}: could not mark its run {status}: {one_line(err)}", file=sys.stderr, flush=True)


def keep_locally(job_dir: Path, metrics: dict[str, float], tags: dict[str, str]) -> None:
    """A copy of what the job measured in its own folder, so a store that fails now loses nothing."""
    import json

    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "ela_result.json").write_text(json.dumps({"metrics": metrics, "tags": tags}, indent=1))
    except OSError as err:
        print(f"[ela] could not write {job_dir / 'ela_result.json'}: {err}", file=sys.stderr, flush=True)


def release_device() -> None:
    """Free what a job left on the GPU (a crash's traceback can hold its tensors) before the next one."""
    import gc

    gc.collect()
    if "torch" in sys.modules:
        import torch

        from ela.runtime import engines, kept

        if not kept.holding():  # compiled graphs serve a later job only as a kept engine, under its key
            engines.reset_graphs()
        if torch.cuda.is_initialized():  # never start CUDA here: a later job pins its GPU first
            torch.cuda.empty_cache()


# Launcher configs can ask how many GPUs this host offers (submitit's local executor needs a number).
OmegaConf.register_new_resolver("ela_gpu_count", visible_gpu_count, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra task function: one job."""
    return run_job(cfg)


if __name__ == "__main__":
    from ela.cli import check_run_keys

    check_run_keys(sys.argv[1:], str(Path(__file__).resolve().parent.parent / "conf"))
    interrupt.install()  # before Hydra starts: a signal during start-up is recorded, not fatal mid-write
    main()
