"""One job: check, claim the device, load, measure (`run_phases` -> `Raw`), then score (`score` -> outcome).

The measured sequence and the arithmetic on it are apart: `run_phases` only measures and returns raw
figures, `score` turns them into metrics, tags and files without touching a device.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ela import ElaError, interrupt
from ela.config import JobConfig
from ela.measure import host
from ela.measure.carbon import CarbonRecord, CarbonTracker, CodeCarbonMeter
from ela.measure.gpu_pool import claim, claim_gpu, other_holders, pinned
from ela.measure.loops import (
    EnergyWindow,
    Idle,
    LatencyPasses,
    energy_window,
    idle_power,
    latency_passes,
    make_forward,
    predict,
    warmup,
)
from ela.measure.meters import (
    FakeCounter,
    MeasurementError,
    Meter,
    NvmlCounter,
    RaplCounter,
    WindowMeter,
    rapl_zones,
    tick_period_s,
)
from ela.measure.metrics import accuracy_metrics, latency_metrics, window_metrics
from ela.measure.quality import verdict
from ela.measure.trace import PowerTrace
from ela.runtime import attention, engines
from ela.runtime.data import Batches, EvalSplit, label_targets, load_split, tokenize
from ela.runtime.device import (
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
from ela.runtime.models import apply_precision, load_model, model_labels, stock_kernels

log = logging.getLogger(__name__)
AGREEMENT_TOLERANCE = 0.005  # engines may differ from eager in the last bits; more than this is flagged
SCOPE = {"nvml": "gpu", "rapl": "cpu-packages", "codecarbon": "cpu+ram", "fake": "fake"}
RAPL_ROOT = Path("/sys/class/powercap")


@dataclass
class JobOutcome:
    """What a job logs: metrics, tags and artifact files by name."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class MeterChoice:
    """The energy meter a job uses, how its figures are obtained, and why it is the one."""

    meter: Meter | None
    kind: str  # nvml | rapl | codecarbon | fake | none
    method: str  # tag: nvml-counter, rapl(package-0), codecarbon-model(cpu_load)+codecarbon-model(ram), ...
    note: str = ""  # why auto chose it, where that is worth saying (e.g. no readable RAPL)
    gpu: GpuInfo | None = None


@dataclass
class Raw:
    """Everything a job measured, before any arithmetic."""

    split: EvalSplit
    batches: Batches
    targets: torch.Tensor
    loaded_source: str
    newly_initialized: list[str]
    attn_implementation: str
    label_map: dict[str, int]  # dataset label -> model output index
    reference: torch.Tensor | None  # fp32 predictions (untimed)
    eager_ref: torch.Tensor | None  # transformers' eager predictions in this precision (untimed)
    setup_s: float
    idle: Idle | None
    tick_s: float | None
    lat: LatencyPasses
    windows: list[EnergyWindow]
    state_start: dict[str, float]
    state_end: dict[str, float]
    host_other_cpu_share: float | None
    other_ela_jobs: int
    tf32: str
    peak_mb: float
    meter: MeterChoice
    device_type: str
    trace: pd.DataFrame | None = None


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
        longest = max([job.model.max_length, *(job.engine.buckets or [])])
        attention.check(job.model.attn_implementation, job.precision, torch.device("cpu"), longest)
    if job.measure.energy_meter == "nvml" and device_type != "cuda":
        raise ElaError("measure.energy_meter=nvml needs a CUDA device; this job runs on CPU (use energy_meter=auto)")


def make_meter(job: JobConfig, device: torch.device) -> MeterChoice:
    """The energy meter this job asked for; never a silent substitute."""
    kind, note = job.measure.energy_meter, ""
    if kind == "auto":
        if device.type == "cuda":
            kind = "nvml"
        else:
            zones = rapl_zones(RAPL_ROOT)
            kind = "rapl" if not isinstance(zones, str) else ("codecarbon" if job.codecarbon.enabled else "none")
            note = f"auto: {zones}" if isinstance(zones, str) else ""
    sync = synchronizer(device)
    if kind == "fake":
        return MeterChoice(WindowMeter(FakeCounter(job.measure.fake_power_w), sync), kind, FakeCounter.method)
    if kind == "none":
        reason = "measure.energy_meter=none" if job.measure.energy_meter == "none" else f"{note}; CodeCarbon disabled"
        return MeterChoice(None, kind, "none", reason)
    if kind == "rapl":
        counter = RaplCounter(RAPL_ROOT)  # raises MeasurementError saying why it can't be read
        return MeterChoice(WindowMeter(counter, sync), kind, counter.method, note)
    if kind == "codecarbon":
        meter = CodeCarbonMeter(job.codecarbon, sync)
        return MeterChoice(meter, kind, meter.method, note + ("; " if note else "") + "CPU and RAM energy modelled")
    try:
        info = gpu_info(device)
        counter = NvmlCounter(info.handle)
        counter.read_j()
    except Exception as err:  # no NVML, or a GPU without the energy counter (pre-Volta)
        raise ElaError(
            f"cannot read NVML's energy counter ({type(err).__name__}: {err}); install nvidia-ml-py on a "
            "Volta+ GPU, or pass measure.energy_meter=none to run without GPU energy"
        ) from err
    return MeterChoice(WindowMeter(counter, sync), kind, counter.method, gpu=info)


def measure_job(job: JobConfig, job_dir: Path, progress=None) -> JobOutcome:
    """Run one configured job end to end (on a GPU of its own when gpus= is set)."""
    if job.gpus is not None and job.device == "cpu":
        raise ElaError(f"gpus={job.gpus} needs CUDA GPUs; this job runs on CPU (leave gpus=null)")
    device_type = "cuda" if job.gpus is not None else resolve_device(job.device).type
    preflight(job, device_type)
    t0 = time.perf_counter()

    def waiting(holders: list[str]) -> None:
        print(f"[ela] {job.run_name} waits for its device, held by {', '.join(holders)}", file=sys.stderr, flush=True)

    if job.gpus is not None:
        # Claimed before anything starts CUDA, so the job can be pinned with CUDA_VISIBLE_DEVICES.
        lock = claim_gpu(job.gpus, on_wait=waiting)
    elif device_type == "cpu":
        # Jobs measuring the CPU at the same time would measure each other: one at a time per host,
        # whatever the launcher starts concurrently (submitit's local executor starts them all).
        lock = claim([f"cpu-{socket.gethostname()}"], on_wait=waiting)
    else:
        lock = claim_gpu(None)
    with lock as index:
        waited = time.perf_counter() - t0
        device = resolve_device(job.device, index if job.gpus is not None else None)
        out = _measure_on(job, device, job_dir, progress)
    out.metrics["device_wait_s"] = waited  # queued behind other jobs for the GPU/CPU: not overhead
    if pinned():
        out.tags["ela.cuda_visible_devices"] = pinned()
    return out


def _measure_on(job: JobConfig, device: torch.device, job_dir: Path, progress) -> JobOutcome:
    check_precision(job.precision, device)
    longest = max([job.model.max_length, *(job.engine.buckets or [])])  # the longest padded batch possible
    attention.check(job.model.attn_implementation, job.precision, device, longest)
    seed_everything(job.seed)
    choice = make_meter(job, device)
    carbon = None
    if job.codecarbon.enabled:
        gpus = [choice.gpu.nvml_index] if choice.gpu else []
        carbon = CarbonTracker(job.codecarbon, gpus, str(job_dir), job.run_name)
        carbon.start()
    try:
        raw = run_phases(job, device, choice, progress)
        out = score(job, raw)
        _add_carbon(out, carbon, job)
        return out
    finally:
        if carbon is not None:
            carbon.close()  # a crashed job must not leave CodeCarbon's sampler running


def run_phases(job: JobConfig, device: torch.device, choice: MeterChoice, progress) -> Raw:
    """Load, references, precision, engine, idle, warm-up, latency passes, energy windows: the measured order."""
    me, sync, meter, gpu = job.measure, synchronizer(device), choice.meter, choice.gpu
    counter = getattr(meter, "counter", None)
    trace = PowerTrace(counter, me.trace_interval_s).start() if counter is not None and me.trace else None

    def step(name: str) -> None:
        interrupt.check()  # a stop request ends the job here, between phases
        if progress is not None:
            progress.set_postfix_str(name)
        if trace is not None:
            trace.mark(name)

    try:
        with clean_device(device):
            step("load")
            split = load_split(job.dataset)
            mapping_targets = label_targets(split.labels, job.dataset, model_labels(job.model))
            loaded = load_model(job.model)
            batches = tokenize(
                loaded.tokenizer, split.texts, job.batch, job.model.max_length, job.engine.buckets, job.dataset.order
            ).to(device)
            targets = torch.tensor([mapping_targets[i] for i in batches.indices])  # in batch order
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
            forward, setup_s = engines.build(job.engine, model, amp, batches, device, sync)
            idle = tick_s = None
            if meter is not None:
                step("idle power")
                idle = idle_power(meter, me.idle_max_settle_s, me.idle_window_s)
                if counter is not None:
                    tick_s = tick_period_s(counter, max_s=0.6)
            step("warm-up")
            warmup(forward, batches, me.warmup_batches, sync)
            step("latency passes")
            lat = latency_passes(forward, batches, sync, me.min_window_s)
            state_start = card_state(gpu) if gpu else {}
            others = other_holders()
            windows, before = [], host.sample()
            for i in range(me.repeats):
                step(f"window {i + 1}/{me.repeats}")
                windows.append(energy_window(forward, batches, sync, meter, me.min_window_s))
            share = host.other_cpu_share(before, host.sample())
            step("score")
            state_end = card_state(gpu) if gpu else {}
            peak_mb = (
                torch.cuda.max_memory_allocated(device) / 2**20
                if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            )
            tf32 = tf32_state()
            del model, forward
    finally:
        trace_df = trace.stop() if trace is not None else None
    return Raw(
        meter=choice,
        split=split,
        batches=batches,
        targets=targets,
        loaded_source=loaded.source,
        newly_initialized=loaded.newly_initialized,
        attn_implementation=str(getattr(loaded.model.config, "_attn_implementation", "unknown")),
        label_map=dict(sorted({str(v): t for v, t in zip(split.labels, mapping_targets, strict=True)}.items())),
        reference=reference,
        eager_ref=eager_ref,
        setup_s=setup_s,
        idle=idle,
        tick_s=tick_s,
        lat=lat,
        windows=windows,
        state_start=state_start,
        state_end=state_end,
        host_other_cpu_share=share,
        other_ela_jobs=others,
        tf32=tf32,
        peak_mb=peak_mb,
        device_type=device.type,
        trace=trace_df,
    )


def score(job: JobConfig, raw: Raw) -> JobOutcome:
    """Metrics, tags and artifacts from what a job measured (no device work)."""
    out = JobOutcome()
    m, warnings = out.metrics, raw.split.warnings(job.dataset.limit)
    logits, batches = raw.lat.logits, raw.batches
    m.update(accuracy_metrics(logits, raw.targets, raw.reference))
    m["engine_setup_s"] = raw.setup_s
    m["padding_fraction"] = batches.padding_fraction
    m["distinct_shapes"] = len(batches.shapes)
    if raw.eager_ref is not None:
        m["agreement_with_eager"] = float((logits.argmax(-1) == raw.eager_ref).float().mean())
        if m["agreement_with_eager"] < 1.0 - AGREEMENT_TOLERANCE:
            warnings.append(
                f"engine={job.engine.name}, attn_implementation={job.model.attn_implementation}: predictions agree "
                f"with transformers' eager reference on only {m['agreement_with_eager']:.4f} of samples"
            )
    if job.precision.name == "fp32" and job.measure.fp32_reference:
        m["agreement_with_fp32"] = 1.0  # this run is the fp32 reference
    lat_m, lat_warnings = latency_metrics(raw.lat.batch_ms, batches.num_samples, raw.lat.duration_s)
    m.update(lat_m)
    window_m, window_warnings = window_metrics(raw.windows, raw.idle.power_w if raw.idle else None, raw.tick_s)
    m.update(window_m)
    warnings += lat_warnings + window_warnings
    m["latency_cost_ratio"] = m["synced_ms_per_sample"] / m["cost_ms_per_sample"]
    if raw.host_other_cpu_share is not None:
        m["host_other_cpu_share"] = raw.host_other_cpu_share
    m["other_ela_jobs"] = raw.other_ela_jobs
    if raw.idle is not None:
        m["idle_settle_s"] = raw.idle.settle_s
    if raw.tick_s:
        m["nvml_counter_tick_ms"] = raw.tick_s * 1000
    m["mean_token_length"] = float(np.mean(batches.token_lengths))
    m["peak_memory_mb"] = raw.peak_mb
    m.update({f"gpu_{k}_start": v for k, v in raw.state_start.items()})
    m.update({f"gpu_{k}_end": v for k, v in raw.state_end.items()})
    level, reasons = verdict(m)
    for w in warnings:
        log.warning("%s: %s", job.run_name, w)
    if warnings:
        out.tags["ela.warning"] = "; ".join(warnings)

    out.tags.update(
        {
            "ela.tf32": raw.tf32,
            "ela.verdict": level,
            "ela.verdict_reasons": "; ".join(reasons) or "none",
            "ela.device": raw.device_type,
            "ela.model_source": raw.loaded_source,
            "ela.dataset_source": raw.split.source,
            "ela.dataset_rows": str(raw.split.rows),
            "ela.untrained_head": str(bool(raw.newly_initialized)).lower(),
            "ela.attn_implementation": raw.attn_implementation,
            "ela.label_map": json.dumps(raw.label_map),
            "ela.engine": _engine_label(job.engine),
            "ela.energy_scope": SCOPE.get(raw.meter.kind, "none"),
            "ela.method.latency": "perf_counter, device synchronised around every batch, passes over "
            f">= {job.measure.min_window_s:g} s; stall = > 3x the batch's best time",
            "ela.method.cost": "energy windows: window time / samples, whole passes, no per-batch synchronisation",
            "ela.method.energy": raw.meter.method,
            "ela.method.peak_memory": "cuda-max-allocated" if raw.device_type == "cuda" else "process-peak-rss",
            "ela.method.accuracy": "argmax of logits from the first latency pass vs dataset labels",
        }
    )
    if raw.newly_initialized:
        out.tags["ela.newly_initialized_weights"] = ",".join(raw.newly_initialized)
    if raw.meter.note:
        out.tags["ela.method.energy_note"] = raw.meter.note
    if raw.meter.gpu is not None:
        out.tags.update(raw.meter.gpu.tags())

    probs = logits.softmax(-1)
    table = pd.DataFrame(
        {
            "index": batches.indices,
            "token_length": batches.token_lengths,
            "label": raw.targets.numpy(),
            "prediction": probs.argmax(-1).numpy(),
            "confidence": probs.max(-1).values.numpy(),
        }
    )
    if raw.reference is not None:
        table["prediction_fp32"] = raw.reference.numpy()
    out.files["predictions.csv"] = _csv(table.sort_values("index"))
    out.files["batch_latency_ms.csv"] = _csv(
        pd.DataFrame(
            [(p, b, ms) for p, row in enumerate(raw.lat.batch_ms) for b, ms in enumerate(row)],
            columns=["pass", "batch", "latency_ms"],
        )
    )
    out.files["energy_windows.csv"] = _csv(
        pd.DataFrame(
            {
                "duration_s": [w.duration_s for w in raw.windows],
                "passes": [w.passes for w in raw.windows],
                "samples": [w.samples for w in raw.windows],
                "energy_j": [w.window.energy_j if w.window else None for w in raw.windows],
            }
        )
    )
    if raw.trace is not None:
        from ela.analysis.plots import power_trace_png  # matplotlib: imported only by jobs that draw

        out.files["power_trace.csv"] = _csv(raw.trace)
        out.files["power_trace.png"] = power_trace_png(raw.trace, f"{job.run_name}: {raw.meter.method}")
    return out


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
