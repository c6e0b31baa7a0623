"""One job, in the order it runs: refuse what can't run, claim the device, load, measure, score.

Every resource a job holds (its device lock, a clean device state, CodeCarbon's sampler, the power
trace) sits in one ExitStack, so a crash or a stop request releases all of them. `run_phases` only
measures and returns `Raw`; `ela.job.score` turns that into metrics, tags and files.
"""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ela import ElaError
from ela.config import JobConfig
from ela.job import samplers
from ela.job.phases import Phases
from ela.job.results import JobOutcome, Loaded, Raw
from ela.job.score import score
from ela.measure.energy import make_meter
from ela.measure.gpu_pool import LOCK_DIR, claim, claim_gpu, pinned
from ela.measure.loops import (
    latency_passes,
    make_forward,
    predict,
    warmup,
)
from ela.runtime import attention, engines, kept, packing
from ela.runtime.data import label_targets, load_split, tokenize
from ela.runtime.device import (
    check_precision,
    clean_device,
    launch_threads,
    resolve_device,
)
from ela.runtime.epilogue import check_model, fuse_gelu
from ela.runtime.models import (
    check_task,
    import_model_code,
    load_model,
    model_config,
    model_labels,
    stock_kernels,
)
from ela.schema import phase_metrics


def seed_everything(seed: int) -> None:
    """Seed every RNG; nothing in ela's measured work depends on them (the data order is fixed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def preflight(job: JobConfig, device_type: str) -> None:
    """Refusals that need only the device type, made before the job waits for its host or GPU."""
    engines.check(job.engine, device_type)
    if device_type == "cpu":  # on a GPU these need CUDA, which must not start before the job is pinned
        check_precision(job.precision, torch.device("cpu"))
        attention.check(job.model.attn_implementation, job.precision, torch.device("cpu"), _longest(job))
    if job.measure.energy_meter == "nvml" and device_type != "cuda":
        raise ElaError("measure.energy_meter=nvml needs a CUDA device; this job runs on CPU (use energy_meter=auto)")


def _longest(job: JobConfig) -> int:
    buckets = job.engine.buckets if isinstance(job.engine.buckets, list) else []  # a step stops at max_length
    return max([job.model.max_length, *buckets])  # the longest padded batch possible


def measure_job(job: JobConfig, job_dir: Path, progress=None) -> JobOutcome:
    """Run one configured job end to end (on a GPU of its own when gpus= is set) and score it."""
    if job.gpus is not None and job.device == "cpu":
        raise ElaError(f"gpus={job.gpus} needs CUDA GPUs; this job runs on CPU (leave gpus=null)")
    device_type = "cuda" if job.gpus is not None else resolve_device(job.device).type
    preflight(job, device_type)
    spent: dict[str, float] = {}  # seconds outside every phase, by what they went to (schema: JOB metrics)
    phases: Phases | None = None
    try:
        with contextlib.ExitStack() as stack:
            if device_type == "cuda":  # a CPU job imports nothing beside the job that holds the CPU: in its load
                _say(progress, "model code import")
                with _timed(spent, "code_import_s"):
                    import_model_code(job.model, job.task.name)
            _say(progress, f"queued for the {device_type.upper()}")  # queued, not stuck (also in ela.error)
            with _timed(spent, "device_wait_s"):  # queued behind other jobs for the GPU/CPU: not overhead
                index = stack.enter_context(_device_lock(job, device_type))
            _say(progress, "device and meters set-up")
            # after the claim: a job waiting for the CPU starts nothing beside its holder
            with _timed(spent, "samplers_s"):
                samplers.prepare(job)
            with _timed(spent, "device_setup_s"):  # in a fresh process, CUDA and NVML start here
                device = resolve_device(job.device, index if job.gpus is not None else None)
                if device.type == "cpu":
                    launch_threads()
                check_precision(job.precision, device)
                attention.check(job.model.attn_implementation, job.precision, device, _longest(job))
                seed_everything(job.seed)
                choice = make_meter(job, device)
            with _timed(spent, "samplers_s"):
                carbon = stack.enter_context(samplers.carbon(job, choice, job_dir))
                trace = stack.enter_context(samplers.trace(job, choice))
            with _timed(spent, "device_setup_s"):
                stack.enter_context(clean_device(device))
            phases = Phases(job, device, choice, trace, progress, carbon.started if carbon is not None else None)
            try:
                raw = run_phases(phases)
            except KeyboardInterrupt as err:  # its phases' seconds as it stopped, before the samplers' teardown
                err.metrics = phase_metrics(phases.so_far())
                raise
            with _timed(spent, "samplers_s"):
                raw.trace = trace.stop() if trace is not None else None
                raw.carbon = samplers.stop_carbon(carbon)
    except KeyboardInterrupt as err:  # a KILLED run keeps where its time went: would a next try fit its limit?
        # a stop in the samplers' teardown (a second Ctrl-C) has no phase seconds yet: count them up to now
        so_far = getattr(err, "metrics", None) or (phase_metrics(phases.so_far()) if phases is not None else {})
        err.metrics = {**spent, **so_far}
        raise
    out = score(job, raw)
    out.metrics.update(spent)
    if pinned():
        out.tags["ela.cuda_visible_devices"] = pinned()
    return out


def _say(progress, step: str) -> None:
    """Name a step before the job's phases on its progress line (none in tests that pass no progress)."""
    if progress is not None:
        progress.phase(step)


@contextlib.contextmanager
def _timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block took to `into[key]`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - t0


def _device_lock(job: JobConfig, device_type: str) -> contextlib.AbstractContextManager[int | None]:
    """The claim this job holds while it runs: its GPU, the host's CPU, or nothing."""

    def waiting(holders: list[str]) -> None:
        held = "; ".join(holders)
        print(
            f"[ela] {job.run_name} waits for its device, held by {held} (locks in {LOCK_DIR})",
            file=sys.stderr,
            flush=True,
        )

    if job.gpus is not None:  # claimed before anything starts CUDA, so the job can be pinned to it
        return claim_gpu(job.gpus, on_wait=waiting, owner=job.run_name)
    if device_type == "cpu":
        # Jobs measuring the CPU at the same time would measure each other: one at a time per host,
        # whatever the launcher starts concurrently (submitit's local executor starts them all).
        return claim([f"cpu-{socket.gethostname()}"], on_wait=waiting, owner=job.run_name)
    return claim_gpu(None)


def load(job: JobConfig, device: torch.device) -> tuple[Loaded, torch.nn.Module]:
    """The split, its labels mapped to the model's (from its config, before the weights), batches, model.

    With engine.packing the model is wrapped to take packed rows, and the split is also batched padded,
    as transformers' own model takes it, for the references the packed predictions are checked against.
    """
    check_task(job.model, job.task.name)
    rows, config = job.engine.packing, model_config(job.model)
    packing.check_model(list(config.architectures or []), rows)
    check_model(config, job.model.fuse_gelu)
    split = load_split(job.dataset)
    targets = label_targets(split.labels, job.dataset, model_labels(job.model))
    loaded = load_model(job.model)
    model, tokenizer, order = loaded.model, loaded.tokenizer, job.dataset.order
    padded = tokenize(tokenizer, split.texts, job.batch, job.model.max_length, job.engine.buckets, order).to(device)
    batches = padded
    if rows is not None:
        pack = (rows, packing.first_position(model.config))
        batches = tokenize(tokenizer, split.texts, job.batch, job.model.max_length, order=order, packing=pack)
        batches, model = batches.to(device), packing.PackedClassifier(model)
    out = loaded_split(split, batches, targets, loaded)
    out.padded = padded if rows is not None else None
    return out, model.to(device)


def loaded_split(split, batches, targets: list[int], loaded) -> Loaded:
    """What a task's loader hands on: targets in batch order and the label map the run is tagged with."""
    return Loaded(
        split=split,
        batches=batches,
        targets=torch.tensor([targets[i] for i in batches.indices]) if targets else torch.empty(0, dtype=torch.long),
        label_map=dict(sorted({str(v): t for v, t in zip(split.labels, targets, strict=False)}.items())),
        model_source=loaded.source,
        newly_initialized=loaded.newly_initialized,
        attn_implementation=str(getattr(loaded.model.config, "_attn_implementation", "unknown")),
    )


def run_phases(ph: Phases) -> Raw:
    """The task's measured order: load, references, precision, engine, idle, warm-up, timed passes, windows."""
    job, device = ph.job, ph.device
    if job.task.generative:
        from ela.job.generate import measure_generation

        return measure_generation(ph)
    me, sync = job.measure, ph.sync
    ph.step("load")
    loaded, model = load(job, device)
    batches, reference, eager_ref = loaded.batches, None, None
    # References run transformers' own model on padded batches (packed or not, the samples' order is one)
    stock, stock_batches = (model.model, loaded.padded) if loaded.padded is not None else (model, batches)

    def predictions(net: torch.nn.Module, amp) -> torch.Tensor:  # transformers' own kernels (ela's set aside)
        with stock_kernels(net):
            return predict(make_forward(net, amp), stock_batches).argmax(-1)

    if me.fp32_reference and job.precision.name != "fp32":
        reference = ph.reference("fp32", stock_batches, lambda: predictions(stock, contextlib.nullcontext))
    model = ph.apply_precision(model)
    stock = model.model if loaded.padded is not None else model
    if (
        job.engine.name != "eager"
        or job.model.attn_implementation in attention.NAMES
        or loaded.padded is not None
        or job.model.fuse_gelu
    ):
        # the engine, packing and ela's kernels (if any) against transformers' eager model
        eager_ref = ph.reference("eager", stock_batches, lambda: predictions(stock, ph.amp))
        if me.fp32_reference and job.precision.name == "fp32" and job.model.fuse_gelu:
            reference = eager_ref  # fp32's own stock model: the reference a fused GELU is checked against
    ph.step(f"engine setup ({job.engine.name})")
    if job.model.fuse_gelu:  # after the eager reference, which is transformers' own model
        ph.gelu_epilogue = fuse_gelu(stock, device.type)
    forward, setup_s, reuse = kept.build(job, model, ph.amp, batches, device, sync)
    ph.measure_idle()
    ph.step("warm-up")
    ph.expect(warmup(forward, batches, me.warmup_batches, sync), batches.num_samples)
    ph.step("latency passes")
    lat = latency_passes(forward, batches, sync, me.min_window_s, on_pass=ph.tick)
    windows = ph.windows({"window": forward}, batches)["window"]
    return ph.raw(
        loaded, reference=reference, eager_ref=eager_ref, setup_s=setup_s, lat=lat, windows=windows, reuse=reuse
    )
