"""`python -m ela.run`: the Hydra entry point. Each job becomes one MLflow run, FINISHED or FAILED.

python -m ela.run -m precision=fp32,tf32,fp16,bf16 batch=1,8
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# CUDA numbers GPUs like nvidia-smi/NVML do, so CUDA_VISIBLE_DEVICES=2 means the card NVML calls 2.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ela import ElaError
from ela.config import config_hash, flatten, run_name, to_container, validate
from ela.environment import environment_tags
from ela.gpu_pool import visible_gpu_count
from ela.report import summary_line
from ela.tracking import PARENT_ENV, Tracker, tracking_uri


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Run one job inside its own MLflow run; any exception ends that run FAILED, never the sweep."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    data = to_container(cfg)
    uri = tracking_uri(data.get("tracking", {}).get("uri"), hc.runtime.cwd)
    try:  # an unusable store is the one error a job can't log: say so plainly, before any work
        tracker = Tracker(uri, data.get("tracking", {}).get("experiment") or "ela")
    except ElaError as err:
        print(f"[ela] {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    parent = os.environ.get(PARENT_ENV) if multirun else None
    precision = data.get("precision", {}).get("name", "?")
    name = run_name(precision, data.get("batch"), data.get("seed"), data.get("engine", {}).get("name", "eager"))
    run_hash = config_hash(data, with_seed=True)
    if data.get("resume") and (done := tracker.finished_run(run_hash)):
        print(f"[ela] {name} SKIPPED: already FINISHED as run {done[:8]} (resume=true)", flush=True)
        return {"run_id": done, "status": "SKIPPED"}
    run_id = tracker.start_run(
        name,
        parent_id=parent,
        tags={
            "ela.config_hash": config_hash(data),
            "ela.run_hash": run_hash,
            "ela.sweep_id": parent or "",
            "ela.job_dir": hc.runtime.output_dir,
            "ela.overrides": " ".join(hc.overrides.task),
            **environment_tags(),
        },
    )
    tracker.log_params(run_id, flatten(data))
    tracker.log_files(run_id, {"config.yaml": OmegaConf.to_yaml(OmegaConf.create(data))})
    progress = tqdm(total=1, desc=name, leave=False, bar_format="{desc}: {postfix}", disable=None)
    t0 = time.perf_counter()
    try:
        from ela.job import measure_job

        job = validate(data)
        outcome = measure_job(job, Path(hc.runtime.output_dir), progress)
        tracker.log_metrics(run_id, {**outcome.metrics, "job_wall_s": time.perf_counter() - t0})
        tracker.set_tags(run_id, outcome.tags)
        tracker.log_files(run_id, outcome.files)
        tracker.end_run(run_id, "FINISHED")
        progress.close()
        print(summary_line(name, "FINISHED", outcome.metrics, outcome.tags, run_id), flush=True)
        return {"run_id": run_id, "status": "FINISHED"}
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main): nothing may be left RUNNING
        tracker.set_tags(run_id, {"ela.error_type": "KeyboardInterrupt", "ela.error": "interrupted"})
        tracker.end_run(run_id, "KILLED")
        if parent:
            tracker.set_tags(parent, {"ela.error": f"interrupted during {name}"})
            tracker.end_run(parent, "KILLED")
        print(f"[ela] {name} KILLED (interrupted); sweep run closed", file=sys.stderr, flush=True)
        raise
    except Exception as err:  # noqa: BLE001 - a job's crash is a logged failure, not the sweep's
        progress.close()
        message = str(err) if isinstance(err, ElaError) else f"{type(err).__name__}: {err}"
        tracker.set_tags(run_id, {"ela.error_type": type(err).__name__, "ela.error": message})
        tracker.log_files(run_id, {"error.txt": traceback.format_exc()})
        tracker.end_run(run_id, "FAILED")
        print(summary_line(name, "FAILED", {}, {"ela.error": message}, run_id), file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(1)
        return {"run_id": run_id, "status": "FAILED", "error": message}
    finally:
        release_device()


def release_device() -> None:
    """Free what a job left on the GPU (a crash's traceback can hold its tensors) before the next one."""
    import gc

    gc.collect()
    if "torch" in sys.modules:
        import torch

        torch._dynamo.reset()  # compiled graphs of one job never serve the next
        if torch.cuda.is_initialized():  # never start CUDA here: a later job pins its GPU first
            torch.cuda.empty_cache()


# Launcher configs can ask how many GPUs this host offers (submitit's local executor needs a number).
OmegaConf.register_new_resolver("ela_gpu_count", visible_gpu_count, replace=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra task function: one job."""
    return run_job(cfg)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's SIGTERM closes runs like Ctrl-C does
    main()
