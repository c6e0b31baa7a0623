"""Greedy generation with a fixed workload: its config, a per-step clock, the prefill, and the engines.

Engines share one interface, `Generate(inputs, clock) -> new token ids [batch, steps]`, and report their
one-off setup time (compiling every prompt shape), measured here and never inside a timed window.
eager is transformers' `generate`; compile is `generate` with a static KV cache, which transformers
compiles for decoding (`torch.compile` of the one-token forward, CUDA graphs with reduce-overhead) while
the prefill runs eagerly.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ela import ElaError
from ela.runtime.data import Batches
from ela.runtime.engines import allow_recompiles, one_per_shape

if TYPE_CHECKING:  # config imports this package's choices: no import of config at run time
    from ela.config import EngineConfig, PrecisionConfig, TaskConfig

Clock = Callable[[], float]
Autocast = Callable[[], contextlib.AbstractContextManager]


class StepClock:
    """A logits processor that stamps every decoding step, device synchronised: TTFT and time per token.

    Stamp k is taken when the logits for output token k are ready (stamp 0: after the prefill). The
    first step's scores of the `keep` token ids (label words) are kept for next-token choice.
    """

    def __init__(self, sync: Callable[[], None], clock: Clock = time.perf_counter, keep: list[int] | None = None):
        self.sync, self.clock, self.keep = sync, clock, keep
        self.stamps: list[float] = []
        self.first: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Record the time (and, at the first step, the kept scores); the scores pass through unchanged."""
        self.sync()
        self.stamps.append(self.clock())
        if self.first is None and self.keep is not None:
            self.first = scores[:, self.keep].clone()  # copied to the CPU after generate, outside the steps
        return scores


Generate = Callable[[dict[str, torch.Tensor], StepClock | None], torch.Tensor]


KEPT = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version", "use_cache")


def neutral_defaults(model: torch.nn.Module, tokenizer) -> dict:
    """Neutral generation defaults in place of the checkpoint's; returns what was dropped (tagged on the run).

    `generate` fills every field its config leaves unset from the checkpoint's generation_config.json,
    so without this a repetition penalty or banned words of the checkpoint would shape the workload.
    """
    from transformers import GenerationConfig

    own = model.generation_config.to_diff_dict() if getattr(model, "generation_config", None) else {}
    model.generation_config = GenerationConfig(
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    default = GenerationConfig()
    neutral = {k for k, v in own.items() if k in KEPT or k.startswith("_") or v in (None, False)}
    return {k: v for k, v in own.items() if k not in neutral and getattr(default, k, None) != v}


def generation_config(task: TaskConfig, tokenizer, engine: EngineConfig, device: torch.device):
    """Greedy decoding of exactly max_new_tokens (unless stop_at_eos), nothing inherited from the checkpoint."""
    from transformers import CompileConfig, GenerationConfig

    n = task.max_new_tokens
    cfg = GenerationConfig(
        max_new_tokens=n,
        min_new_tokens=None if task.stop_at_eos else n,  # EOS suppressed until n: every config does the same work
        do_sample=False,
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if engine.name == "compile":
        cfg.cache_implementation = "static"
        mode = None if engine.compile_mode == "default" else engine.compile_mode
        cfg.compile_config = CompileConfig(fullgraph=engine.fullgraph, dynamic=False, mode=mode)
        if device.type != "cuda":  # transformers compiles only on accelerators unless told (its testing switch)
            cfg.compile_config._compile_all_devices = True
    else:
        cfg.disable_compile = True
    return cfg


def check(engine: EngineConfig, precision: PrecisionConfig) -> None:
    """Refuse an engine generation can't run (before the job waits for its device)."""
    if engine.name == "compile" and precision.autocast_dtype is not None:
        raise ElaError(
            f"engine=compile with precision={precision.name}: the static KV cache is allocated in the weights' dtype "
            f"({precision.weights_dtype}) and autocast writes {precision.autocast_dtype} keys into it (seen on an "
            "H200: index_copy_ dtype error); use precision=bf16_pure / fp16_pure (weights cast), or fp32"
        )
    if engine.name == "cudagraph":
        raise ElaError(
            "engine=cudagraph captures one forward per shape, not a decoding loop; for task=generation use "
            "engine=compile engine.compile_mode=reduce-overhead (static KV cache, a CUDA graph per decoding step)"
        )
    if engine.name == "compile" and engine.freezing:
        raise ElaError(
            "engine.freezing=true can't compile generation: inductor's freezing aborts the process with a static "
            "KV cache (torch 2.13, CPU); pass engine.freezing=false (the default with task=generation)"
        )


def build(
    engine: EngineConfig,
    model: torch.nn.Module,
    autocast: Autocast,
    batches: Batches,
    task: TaskConfig,
    tokenizer,
    device: torch.device,
    sync: Callable[[], None],
) -> tuple[Generate, float]:
    """The engine's generate function and its setup seconds (every prompt shape compiled first)."""
    config = generation_config(task, tokenizer, engine, device)

    def generate(inputs: dict[str, torch.Tensor], clock: StepClock | None = None) -> torch.Tensor:
        with torch.inference_mode(), autocast():
            out = model.generate(**inputs, generation_config=config, logits_processor=[clock] if clock else None)
        return out[:, inputs["input_ids"].shape[1] :]

    if engine.name == "eager":
        return generate, 0.0
    t0 = time.perf_counter()
    shapes = one_per_shape(batches)
    allow_recompiles(2 * len(shapes))
    for inputs in shapes:  # compile (and with reduce-overhead record graphs) for every prompt shape now
        generate(inputs)
        generate(inputs)
    sync()
    return generate, time.perf_counter() - t0


def make_prefill(model: torch.nn.Module, autocast: Autocast) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """The prompt's forward pass alone, as generate runs it: positions from the mask, last position's logits."""
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

    def prefill(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens start at 0
        with torch.inference_mode(), autocast():
            out = model(**inputs, position_ids=positions, use_cache=False, **keep)
        return out.logits[:, -1]

    return prefill


def output_lengths(rows: list[list[int]], eos_id: int | None, stop_at_eos: bool) -> list[int]:
    """Tokens each sequence really generated: up to and including its first EOS when stopping at EOS."""
    if not stop_at_eos or eos_id is None:
        return [len(r) for r in rows]
    return [r.index(eos_id) + 1 if eos_id in r else len(r) for r in rows]
