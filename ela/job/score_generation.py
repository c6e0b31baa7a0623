"""Score a generation job (task=generation): its metrics, warnings and tags, for `ela.job.score`."""

from __future__ import annotations

import json

import numpy as np

from ela import schema as s
from ela.config import JobConfig
from ela.job.results import Raw
from ela.measure.metrics import accuracy_metrics, generation_metrics, reference_metrics, sequence_agreement
from ela.runtime.generation import decoding, output_lengths

AGREEMENT_TOLERANCE = 0.005  # engines may differ from eager in the last bits; more than this is flagged


def generation_metrics_of(job: JobConfig, raw: Raw, m: dict[str, float]) -> list[str]:
    """TTFT, TPOT, per-token energy, quality and agreement of a generation job."""
    g, loaded, task, warnings = raw.generated, raw.loaded, job.task, []
    batches = loaded.batches
    sizes = [int(b["input_ids"].shape[0]) for b in batches.inputs]
    idle = raw.idle.power_w if raw.idle else None
    m.update(
        generation_metrics(
            g.passes.ttft_ms,
            g.passes.step_ms,
            sizes,
            g.lengths,
            sum(batches.token_lengths),
            raw.windows,
            g.prefill_windows,
            idle,
        )
    )
    m["num_samples"] = len(g.lengths)
    if task.scoring == "choice":
        reference = g.reference_choice.argmax(-1) if g.reference_choice is not None else None
        m.update(accuracy_metrics(g.passes.choice, loaded.targets, reference))
    elif task.scoring == "reference":
        m.update(reference_metrics(g.texts, g.references))
    rows = [r[:n] for r, n in zip(g.tokens, g.lengths, strict=True)]
    if job.precision.name == "fp32" and job.measure.fp32_reference:  # this run is the fp32 reference
        if task.scoring == "choice":
            m[s.AGREE_FP32] = 1.0
        m[s.GEN_AGREE_FP32], m[s.GEN_PREFIX_FP32] = 1.0, float(np.mean(g.lengths))
    elif g.reference_tokens is not None:
        m[s.GEN_AGREE_FP32], m[s.GEN_PREFIX_FP32] = sequence_agreement(rows, _cut(g.reference_tokens, g, task))
    if g.eager_tokens is not None:
        m[s.GEN_AGREE_EAGER], _ = sequence_agreement(rows, _cut(g.eager_tokens, g, task))
        if m[s.GEN_AGREE_EAGER] < 1.0 - AGREEMENT_TOLERANCE:
            warnings.append(
                f"engine={job.engine.name}: greedy outputs equal to eager generate's for only "
                f"{m[s.GEN_AGREE_EAGER]:.4f} of prompts"
            )
    if g.ignored:
        warnings.append(f"the checkpoint's generation settings {sorted(g.ignored)} were not used (greedy decoding)")
    if not task.stop_at_eos and any(n != task.max_new_tokens for n in g.lengths):
        warnings.append(f"some sequences did not generate task.max_new_tokens={task.max_new_tokens} tokens")
    return warnings


def _cut(rows: list[list[int]], g, task) -> list[list[int]]:
    """Reference outputs cut where their own sequence ended (their first EOS when stopping at EOS)."""
    return [r[:n] for r, n in zip(rows, output_lengths(rows, g.eos_id, task.stop_at_eos), strict=True)]


def generation_tags(job: JobConfig) -> dict[str, str]:
    """How a generation job's figures were obtained, and the workload every configuration shares."""
    task = job.task
    accuracy = {
        "choice": f"next-token choice among {json.dumps(task.label_words)} from the first step's scores (the "
        "prompt's last position) in the first timed pass, vs dataset labels",
        "reference": "generated text vs the label column: exact match and token F1 (lower-cased, no punctuation "
        "or articles)",
        "none": "no quality figure (task.scoring=none)",
    }[task.scoring]
    length = "stops at EOS (tokens counted)" if task.stop_at_eos else "min_new_tokens = max_new_tokens (fixed)"
    return {
        "ela.method.latency": "perf_counter around each batch's whole generate, device synchronised before and "
        f"after, passes over >= {job.measure.min_window_s:g} s; TTFT and TPOT from a stamp at every decoding "
        "step: a CUDA event on a GPU (nothing synchronised between steps), perf_counter on a CPU",
        "ela.method.cost": "energy windows over whole generations: window time / requests, no per-batch sync",
        "ela.method.accuracy": accuracy,
        "ela.method.prefill_energy": "windows of the engine's prefill alone / real prompt tokens (eager: a "
        "forward of the prompt, no KV cache written; compile, cudagraph: the prompt into the static cache)",
        "ela.method.decode_energy": "subtraction: (whole-generation window energy - prefill window energy) per "
        "pass / tokens decoded after the first (optimum-benchmark's method)",
        "ela.generation": f"greedy, {task.max_new_tokens} new tokens, {length}, "
        + (
            "transformers' generate, dynamic KV cache"
            if job.engine.name == "eager"
            else "ela's decoding loop, static KV cache, " + decoding_words(job.engine)
        )
        + (", chat template" if task.chat_template else ""),
        "ela.prompt": task.prompt,
    }


def decoding_words(engine) -> str:
    """How a static-cache engine ran the prefill and step, in words (tag ela.generation)."""
    compile, capture = decoding(engine)
    how = "eager" if compile is None else f"compiled (torch.compile mode={compile['mode'] or 'default'})"
    return f"prefill and step {how}" + (", each captured in a CUDA graph per prompt shape" if capture else "")
