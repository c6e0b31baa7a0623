"""Pure functions that turn measured passes and windows into named metrics (units in the names)."""

from __future__ import annotations

import numpy as np
import torch

from ela.measure.loops import EnergyWindow
from ela.measure.meters import dynamic_energy_j

SHORT_WINDOW_S = 1.0  # NVML's counter ticks every ~100 ms: under 1 s a window sees < 10 ticks


STALL_FACTOR = 3.0  # a batch this many times slower than its own best time stalled (a hiccup, not work)
STALL_WARN_SHARE = 0.01


def latency_metrics(
    batch_ms: list[list[float]], num_samples: int, duration_s: float
) -> tuple[dict[str, float], list[str]]:
    """Batch-latency percentiles over every synchronised pass, and how many batches stalled.

    batch_ms is [pass][batch]. A batch stalled when it took > STALL_FACTOR x the fastest time of the same
    batch across passes (with one pass: x the median batch), so a batch that is slow because it is long
    is not a stall. The percentiles keep stalls in: they are latency a request would have waited.
    """
    ms = np.asarray(batch_ms, dtype=float)  # passes x batches
    reference = ms.min(axis=0, keepdims=True) if len(ms) > 1 else np.full_like(ms, np.median(ms))
    stalled = int((ms > STALL_FACTOR * reference).sum())
    out = {
        "batch_latency_ms_mean": float(ms.mean()),
        "latency_passes": float(len(ms)),
        "latency_window_s": duration_s,
        "synced_ms_per_sample": float(ms.sum() / (num_samples * len(ms))),
        "stalled_batches": float(stalled),
        "stalled_batch_share": stalled / ms.size,
    }
    out.update({f"batch_latency_ms_p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)})
    warnings = []
    if out["stalled_batch_share"] > STALL_WARN_SHARE:
        warnings.append(
            f"{stalled} of {ms.size} timed batches ({out['stalled_batch_share']:.1%}) stalled (> {STALL_FACTOR:g}x "
            "their best time): the host or device was busy with something else"
        )
    return out, warnings


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
    # The cost of a sample: window time per sample, the figure that pairs with energy per sample.
    out.update(_mean_sd_cv([1000.0 * w.duration_s / w.samples for w in windows], "cost_ms_per_sample"))
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
    if measured:
        out["window_energy_j"] = float(np.mean([w.window.energy_j for w in measured]))
        out["avg_power_w"] = float(np.mean([w.window.avg_power_w for w in measured]))
        out.update(_mean_sd_cv([w.window.energy_j / w.samples for w in measured], "energy_j_per_sample"))
    if measured and idle_power_w is not None:  # without an idle baseline, gross figures only
        out["idle_power_w"] = idle_power_w
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


def _percentiles(values, name: str) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {f"{name}_p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)} if arr.size else {}


def generation_metrics(
    ttft_ms: list[list[float]],
    step_ms: list[list[list[float]]],
    batch_sizes: list[int],
    lengths: list[int],
    prompt_tokens: int,
    windows: list[EnergyWindow],
    prefill_windows: list[EnergyWindow],
    idle_power_w: float | None,
) -> dict[str, float]:
    """TTFT and time per output token from the timed generations; per-token rates and energies from windows.

    ttft_ms is [pass][batch], step_ms [pass][batch][step] (ms since the first token); lengths are the
    tokens each sample generated (batch order), prompt_tokens the real (unpadded) prompt tokens of one
    pass. A request's TTFT is its batch's; its TPOT is (time of its last token - first) / (tokens - 1).
    Windows over whole generations give per-request and per-output-token figures; the prefill windows
    give per-prompt-token ones; decode energy per output token is their difference per pass over the
    tokens decoding produced (all but each request's first), the method optimum-benchmark uses.
    """
    ttft = [t for row in ttft_ms for t, n in zip(row, batch_sizes, strict=True) for _ in range(n)]
    tpot = []
    for row in step_ms:
        start = 0
        for steps, n in zip(row, batch_sizes, strict=True):
            # Lengths are the first pass's; stopping at EOS a later pass may end a batch sooner: clamp to its steps.
            tpot += [
                steps[min(k, len(steps)) - 1] / (min(k, len(steps)) - 1)
                for k in lengths[start : start + n]
                if min(k, len(steps)) > 1
            ]
            start += n
    out_tokens, requests = sum(lengths), len(lengths)
    out = {
        **_percentiles(ttft, "ttft_ms"),
        **_percentiles(tpot, "tpot_ms"),
        "prompt_tokens_mean": prompt_tokens / requests,
        "output_tokens_mean": out_tokens / requests,
    }
    if windows:
        out.update(_mean_sd_cv([w.passes * out_tokens / w.duration_s for w in windows], "output_tokens_per_s"))
    if prefill_windows:
        rates = [w.passes * prompt_tokens / w.duration_s for w in prefill_windows]
        out.update(_mean_sd_cv(rates, "prefill_tokens_per_s"))
    measured = [w for w in windows if w.window is not None]
    pre = [w for w in prefill_windows if w.window is not None]
    if not measured or not pre:
        return out
    energies = [("", lambda w: w.window.energy_j)]
    if idle_power_w is not None:  # without an idle baseline, gross figures only
        energies.append(("dynamic_", lambda w: dynamic_energy_j(w.window, idle_power_w)))
    for prefix, energy in energies:
        out.update(
            _mean_sd_cv([energy(w) / (w.passes * out_tokens) for w in measured], f"{prefix}energy_j_per_output_token")
        )
        out.update(
            _mean_sd_cv(
                [energy(w) / (w.passes * prompt_tokens) for w in pre], f"{prefix}prefill_energy_j_per_prompt_token"
            )
        )
        per_pass = float(np.mean([energy(w) / w.passes for w in measured]))
        prefill_pass = float(np.mean([energy(w) / w.passes for w in pre]))
        if out_tokens > requests:
            out[f"{prefix}decode_energy_j_per_output_token"] = (per_pass - prefill_pass) / (out_tokens - requests)
    return out


def sequence_agreement(rows: list[list[int]], reference: list[list[int]]) -> tuple[float, float]:
    """Share of identical generated sequences, and the mean length (tokens) of their common prefix."""
    same, prefix = 0, []
    for a, b in zip(rows, reference, strict=True):
        prefix.append(next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))))
        same += a == b
    return same / len(rows), float(np.mean(prefix))


def _words(text: str) -> list[str]:
    import re
    import string

    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def reference_metrics(texts: list[str], references: list[str]) -> dict[str, float]:
    """Exact match and token F1 of generated text vs the reference (SQuAD's normalisation).

    Both are lower-cased and stripped of punctuation and articles before comparing words.
    """
    em, f1 = [], []
    for text, ref in zip(texts, references, strict=True):
        a, b = _words(text), _words(ref)
        em.append(float(a == b))
        common = sum(min(a.count(w), b.count(w)) for w in set(a))
        f1.append(float(a == b) if not a or not b else 2 * common / (len(a) + len(b)))
    return {"exact_match": float(np.mean(em)), "token_f1": float(np.mean(f1))}
