"""Pure functions that turn measured passes and windows into named metrics (units in the names)."""

from __future__ import annotations

import numpy as np
import torch

from ela.measure import EnergyWindow
from ela.meters import dynamic_energy_j

SHORT_WINDOW_S = 1.0  # NVML's counter ticks every ~100 ms: under 1 s a window sees < 10 ticks


def latency_metrics(batch_ms: list[float], num_samples: int) -> dict[str, float]:
    """Per-batch percentiles and per-sample latency from the synchronised pass."""
    ms = np.asarray(batch_ms)
    out = {
        "latency_ms_per_sample": float(ms.sum() / num_samples),
        "batch_latency_ms_mean": float(ms.mean()),
    }
    out.update({f"batch_latency_ms_p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)})
    return out


def _mean_sd_cv(values: list[float], name: str) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    out = {name: float(arr.mean())}
    if len(arr) > 1:
        sd = float(arr.std(ddof=1))
        out[f"{name}_sd"] = sd
        out[f"{name}_cv"] = sd / out[name] if out[name] else float("nan")
    return out


MIN_TICKS = 10


def window_metrics(
    windows: list[EnergyWindow], idle_power_w: float | None, tick_s: float | None = None
) -> tuple[dict[str, float], list[str]]:
    """Mean (and SD, CV across repeats) of throughput and energy per sample; warnings for weak windows."""
    out: dict[str, float] = {"energy_windows": len(windows)}
    out.update(_mean_sd_cv([w.duration_s for w in windows], "energy_window_s"))
    out["energy_window_passes"] = float(np.mean([w.passes for w in windows]))
    out.update(_mean_sd_cv([w.samples / w.duration_s for w in windows], "throughput_samples_per_s"))
    warnings = [
        f"window {i} lasted {w.duration_s:.2f} s (< {SHORT_WINDOW_S:.0f} s): energy is quantisation noise"
        for i, w in enumerate(windows)
        if w.duration_s < SHORT_WINDOW_S
    ]
    if tick_s:
        ticks = [w.duration_s / tick_s for w in windows]
        out["energy_window_ticks_min"] = min(ticks)
        warnings += [
            f"window {i} spans {n:.1f} counter ticks (< {MIN_TICKS}): quantisation error above ~10%"
            for i, n in enumerate(ticks)
            if n < MIN_TICKS
        ]
    measured = [w for w in windows if w.window is not None]
    if measured and idle_power_w is not None:
        out["gpu_energy_j"] = float(np.mean([w.window.energy_j for w in measured]))
        out["avg_power_w"] = float(np.mean([w.window.avg_power_w for w in measured]))
        out["idle_power_w"] = idle_power_w
        out.update(_mean_sd_cv([w.window.energy_j / w.samples for w in measured], "energy_j_per_sample"))
        dynamic = [dynamic_energy_j(w.window, idle_power_w) for w in measured]
        out["dynamic_energy_j"] = float(np.mean(dynamic))
        out.update(
            _mean_sd_cv([d / w.samples for d, w in zip(dynamic, measured, strict=True)], "dynamic_energy_j_per_sample")
        )
    return out, warnings


def accuracy_metrics(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor | None) -> dict[str, float]:
    """Accuracy against labels and prediction agreement with the fp32 reference."""
    preds = logits.argmax(-1)
    out = {"accuracy": float((preds == targets).float().mean()), "num_samples": len(targets)}
    if reference is not None:
        out["agreement_with_fp32"] = float((preds == reference).float().mean())
    return out
