"""Score a job: what it measured (`Raw`) into metrics, a verdict, tags and artifacts. No device work."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pandas as pd

from ela import schema as s
from ela.config import EngineConfig, JobConfig
from ela.job.results import DatasetRecord, JobOutcome, Raw
from ela.job.score_generation import AGREEMENT_TOLERANCE, generation_metrics_of, generation_tags
from ela.measure.carbon import CarbonRecord
from ela.measure.energy import SCOPE
from ela.measure.metrics import accuracy_metrics, latency_metrics, window_metrics
from ela.measure.quality import verdict

log = logging.getLogger(__name__)


def score(job: JobConfig, raw: Raw) -> JobOutcome:
    """Metrics, tags and artifacts from what a job measured."""
    out, loaded = JobOutcome(), raw.loaded
    m, warnings = out.metrics, loaded.split.warnings(job.dataset.limit)
    batches = loaded.batches
    if raw.generated is None:
        warnings += _classification(job, raw, m)
        batch_ms, timed_s = raw.lat.batch_ms, raw.lat.duration_s
    else:
        warnings += generation_metrics_of(job, raw, m)
        batch_ms, timed_s = raw.generated.passes.batch_ms, raw.generated.passes.duration_s
    lat_m, lat_warnings = latency_metrics(batch_ms, batches.num_samples, timed_s)
    window_m, window_warnings = window_metrics(raw.windows, raw.idle.power_w if raw.idle else None, raw.tick_s)
    m.update({**lat_m, **window_m})
    warnings += lat_warnings + window_warnings
    m[s.LATENCY_COST_RATIO] = m["synced_ms_per_sample"] / m[s.COST]
    m.update(
        {
            "engine_setup_s": raw.setup_s,
            **s.phase_metrics(raw.phase_s),
            "padding_fraction": batches.padding_fraction,
            "distinct_shapes": len(batches.shapes),
            "other_ela_jobs": raw.other_ela_jobs,
            "mean_token_length": float(np.mean(batches.token_lengths)),
            "peak_memory_mb": raw.peak_mb,
            **{f"gpu_{k}_start": v for k, v in raw.state_start.items()},
            **{f"gpu_{k}_end": v for k, v in raw.state_end.items()},
        }
    )
    if raw.host is not None:
        m.update(
            host_other_cpu_share=raw.host.other_share,
            host_steal_share=raw.host.steal_share,
            process_cpus_busy=raw.host.own_cpus,
            gc_share=raw.host.gc_share,
            gc_full_collections=raw.host.gc_full,
        )
    if raw.idle is not None:
        m["idle_settle_s"] = raw.idle.settle_s
    if raw.tick_s:
        m["nvml_counter_tick_ms"] = raw.tick_s * 1000
    _carbon(out, raw.carbon, job)
    for w in warnings:
        log.warning("%s: %s", job.run_name, w)
    out.tags.update(_tags(job, raw, warnings))
    level, reasons = verdict(m)
    out.tags.update({"ela.verdict": level, "ela.verdict_reasons": "; ".join(reasons) or "none"})
    out.files.update(_files(job, raw))
    split = loaded.split
    table = pd.DataFrame({"text": split.texts, "label": [str(v) for v in split.labels]})
    hub = split.source.startswith("hub:")
    uri = f"https://huggingface.co/datasets/{job.dataset.hub_id}" if hub else split.source
    out.dataset = DatasetRecord(name=job.dataset.name, source=uri, table=table)
    return out


def _classification(job: JobConfig, raw: Raw, m: dict[str, float]) -> list[str]:
    """Accuracy and agreement of a classifier's predictions (from the first latency pass)."""
    loaded, logits, warnings = raw.loaded, raw.lat.logits, []
    m.update(accuracy_metrics(logits, loaded.targets, raw.reference))
    if job.precision.name == "fp32" and job.measure.fp32_reference and not job.model.fuse_gelu:
        m[s.AGREE_FP32] = 1.0  # this run is the fp32 reference (a fused GELU is another function: measured)
    if raw.eager_ref is not None:
        m[s.AGREE_EAGER] = float((logits.argmax(-1) == raw.eager_ref).float().mean())
        if m[s.AGREE_EAGER] < 1.0 - AGREEMENT_TOLERANCE:
            warnings.append(
                f"engine={job.engine.name}, attn_implementation={job.model.attn_implementation}: predictions agree "
                f"with transformers' eager reference on only {m[s.AGREE_EAGER]:.4f} of samples"
            )
    return warnings


def _tags(job: JobConfig, raw: Raw, warnings: list[str]) -> dict[str, str]:
    """What the job ran on and how each figure was obtained."""
    loaded, meter = raw.loaded, raw.meter
    tags = {
        "ela.tf32": raw.tf32,
        "ela.device": raw.device_type,
        "ela.model_source": loaded.model_source,
        "ela.dataset_source": loaded.split.source,
        "ela.dataset_rows": str(loaded.split.rows),
        "ela.untrained_head": str(bool(loaded.newly_initialized)).lower(),
        "ela.attn_implementation": loaded.attn_implementation,
        "ela.label_map": json.dumps(loaded.label_map),
        "ela.engine": engine_label(job.engine),
        "ela.engine_reuse": raw.reuse,
        "ela.reference_reuse": raw.reference_reuse,
        "ela.energy_scope": SCOPE.get(meter.kind, "none"),
        "ela.method.latency": "perf_counter, device synchronised around every batch, passes over "
        f">= {job.measure.min_window_s:g} s; stall = > 3x the batch's best time",
        "ela.method.cost": "energy windows: window time / samples, whole passes, no per-batch synchronisation",
        "ela.method.energy": meter.method,
        "ela.method.peak_memory": "cuda-max-allocated" if raw.device_type == "cuda" else "process-peak-rss",
        "ela.method.accuracy": "argmax of logits from the first latency pass vs dataset labels",
        "ela.task": job.task.name,
    }
    if raw.generated is not None:
        tags.update(generation_tags(job))
        if raw.generated.ignored:
            tags["ela.generation_ignored"] = json.dumps(raw.generated.ignored, default=str)
        if raw.generated.fused:
            tags["ela.fused_projections"] = ", ".join(f"{k} in {n} layers" for k, n in raw.generated.fused.items())
    if raw.linears:
        tags["ela.fp8_linears"] = raw.linears
    if raw.gelu_epilogue:
        tags["ela.gelu_epilogue"] = raw.gelu_epilogue
    if warnings:
        tags["ela.warning"] = "; ".join(warnings)
    if loaded.newly_initialized:
        tags["ela.newly_initialized_weights"] = ",".join(loaded.newly_initialized)
    if meter.note:
        tags["ela.method.energy_note"] = meter.note
    if meter.gpu is not None:
        tags.update(meter.gpu.tags())
    return tags


def _carbon(out: JobOutcome, record: CarbonRecord | str | None, job: JobConfig) -> None:
    """CodeCarbon's whole-job figures; an invalid record is tagged and left out."""
    if record is None:
        return
    if isinstance(record, str):
        out.tags["ela.invalid.codecarbon"] = record
        log.warning("CodeCarbon figures left out: %s", record)
        return
    out.metrics.update(
        {
            s.CODECARBON_KWH: record.energy_kwh,
            "codecarbon_cpu_energy_kwh": record.cpu_energy_kwh,
            "codecarbon_ram_energy_kwh": record.ram_energy_kwh,
            "codecarbon_gpu_energy_kwh": record.gpu_energy_kwh,
            "codecarbon_duration_s": record.duration_s,
            s.EMISSIONS_G: record.emissions_g,
        }
    )
    out.tags.update({f"ela.method.codecarbon_{k}": v for k, v in record.methods.items()})
    out.tags["ela.method.emissions"] = f"codecarbon-offline({job.codecarbon.country_iso_code}), whole job"
    out.files["codecarbon.json"] = json.dumps(record.raw, indent=2, default=str)


def _files(job: JobConfig, raw: Raw) -> dict[str, str | bytes]:
    """Per-sample predictions (or generations), every timed batch, every window, and the power trace."""
    loaded, g = raw.loaded, raw.generated
    scores = raw.lat.logits if g is None else g.passes.choice
    reference = (
        raw.reference if g is None else (g.reference_choice.argmax(-1) if g.reference_choice is not None else None)
    )
    files: dict[str, str | bytes] = {}
    if scores is not None:  # a classifier, or next-token choice: predictions per sample
        probs = scores.softmax(-1)
        table = pd.DataFrame(
            {
                "index": loaded.batches.indices,
                "token_length": loaded.batches.token_lengths,
                "label": loaded.targets.numpy(),
                "prediction": probs.argmax(-1).numpy(),
                "confidence": probs.max(-1).values.numpy(),
            }
        )
        if reference is not None:
            table["prediction_fp32"] = reference.numpy()
        files["predictions.csv"] = _csv(table.sort_values("index"))
    timed = raw.lat.batch_ms if g is None else g.passes.batch_ms
    batches = pd.DataFrame(
        [(p, b, ms) for p, row in enumerate(timed) for b, ms in enumerate(row)], columns=["pass", "batch", "latency_ms"]
    )
    windows = [("generation" if g is not None else "pass", w) for w in raw.windows]
    if g is not None:
        batches["ttft_ms"] = [ms for row in g.passes.ttft_ms for ms in row]
        windows += [("prefill", w) for w in g.prefill_windows]
        gens = pd.DataFrame(
            {
                "index": loaded.batches.indices,
                "prompt_tokens": loaded.batches.token_lengths,
                "output_tokens": g.lengths,
                "text": g.texts,
                "token_ids": [" ".join(map(str, r[:n])) for r, n in zip(g.tokens, g.lengths, strict=True)],
            }
        )
        files["generations.csv"] = _csv(gens.sort_values("index"))
    files["batch_latency_ms.csv"] = _csv(batches)
    files["energy_windows.csv"] = _csv(
        pd.DataFrame(
            {
                "workload": [k for k, _ in windows],
                "duration_s": [w.duration_s for _, w in windows],
                "passes": [w.passes for _, w in windows],
                "samples": [w.samples for _, w in windows],
                "energy_j": [w.window.energy_j if w.window else None for _, w in windows],
            }
        )
    )
    if raw.trace is not None:
        from ela.measure.trace import power_trace_png  # matplotlib: imported only by jobs that draw

        files["power_trace.csv"] = _csv(raw.trace)
        files["power_trace.png"] = power_trace_png(raw.trace, f"{job.run_name}: {raw.meter.method}")
    return files


def engine_label(engine: EngineConfig) -> str:
    """e.g. `eager`, `eager(packing=128)`, `compile(reduce-overhead)`, `compile(max-autotune,freezing)`."""
    packed = f"packing={engine.packing}" if engine.packing else ""
    if engine.name != "compile":
        return f"{engine.name}({packed})" if packed else engine.name
    extras = ",freezing" * engine.freezing + ",coordinate-descent" * engine.coordinate_descent
    return f"compile({engine.compile_mode}{extras}{',' * bool(packed)}{packed})"


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()
