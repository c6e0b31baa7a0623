"""ela's own greedy decoding loop over a static KV cache: what engine=compile and engine=cudagraph run.

transformers' `generate` is launch-bound and synchronises the device at every step (its stopping check
reads a GPU tensor), so a compiled forward inside it still waits on Python. Here one prompt shape
(batch, padded length) owns a static cache, a constant attention mask (prompt mask, then ones: the cache's
causal mask hides the positions not written yet) and two functions, the prefill and the one-token step
(forward, EOS suppressed as `min_new_tokens` does, argmax). They run eagerly or through `torch.compile`
(`compile`), and with `capture` ela records each into a CUDA graph per shape (engine=cudagraph: the eager
functions; engine=compile with reduce-overhead: the compiled ones, where inductor's own CUDA graph trees
would re-check guards and copy inputs in Python at every step). Steps are queued back to back: the only
synchronisation is the caller's, after the last token, and step times come from CUDA events
(`StepClock` with events).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ela import ElaError
from ela.runtime.device import Autocast


@dataclass
class _Shape:
    """What one prompt shape owns: its cache, mask and prepared functions."""

    cache: object
    mask: torch.Tensor  # [batch, prompt + new]: the prompt's padding mask, then ones
    prefill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, positions) -> last logits
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (token [b,1], positions [b,1]) -> next token


class StaticDecoder:
    """Greedy decoding of exactly `new_tokens` per prompt; `prepare(inputs)` readies a shape (setup time).

    compile: `torch.compile` keyword arguments for the prefill and the step (None: eager); capture: record
    them into CUDA graphs (a GPU only).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        autocast: Autocast,
        new_tokens: int,
        eos_id: int | None,
        compile: dict | None = None,
        capture: bool = False,
    ):
        self.model, self.autocast, self.n, self.capture = model, autocast, new_tokens, capture
        device = next(model.parameters()).device  # a device constant: no host copy inside a graph
        self.eos = torch.tensor([eos_id] if eos_id is not None else [], dtype=torch.long, device=device)
        self.shapes: dict[tuple[int, int], _Shape] = {}
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
        self.keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # prefill: last position only
        self.run_prefill, self.run_step = self._prefill_fn, self._step_fn
        if compile is not None:  # compiled once here: dynamo specialises (and recompiles) per shape
            self.run_prefill = torch.compile(self._prefill_fn, dynamic=False, **compile)
            self.run_step = torch.compile(self._step_fn, dynamic=False, **compile)

    # The two functions every engine runs; `cache` and `mask` are per shape, positions per call.
    def _prefill_fn(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        kw = {self.cache_kw: cache, **self.keep}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kw)
        return out.logits[:, -1]

    def _step_fn(self, token: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        kw = {self.cache_kw: cache}
        out = self.model(input_ids=token, attention_mask=mask, position_ids=positions, use_cache=True, **kw)
        return self._pick(out.logits[:, -1])

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """Greedy choice with EOS suppressed (min_new_tokens = new_tokens: every config does the same work)."""
        if self.eos.numel():
            logits = logits.index_fill(-1, self.eos, float("-inf"))
        return logits.argmax(-1, keepdim=True)

    def prepare(self, inputs: dict[str, torch.Tensor]) -> None:
        """Ready one prompt shape: cache allocated by an eager prefill, then compiled or captured."""
        from transformers import StaticCache

        ids = inputs["input_ids"]
        b, p = ids.shape
        if (b, p) in self.shapes:
            return
        cache = StaticCache(config=self.model.config, max_cache_len=p + self.n)
        _values_in_own_dtype(cache)
        mask = torch.ones(b, p + self.n, dtype=inputs["attention_mask"].dtype, device=ids.device)
        try:
            with torch.inference_mode(), self.autocast():  # allocates the cache in the dtype the layers write
                self._prefill_fn(ids, _prompt_positions(inputs["attention_mask"]), mask, cache)
        except RuntimeError as err:
            if "index_copy_" not in str(err):
                raise
            raise ElaError(
                f"this transformers' static KV cache can't hold autocast's mixed key/value dtypes ({err}); use a "
                "precision that casts the weights (bf16_pure, fp16_pure) or fp32, or a newer transformers"
            ) from err
        if self.capture:
            shape = self._capture(cache, mask, b, p, ids.device)
        else:
            shape = _Shape(
                cache,
                mask,
                lambda i, pos: self.run_prefill(i, pos, mask, cache),
                lambda t, pos: self.run_step(t, pos, mask, cache),
            )
        self.shapes[(b, p)] = shape
        for _ in range(2):  # compile (or run the captured graphs) before anything is timed
            self(inputs)

    def _capture(self, cache, mask: torch.Tensor, b: int, p: int, device: torch.device) -> _Shape:
        """CUDA graphs of the prefill and step (compiled first if asked), inputs copied into static buffers."""
        ids_in = torch.zeros(b, p, dtype=torch.long, device=device)
        pos_in = torch.zeros(b, p, dtype=torch.long, device=device)
        tok_in = torch.zeros(b, 1, dtype=torch.long, device=device)
        step_pos = torch.zeros(b, 1, dtype=torch.long, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode(), self.autocast():
            for _ in range(3):  # warm-up (and compilation) on a side stream, as capture requires
                cache.reset()
                self.run_prefill(ids_in, pos_in, mask, cache)
                self.run_step(tok_in, step_pos, mask, cache)
        torch.cuda.current_stream(device).wait_stream(stream)
        pool = torch.cuda.graph_pool_handle()
        g_prefill, g_step = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        try:
            with torch.inference_mode(), self.autocast():
                with torch.cuda.graph(g_prefill, pool=pool):
                    logits = self.run_prefill(ids_in, pos_in, mask, cache)
                with torch.cuda.graph(g_step, pool=pool):
                    token = self.run_step(tok_in, step_pos, mask, cache)
        except RuntimeError as err:
            raise ElaError(f"could not capture this model's decoding step in a CUDA graph ({err})") from err

        def prefill(i: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            ids_in.copy_(i)
            pos_in.copy_(pos)
            g_prefill.replay()
            return logits

        def step(t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            tok_in.copy_(t)
            step_pos.copy_(pos)
            g_step.replay()
            return token

        return _Shape(cache, mask, prefill, step)

    def _begin(self, inputs: dict[str, torch.Tensor]) -> tuple[_Shape, torch.Tensor]:
        """The shape's state reset for a new batch; returns it and the logits of the prompt's last position."""
        shape = self.shapes.get(tuple(inputs["input_ids"].shape))
        if shape is None:
            raise ElaError(f"decoding shape {tuple(inputs['input_ids'].shape)} was not prepared (engine setup)")
        attention = inputs["attention_mask"]
        shape.cache.reset()  # its write position back to 0 (stale keys are masked, zeroed here all the same)
        shape.mask[:, : attention.shape[1]].copy_(attention)
        return shape, shape.prefill(inputs["input_ids"], _prompt_positions(attention))

    def prefill(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The engine's prefill alone (the prompt into the cache): the prefill window's workload."""
        with torch.inference_mode(), self.autocast():
            return self._begin(inputs)[1]

    def __call__(self, inputs: dict[str, torch.Tensor], clock=None) -> torch.Tensor:
        """New token ids [batch, new_tokens]; `clock.mark()` after each token, `clock.keep` scores of the first."""
        with torch.inference_mode(), self.autocast():
            shape, logits = self._begin(inputs)
            if clock is not None and clock.keep is not None:
                clock.first = logits[:, clock.keep].float()
            out = torch.empty(logits.shape[0], self.n, dtype=torch.long, device=logits.device)
            out[:, :1] = self._pick(logits)
            if clock is not None:
                clock.mark()
            base = inputs["attention_mask"].sum(-1, keepdim=True)  # each sequence's first new position
            for j in range(1, self.n):
                out[:, j : j + 1] = shape.step(out[:, j - 1 : j], base + (j - 1))
                if clock is not None:
                    clock.mark()
        return out


def _values_in_own_dtype(cache) -> None:
    """Each static layer's values in their own dtype, as transformers 5.2x allocates them.

    transformers 5.17 allocates both in the keys' dtype; under autocast RoPE leaves the keys in fp32 while
    the values come out of a bf16 matmul, so the first write fails. Values are reallocated (and marked
    static again, as the cache does) right after the layer's own lazy initialisation.
    """
    for layer in getattr(cache, "layers", []):
        init = getattr(layer, "lazy_initialization", None)
        if init is None:
            continue

        def lazy(keys: torch.Tensor, values: torch.Tensor, init=init, layer=layer) -> None:
            init(keys, values)
            if layer.values.dtype != values.dtype:
                layer.values = torch.zeros_like(layer.values, dtype=values.dtype)
                if not torch.compiler.is_compiling():
                    torch._dynamo.mark_static_address(layer.values)

        layer.lazy_initialization = lazy


def _prompt_positions(mask: torch.Tensor) -> torch.Tensor:
    """Left padding: each sequence's real tokens at positions 0.. (as generate computes them)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
