"""Greedy generation with a fixed workload: its config, a per-step clock, the prefill, and the engines.

Engines share one interface, `Generate(inputs, clock) -> new token ids [batch, steps]`, and report their
one-off setup time (compiling or capturing every prompt shape), measured here and never inside a timed
window. eager is transformers' `generate`; compile and cudagraph are ela's own loop over a static KV
cache (`ela.runtime.decode`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ela import ElaError, interrupt
from ela.runtime.data import Batches
from ela.runtime.device import Autocast
from ela.runtime.engines import allow_recompiles, inductor_options, one_per_shape

if TYPE_CHECKING:  # config imports this package's choices: no import of config at run time
    from ela.config import EngineConfig, ModelConfig, PrecisionConfig, TaskConfig

Clock = Callable[[], float]


class StepClock:
    """Stamps every decoding step (TTFT, time per token): a logits processor, or `mark()`ed by ela's loop.

    Stamp k is taken when output token k is ready (stamp 0: after the prefill). With `events` (CUDA),
    each mark records a CUDA event instead of synchronising, so the device's queue never drains between
    steps; `resolve()` turns them into times after the caller's final synchronisation. Without, each mark
    synchronises and reads `clock`. The first step's scores of the `keep` token ids are kept (choice).
    """

    def __init__(
        self,
        sync: Callable[[], None],
        clock: Clock = time.perf_counter,
        keep: list[int] | None = None,
        events: bool = False,
    ):
        self.sync, self.clock, self.keep, self.events = sync, clock, keep, events
        self.stamps: list[float] = []
        self.first: torch.Tensor | None = None
        self._events: list[torch.cuda.Event] = []
        self._t0 = 0.0

    def begin(self) -> float:
        """The generation starts now (device idle): its host time, and with events a start event."""
        self._t0 = self.clock()
        if self.events:
            self._events = [torch.cuda.Event(enable_timing=True)]
            self._events[0].record()
        return self._t0

    def mark(self) -> None:
        """One more output token is ready."""
        if self.events:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._events.append(event)
        else:
            self.sync()
            self.stamps.append(self.clock())

    def resolve(self) -> list[float]:
        """Every token's time (host seconds); call after the device is synchronised."""
        if self.events and len(self._events) > 1:
            start = self._events[0]
            self.stamps = [self._t0 + start.elapsed_time(e) / 1000.0 for e in self._events[1:]]
        return self.stamps

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """As a logits processor: mark (and, at the first step, keep scores); the scores pass unchanged."""
        self.mark()
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


def generation_config(task: TaskConfig, tokenizer):
    """Greedy decoding of exactly max_new_tokens (unless stop_at_eos), nothing inherited from the checkpoint."""
    from transformers import GenerationConfig

    n = task.max_new_tokens
    return GenerationConfig(
        max_new_tokens=n,
        min_new_tokens=None if task.stop_at_eos else n,  # EOS suppressed until n: every config does the same work
        do_sample=False,
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        disable_compile=True,  # eager is eager: compiled decoding is ela's own loop (ela.runtime.decode)
    )


def check(
    engine: EngineConfig,
    task: TaskConfig | None = None,
    model: ModelConfig | None = None,
    precision: PrecisionConfig | None = None,
) -> None:
    """Refuse an engine, attention or precision generation can't run (before the job waits for its device)."""
    from ela.runtime import attention

    if precision is not None and precision.linear is not None:
        raise ElaError(
            f"precision={precision.name} (float8 linear layers) is for task=classification so far; "
            "for task=generation use bf16_pure or fp16_pure"
        )
    if model is not None and model.attn_implementation in attention.PADDED:
        raise ElaError(
            f"model.attn_implementation={model.attn_implementation} needs right padding; "
            "task=generation pads prompts on the left: use model.attn_implementation=sdpa"
        )
    if engine.name != "eager" and task is not None and task.stop_at_eos:
        raise ElaError(
            f"engine={engine.name} decodes a fixed number of tokens with no per-step check of the device "
            "(that check is what makes eager generate launch-bound); task.stop_at_eos=true needs engine=eager"
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
    sync: Callable[[], None],
) -> tuple[Generate, Callable[[dict[str, torch.Tensor]], torch.Tensor], float]:
    """The engine's generate and prefill functions and its setup seconds (every prompt shape prepared first).

    eager: transformers' `generate` (dynamic cache) and a plain forward of the prompt. compile and
    cudagraph: ela's decoding loop over a static cache (`ela.runtime.decode`), prefill included.
    """
    if engine.name == "eager":
        config = generation_config(task, tokenizer)

        def generate(inputs: dict[str, torch.Tensor], clock: StepClock | None = None) -> torch.Tensor:
            with torch.inference_mode(), autocast():
                out = model.generate(**inputs, generation_config=config, logits_processor=[clock] if clock else None)
            return out[:, inputs["input_ids"].shape[1] :]

        return generate, make_prefill(model, autocast), 0.0
    from ela.runtime.decode import StaticDecoder

    t0 = time.perf_counter()
    decoder = StaticDecoder(model, autocast, task.max_new_tokens, tokenizer.eos_token_id, *decoding(engine))
    shapes = one_per_shape(batches)
    allow_recompiles(2 * len(shapes))  # a prefill and a step per shape
    with inductor_options(engine):
        for inputs in shapes:  # compile or capture every prompt shape now, never inside a window
            interrupt.check()  # a stop request waits for one shape, not for all of them
            decoder.prepare(inputs)
    sync()
    return decoder, decoder.prefill, time.perf_counter() - t0


# compile_mode -> (torch.compile mode, ela captures CUDA graphs): CUDA graphs are always ela's own, one
# per prompt shape, never inductor's graph trees (they re-check guards and copy inputs at every step).
COMPILE = {
    "default": (None, False),
    "reduce-overhead": (None, True),
    "max-autotune": ("max-autotune-no-cudagraphs", True),
    "max-autotune-no-cudagraphs": ("max-autotune-no-cudagraphs", False),
}


def decoding(engine: EngineConfig) -> tuple[dict | None, bool]:
    """How ela's decoding loop runs an engine: torch.compile arguments (None: eager), and capture or not."""
    if engine.name == "cudagraph":
        return None, True
    mode, capture = COMPILE[engine.compile_mode or "default"]
    return {"fullgraph": engine.fullgraph, "mode": mode}, capture


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
