"""A generation job's measured order (task=generation): the same phases as a classifier's, for decoder LMs.

Load (prompts checked before the weights), fp32 and eager references (untimed), precision, engine setup,
idle power, warm-up, timed generations (TTFT and every token's time), then energy windows over whole
generations and over the prefill alone. Scoring is in `ela.job.score`.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from ela import ElaError
from ela.job.phases import Phases
from ela.job.pipeline import loaded_split
from ela.job.results import Generated, Loaded, Raw
from ela.measure.loops import generation_passes, warmup
from ela.runtime import attention, generation, prompts
from ela.runtime.data import label_targets, load_split
from ela.runtime.fuse import fuse_projections
from ela.runtime.models import check_task, load_model, load_tokenizer, model_config, stock_kernels


def load_generation(job, device: torch.device) -> tuple[Loaded, torch.nn.Module, object, list[int] | None]:
    """Split, label targets, tokenizer, prompts (each checked against the context), then the weights."""
    task = job.task
    check_task(job.model, task.name)
    split = load_split(job.dataset)
    targets: list[int] = []
    if task.scoring == "choice":  # label i is word i: the words stand in for a classifier's label names
        targets = label_targets(split.labels, job.dataset, {i: w.strip() for i, w in enumerate(task.label_words)})
    tokenizer = load_tokenizer(job.model, task.name)
    label_ids = prompts.label_word_ids(tokenizer, task.label_words) if task.scoring == "choice" else None
    texts = prompts.build(split.texts, task, tokenizer, job.dataset.text_column)
    context = int(getattr(model_config(job.model), "max_position_embeddings", 0) or 0)
    batches = prompts.batches(tokenizer, texts, job.batch, job.model, job.engine, task, context, job.dataset.order)
    if task.scoring == "reference" and any(isinstance(v, int) for v in split.labels):
        raise ElaError(
            f"task.scoring=reference compares generated text with the text of dataset.label_column="
            f"{job.dataset.label_column!r}, which holds integer labels: point it at a text column, or use "
            "task.scoring=choice with task.label_words"
        )
    loaded = load_model(job.model, task.name, tokenizer)
    return loaded_split(split, batches.to(device), targets, loaded), loaded.model.to(device), tokenizer, label_ids


def _untimed(generate, batches, keep: list[int] | None) -> tuple[list[list[int]], torch.Tensor | None]:
    """One untimed pass: each sample's new tokens and (with keep) its first-step label-word scores."""
    tokens, choice = [], []
    for inputs in batches.inputs:
        clock = generation.StepClock(lambda: None, keep=keep)
        tokens += generate(inputs, clock).cpu().tolist()
        if clock.first is not None:
            choice.append(clock.first.float().cpu())
    return tokens, torch.cat(choice) if choice else None


def measure_generation(ph: Phases) -> Raw:
    """Every phase of a generation job, in the order measured."""
    job, me, sync, device = ph.job, ph.job.measure, ph.sync, ph.device
    ph.step("load")
    loaded, model, tokenizer, keep = load_generation(job, device)
    batches, task = loaded.batches, job.task
    ignored = generation.neutral_defaults(model, tokenizer)  # the checkpoint's sampling settings play no part
    eager = replace(job.engine, name="eager", compile_mode=None)
    ref_tokens = ref_choice = eager_tokens = None
    # References are transformers' own: its generate, with its sdpa in place of ela's attention (if any)

    def outputs(net: torch.nn.Module, amp) -> tuple[list[list[int]], torch.Tensor | None]:
        with stock_kernels(net):  # with keep in both kinds: an fp32 job's eager reference is the fp32 reference
            gen, _, _ = generation.build(eager, net, amp, batches, task, tokenizer, sync)
            return _untimed(gen, batches, keep)

    if me.fp32_reference and job.precision.name != "fp32":  # eager, fp32 weights, no autocast
        ref_tokens, ref_choice = ph.reference("fp32", batches, lambda: outputs(model, contextlib.nullcontext))
    model = ph.apply_precision(model)
    if job.engine.name != "eager" or job.model.attn_implementation in attention.NAMES or job.model.fuse_projections:
        eager_tokens, _ = ph.reference("eager", batches, lambda: outputs(model, ph.amp))
    ph.step(f"engine setup ({job.engine.name})")
    fused = fuse_projections(model) if job.model.fuse_projections else None  # after the eager reference
    gen, prefill, setup_s = generation.build(job.engine, model, ph.amp, batches, task, tokenizer, sync)
    ph.measure_idle()
    ph.step("warm-up")

    def whole(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return gen(inputs, None)

    ph.expect(warmup(whole, batches, me.warmup_batches, sync), batches.num_samples)  # prefill windows: extra
    warmup(prefill, batches, 0, sync)  # the prefill windows' forward has shapes of its own to warm up
    ph.step("timed generations")
    # On a GPU every token is stamped with a CUDA event: no synchronisation between steps inside the timing.
    events = device.type == "cuda"
    passes = generation_passes(gen, batches, sync, me.min_window_s, keep=keep, on_pass=ph.tick, events=events)
    windows = ph.windows({"window": whole, "prefill window": prefill}, batches)
    rows = [row for t in passes.tokens for row in t.tolist()]  # batches that stopped early are shorter
    lengths = generation.output_lengths(rows, tokenizer.eos_token_id, task.stop_at_eos)
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(rows, lengths, strict=True)]
    refs = [str(loaded.split.labels[i]) for i in batches.indices] if task.scoring == "reference" else None
    generated = Generated(
        passes=passes,
        prefill_windows=windows["prefill window"],
        tokens=rows,
        lengths=lengths,
        texts=texts,
        reference_tokens=ref_tokens,
        eager_tokens=eager_tokens,
        reference_choice=ref_choice,
        references=refs,
        eos_id=tokenizer.eos_token_id,
        ignored=ignored,
        fused=fused,
    )
    return ph.raw(
        loaded,
        reference=None,
        eager_ref=None,
        setup_s=setup_s,
        lat=None,
        windows=windows["window"],
        generated=generated,
    )
