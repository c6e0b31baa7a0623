"""A job's samplers: CodeCarbon over the whole job and the power trace, started ahead of need and always stopped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from ela.config import JobConfig
from ela.measure.carbon import CarbonTracker
from ela.measure.energy import MeterChoice
from ela.measure.meters import MeasurementError
from ela.measure.trace import PowerTrace


def prepare(job: JobConfig, early: bool = False) -> None:
    """Start the CodeCarbon process this job (or, after a job, the next) will use: its imports leave the job's path.

    `early`: before the job holds its device. A CPU job waiting for the host's CPU must start nothing beside
    the job measuring it, so on a CPU only the job holding it prepares (`measure_job`, after its claim). A GPU
    job waiting for its GPU imports on a CPU core beside the job measuring there, as its MLflow run's creation
    does. Best effort: a process that can't be started here is started (or refused) when the job needs it.
    """
    on_cpu = job.gpus is None and (job.device == "cpu" or not torch.cuda.is_available())  # never raises here
    if job.codecarbon.enabled and job.measure.samplers_in == "process" and not (early and on_cpu):
        try:
            CarbonTracker.prepare()
        except OSError as err:  # e.g. no process slots left: the job's own start says what is wrong
            print(f"[ela] could not start CodeCarbon's process ahead of need: {err}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def carbon(job: JobConfig, choice: MeterChoice, job_dir: Path) -> Iterator[CarbonTracker | None]:
    """CodeCarbon over the whole job; its sampler is stopped however the job ends."""
    if not job.codecarbon.enabled:
        yield None
        return
    gpus = [choice.gpu.nvml_index] if choice.gpu else []
    tracker = CarbonTracker(job.codecarbon, gpus, str(job_dir), job.run_name, job.measure.samplers_in == "process")
    # Its process builds and starts CodeCarbon's tracker (hardware detection included) while the job loads its
    # model; the job waits for it as the load phase ends, before anything is measured (Phases' after_load).
    tracker.start(wait=False)
    try:
        yield tracker
    finally:
        tracker.close()


@contextlib.contextmanager
def trace(job: JobConfig, choice: MeterChoice) -> Iterator[PowerTrace | None]:
    """The background power trace, where the meter has a counter to sample; stopped however the job ends."""
    counter = getattr(choice.meter, "counter", None)
    if counter is None or not job.measure.trace:
        yield None
        return
    trace = PowerTrace(counter, job.measure.trace_interval_s, job.measure.samplers_in == "process")
    try:
        yield trace.start()
    finally:
        trace.close()


def stop_carbon(carbon: CarbonTracker | None):
    """CodeCarbon's record, or why it is left out (CodeCarbon swallowed an error)."""
    if carbon is None:
        return None
    try:
        return carbon.stop()
    except MeasurementError as err:
        return str(err)
