"""One job: load, tokenize, apply precision, measure, score. Returns metrics, tags and files."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import resource
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ela import ElaError, attention
from ela.carbon import CarbonRecord, CarbonTracker
from ela.config import JobConfig
from ela.data import load_split, tokenize
from ela.device import (
    DTYPE,
    GpuInfo,
    autocast,
    card_state,
    check_precision,
    clean_device,
    gpu_info,
    resolve_device,
    set_tf32,
    synchronizer,
    tf32_state,
)
from ela.engines import build
from ela.gpu_pool import claim, claim_gpu, pinned
from ela.measure import energy_window, idle_power, latency_pass, make_forward, predict, warmup
from ela.meters import FakeCounter, MeasurementError, NvmlCounter, WindowMeter, tick_period_s
from ela.metrics import accuracy_metrics, latency_metrics, window_metrics
from ela.models import apply_precision, label_map, load_model, stock_kernels
from ela.trace import PowerTrace

log = logging.getLogger(__name__)
AGREEMENT_TOLERANCE = 0.005  # engines may differ from eager in the last bits; more than this is flagged


@dataclass
class JobOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed every RNG; nothing in ela's measured work depends on them (the data order is fixed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_meter(job: JobConfig, device: torch.device) -> tuple[WindowMeter | None, GpuInfo | None]:
    """The GPU energy meter this job asked for; never a silent substitute."""
    kind = job.measure.gpu_meter
    if kind == "auto":
        kind = "nvml" if device.type == "cuda" else "none"
    if kind == "fake":
        return WindowMeter(FakeCounter(job.measure.fake_power_w), synchronizer(device)), None
    if kind == "none":
        return None, None
    if device.type != "cuda":
        raise ElaError("measure.gpu_meter=nvml needs a CUDA device; this job runs on CPU (use gpu_meter=auto)")
    try:
        info = gpu_info(device)
        counter = NvmlCounter(info.handle)
        counter.read_j()
    except Exception as err:  # no NVML, or a GPU without the energy counter (pre-Volta)
        raise ElaError(
            f"cannot read NVML's energy counter ({type(err).__name__}: {err}); install nvidia-ml-py on a "
            "Volta+ GPU, or pass measure.gpu_meter=none to run without GPU energy"
        ) from err
    return WindowMeter(counter, synchronizer(device)), info


def measure_job(job: JobConfig, job_dir: Path, progress=None) -> JobOutcome:
    """Run one configured job end to end (on a GPU of its own when gpus= is set)."""
    t0 = time.perf_counter()
    if job.gpus is not None:
        if job.device == "cpu":
            raise ElaError(f"gpus={job.gpus} needs CUDA GPUs; this job runs on CPU (leave gpus=null)")
        # Claimed before anything starts CUDA, so the job can be pinned with CUDA_VISIBLE_DEVICES.
        lock = claim_gpu(job.gpus)
    elif resolve_device(job.device).type == "cpu":
        # Jobs measuring the CPU at the same time would measure each other: one at a time per host,
        # whatever the launcher starts concurrently (submitit's local executor starts them all).
        lock = claim([f"cpu-{socket.gethostname()}"])
    else:
        lock = claim_gpu(None)
    with lock as index:
        waited = time.perf_counter() - t0
        out = _measure_on(job, resolve_device(job.device, index if job.gpus is not None else None), job_dir, progress)
    out.metrics["device_wait_s"] = waited  # queued behind other jobs for the GPU/CPU: not overhead
    if pinned():
        out.tags["ela.cuda_visible_devices"] = pinned()
    return out


def _measure_on(job: JobConfig, device: torch.device, job_dir: Path, progress) -> JobOutcome:
    check_precision(job.precision, device)
    longest = max([job.model.max_length, *(job.engine.buckets or [])])  # the longest padded batch possible
    attention.check(job.model.attn_implementation, job.precision, device, longest)
    seed_everything(job.seed)
    meter, gpu = make_meter(job, device)
    carbon = None
    if job.codecarbon.enabled:
        carbon = CarbonTracker(job.codecarbon, [gpu.nvml_index] if gpu else [], str(job_dir), job.run_name)
        carbon.start()
    try:
        out = _measure(job, device, meter, gpu, progress)
        _add_carbon(out, carbon, job)
        return out
    finally:
        if carbon is not None:
            carbon.close()  # a crashed job must not leave CodeCarbon's sampler running


def _measure(job: JobConfig, device: torch.device, meter, gpu: GpuInfo | None, progress) -> JobOutcome:
    """The job's whole measured sequence, in the order it runs."""
    out, sync, me = JobOutcome(), synchronizer(device), job.measure
    trace = PowerTrace(meter.counter, me.trace_interval_s).start() if meter is not None and me.trace else None

    def step(name: str) -> None:
        if progress is not None:
            progress.set_postfix_str(name)
        if trace is not None:
            trace.mark(name)

    try:
        _run_phases(job, device, meter, gpu, step, sync, out)
    finally:
        if trace is not None:
            df = trace.stop()
            out.files["power_trace.csv"] = _csv(df)
            from ela.plots import power_trace_png  # matplotlib: imported only by jobs that draw

            out.files["power_trace.png"] = power_trace_png(df, f"{job.run_name}: {meter.method}")
    return out


def _run_phases(job: JobConfig, device: torch.device, meter, gpu, step, sync, out: JobOutcome) -> None:
    """Load, reference, precision, idle, warm-up, latency pass, energy windows, then score."""
    me = job.measure
    with clean_device(device):
        step("load")
        split = load_split(job.dataset)
        loaded = load_model(job.model)
        mapping = label_map(loaded.model, job.dataset.label_names)
        if max(split.labels) >= len(mapping):
            raise ElaError(f"dataset labels go up to {max(split.labels)} but the model has {len(mapping)} labels")
        batches = tokenize(
            loaded.tokenizer, split.texts, job.batch, job.model.max_length, job.engine.buckets, job.dataset.order
        ).to(device)
        targets = torch.tensor([mapping[split.labels[i]] for i in batches.indices])  # in batch order
        model = loaded.model.to(device)

        reference = None
        if me.fp32_reference and job.precision.name != "fp32":
            step("fp32 reference (untimed)")
            with stock_kernels(model):
                reference = predict(make_forward(model, contextlib.nullcontext), batches).argmax(-1)

        model = apply_precision(model, DTYPE[job.precision.weights_dtype], device)
        set_tf32(job.precision.tf32)

        def amp():
            return autocast(job.precision, device)

        eager_ref = None
        if job.engine.name != "eager" or job.model.attn_implementation in attention.NAMES:
            step("eager reference (untimed)")
            with stock_kernels(model):  # the engine and ela's kernels (if any) against transformers' eager
                eager_ref = predict(make_forward(model, amp), batches).argmax(-1)
        step(f"engine setup ({job.engine.name})")
        forward, setup_s = build(job.engine, model, amp, batches, device, sync)
        idle = tick_s = None
        if meter is not None:
            step("idle power")
            idle = idle_power(meter, me.idle_max_settle_s, me.idle_window_s)
            tick_s = tick_period_s(meter.counter, max_s=0.6)
        step("warm-up")
        warmup(forward, batches, me.warmup_batches, sync)
        step("latency pass")
        lat = latency_pass(forward, batches, sync)
        state_start = card_state(gpu) if gpu else {}
        windows = []
        for i in range(me.repeats):
            step(f"window {i + 1}/{me.repeats}")
            windows.append(energy_window(forward, batches, sync, meter, me.min_window_s))
        step("score")
        state_end = card_state(gpu) if gpu else {}
        out.tags["ela.tf32"] = tf32_state()
        peak_mb = (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        del model, forward

    m, warnings = out.metrics, []
    m.update(accuracy_metrics(lat.logits, targets, reference))
    m["engine_setup_s"] = setup_s
    m["padding_fraction"] = batches.padding_fraction
    m["distinct_shapes"] = len(batches.shapes)
    if eager_ref is not None:
        m["agreement_with_eager"] = float((lat.logits.argmax(-1) == eager_ref).float().mean())
        if m["agreement_with_eager"] < 1.0 - AGREEMENT_TOLERANCE:
            warnings.append(
                f"engine={job.engine.name}, attn_implementation={job.model.attn_implementation}: predictions agree "
                f"with transformers' eager reference on only {m['agreement_with_eager']:.4f} of samples"
            )
    if job.precision.name == "fp32" and me.fp32_reference:
        m["agreement_with_fp32"] = 1.0  # this run is the fp32 reference
    m.update(latency_metrics(lat.batch_ms, batches.num_samples))
    window_m, window_warnings = window_metrics(windows, idle.power_w if idle else None, tick_s)
    warnings += window_warnings
    m.update(window_m)
    if idle is not None:
        m["idle_settle_s"] = idle.settle_s
    if tick_s:
        m["nvml_counter_tick_ms"] = tick_s * 1000
    m["mean_token_length"] = float(np.mean(batches.token_lengths))
    m["peak_memory_mb"] = peak_mb
    m.update({f"gpu_{k}_start": v for k, v in state_start.items()})
    m.update({f"gpu_{k}_end": v for k, v in state_end.items()})
    for w in warnings:
        log.warning("%s: %s", job.run_name, w)
    if warnings:
        out.tags["ela.warning"] = "; ".join(warnings)

    out.tags.update(
        {
            "ela.device": device.type,
            "ela.model_source": loaded.source,
            "ela.dataset_source": split.source,
            "ela.untrained_head": str(bool(loaded.newly_initialized)).lower(),
            "ela.attn_implementation": str(getattr(loaded.model.config, "_attn_implementation", "unknown")),
            "ela.label_map": json.dumps(mapping),
            "ela.engine": _engine_label(job.engine),
            "ela.method.latency": "perf_counter, device synchronised before and after every batch",
            "ela.method.throughput": "energy windows: whole passes, no per-batch synchronisation",
            "ela.method.energy_gpu": meter.method if meter else "none",
            "ela.method.peak_memory": "cuda-max-allocated" if device.type == "cuda" else "process-peak-rss",
            "ela.method.accuracy": "argmax of logits from the latency pass vs dataset labels",
        }
    )
    if loaded.newly_initialized:
        out.tags["ela.newly_initialized_weights"] = ",".join(loaded.newly_initialized)
    if gpu is not None:
        out.tags.update(gpu.tags())

    probs = lat.logits.softmax(-1)
    table = pd.DataFrame(
        {
            "index": batches.indices,
            "token_length": batches.token_lengths,
            "label": targets.numpy(),
            "prediction": probs.argmax(-1).numpy(),
            "confidence": probs.max(-1).values.numpy(),
        }
    )
    if reference is not None:
        table["prediction_fp32"] = reference.numpy()
    out.files["predictions.csv"] = _csv(table.sort_values("index"))
    out.files["batch_latency_ms.csv"] = _csv(pd.DataFrame({"latency_ms": lat.batch_ms}))
    out.files["energy_windows.csv"] = _csv(
        pd.DataFrame(
            {
                "duration_s": [w.duration_s for w in windows],
                "passes": [w.passes for w in windows],
                "samples": [w.samples for w in windows],
                "energy_j": [w.window.energy_j if w.window else None for w in windows],
            }
        )
    )


def _add_carbon(out: JobOutcome, carbon: CarbonTracker | None, job: JobConfig) -> None:
    """Stop CodeCarbon and add its whole-job figures; an invalid record is tagged and left out."""
    if carbon is None:
        return
    try:
        rec: CarbonRecord = carbon.stop()
    except MeasurementError as err:
        out.tags["ela.invalid.codecarbon"] = str(err)
        log.warning("CodeCarbon figures left out: %s", err)
        return
    out.metrics.update(
        {
            "codecarbon_energy_kwh": rec.energy_kwh,
            "codecarbon_cpu_energy_kwh": rec.cpu_energy_kwh,
            "codecarbon_ram_energy_kwh": rec.ram_energy_kwh,
            "codecarbon_gpu_energy_kwh": rec.gpu_energy_kwh,
            "codecarbon_duration_s": rec.duration_s,
            "emissions_g": rec.emissions_g,
        }
    )
    out.tags.update({f"ela.method.codecarbon_{k}": v for k, v in rec.methods.items()})
    out.tags["ela.method.emissions"] = f"codecarbon-offline({job.codecarbon.country_iso_code}), whole job"
    out.files["codecarbon.json"] = json.dumps(rec.raw, indent=2, default=str)


def _engine_label(engine) -> str:
    """e.g. `eager`, `compile(reduce-overhead)`, `compile(max-autotune,freezing)`."""
    if engine.name != "compile":
        return engine.name
    return f"compile({engine.compile_mode}{',freezing' if engine.freezing else ''})"


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()
