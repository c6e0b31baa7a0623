"""One job: load, tokenize, apply precision, measure, score. Returns metrics, tags and files."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import resource
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ela import ElaError
from ela.carbon import CarbonRecord, CarbonTracker
from ela.config import JobConfig
from ela.data import load_split, tokenize
from ela.device import (
    DTYPE,
    GpuInfo,
    autocast,
    check_precision,
    clean_device,
    gpu_info,
    resolve_device,
    set_tf32,
    synchronizer,
    tf32_state,
)
from ela.measure import energy_window, idle_power_w, latency_pass, make_forward, predict, warmup
from ela.meters import FakeCounter, MeasurementError, NvmlCounter, WindowMeter, dynamic_energy_j
from ela.models import apply_precision, label_map, load_model

log = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


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
    """Run one configured job end to end and return what it measured."""
    device = resolve_device(job.device)
    check_precision(job.precision, device)
    seed_everything(job.seed)
    meter, gpu = make_meter(job, device)
    carbon = None
    if job.codecarbon.enabled:
        carbon = CarbonTracker(job.codecarbon, [gpu.nvml_index] if gpu else [], str(job_dir), job.run_name)
        carbon.start()
    try:
        return _measure(job, device, meter, gpu, carbon, progress)
    finally:
        if carbon is not None:
            carbon.close()  # a crashed job must not leave CodeCarbon's sampler running


def _measure(job: JobConfig, device: torch.device, meter, gpu, carbon, progress) -> JobOutcome:
    out = JobOutcome()
    sync = synchronizer(device)
    step = (lambda name: progress.set_postfix_str(name)) if progress is not None else (lambda name: None)

    with clean_device(device):
        step("load")
        split = load_split(job.dataset)
        loaded = load_model(job.model)
        mapping = label_map(loaded.model, job.dataset.label_names)
        if max(split.labels) >= len(mapping):
            raise ElaError(f"dataset labels go up to {max(split.labels)} but the model has {len(mapping)} labels")
        targets = torch.tensor([mapping[y] for y in split.labels])
        batches = tokenize(loaded.tokenizer, split.texts, job.batch, job.model.max_length).to(device)
        model = loaded.model.to(device)

        reference = None
        if job.measure.fp32_reference and job.precision.name != "fp32":
            step("fp32 reference")
            reference = predict(make_forward(model, contextlib.nullcontext), batches).argmax(-1)

        model = apply_precision(model, DTYPE[job.precision.weights_dtype], device)
        set_tf32(job.precision.tf32)
        forward = make_forward(model, lambda: autocast(job.precision, device))
        if meter is not None:
            step("idle power")
            idle_w = idle_power_w(meter, job.measure.idle_settle_s, job.measure.idle_window_s)
        step("warm-up")
        warmup(forward, batches, job.measure.warmup_batches, sync)
        step("latency")
        lat = latency_pass(forward, batches, sync)
        step("energy window")
        ew = energy_window(forward, batches, sync, meter, job.measure.min_window_s)
        out.tags["ela.tf32"] = tf32_state()
        peak_mb = (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        del model, forward

    step("score")
    probs = lat.logits.softmax(-1)
    preds = probs.argmax(-1)
    n = batches.num_samples
    ms = np.asarray(lat.batch_ms)
    m = out.metrics
    m["accuracy"] = float((preds == targets).float().mean())
    m["num_samples"] = n
    m["mean_token_length"] = float(np.mean(batches.token_lengths))
    m["latency_ms_per_sample"] = float(ms.sum() / n)
    m["batch_latency_ms_mean"] = float(ms.mean())
    for q in (50, 90, 99):
        m[f"batch_latency_ms_p{q}"] = float(np.percentile(ms, q))
    m["throughput_samples_per_s"] = ew.samples / ew.duration_s
    m["energy_window_s"] = ew.duration_s
    m["energy_window_passes"] = ew.passes
    m["peak_memory_mb"] = peak_mb
    if ew.window is not None:
        m["gpu_energy_j"] = ew.window.energy_j
        m["energy_j_per_sample"] = ew.window.energy_j / ew.samples
        m["idle_power_w"] = idle_w
        m["avg_power_w"] = ew.window.avg_power_w
        m["dynamic_energy_j"] = dynamic_energy_j(ew.window, idle_w)
        m["dynamic_energy_j_per_sample"] = m["dynamic_energy_j"] / ew.samples
    if reference is not None:
        m["agreement_with_fp32"] = float((preds == reference).float().mean())
    elif job.precision.name == "fp32":
        m["agreement_with_fp32"] = 1.0  # this run is the fp32 reference

    t = out.tags
    t.update(
        {
            "ela.device": device.type,
            "ela.model_source": loaded.source,
            "ela.dataset_source": split.source,
            "ela.untrained_head": str(bool(loaded.newly_initialized)).lower(),
            "ela.attn_implementation": str(getattr(loaded.model.config, "_attn_implementation", "unknown")),
            "ela.label_map": json.dumps(mapping),
            "ela.method.latency": "perf_counter, device synchronised before and after every batch",
            "ela.method.throughput": "energy window: whole passes, no per-batch synchronisation",
            "ela.method.energy_gpu": meter.method if meter else "none",
            "ela.method.peak_memory": "cuda-max-allocated" if device.type == "cuda" else "process-peak-rss",
            "ela.method.accuracy": "argmax of logits from the latency pass vs dataset labels",
        }
    )
    if loaded.newly_initialized:
        t["ela.newly_initialized_weights"] = ",".join(loaded.newly_initialized)
    if gpu is not None:
        t.update(
            {
                "gpu.name": gpu.name,
                "gpu.uuid": gpu.uuid,
                "gpu.nvml_index": str(gpu.nvml_index),
                "gpu.driver": gpu.driver,
                "gpu.cuda_driver": gpu.cuda_driver,
                "gpu.power_limit_w": f"{gpu.power_limit_w:.0f}",
            }
        )

    rec = _stop(carbon, t)
    if rec is not None:
        m["codecarbon_energy_kwh"] = rec.energy_kwh
        m["codecarbon_cpu_energy_kwh"] = rec.cpu_energy_kwh
        m["codecarbon_ram_energy_kwh"] = rec.ram_energy_kwh
        m["codecarbon_gpu_energy_kwh"] = rec.gpu_energy_kwh
        m["codecarbon_duration_s"] = rec.duration_s
        m["emissions_g"] = rec.emissions_g
        t.update({f"ela.method.codecarbon_{k}": v for k, v in rec.methods.items()})
        t["ela.method.emissions"] = f"codecarbon-offline({job.codecarbon.country_iso_code}), whole job"
        out.files["codecarbon.json"] = json.dumps(rec.raw, indent=2, default=str)

    table = pd.DataFrame(
        {
            "index": np.arange(n),
            "token_length": batches.token_lengths,
            "label": targets.numpy(),
            "prediction": preds.numpy(),
            "confidence": probs.max(-1).values.numpy(),
        }
    )
    if reference is not None:
        table["prediction_fp32"] = reference.numpy()
    out.files["predictions.csv"] = _csv(table)
    out.files["batch_latency_ms.csv"] = _csv(pd.DataFrame({"batch": np.arange(len(ms)), "latency_ms": ms}))
    return out


def _stop(carbon: CarbonTracker | None, tags: dict[str, str]) -> CarbonRecord | None:
    """Stop CodeCarbon; an invalid record is tagged and left out rather than failing the whole job."""
    if carbon is None:
        return None
    try:
        return carbon.stop()
    except MeasurementError as err:
        tags["ela.invalid.codecarbon"] = str(err)
        log.warning("CodeCarbon figures left out: %s", err)
        return None


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()
