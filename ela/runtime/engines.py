"""Execution engines with one interface: eager, torch.compile, and captured CUDA graphs.

Each returns a forward function `inputs -> logits` and its one-off setup time (compilation or
capture for every padded shape), which is measured here and never inside a timed window.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ela import ElaError, interrupt
from ela.measure.loops import Forward, make_forward
from ela.runtime.data import Batches, shape_key
from ela.runtime.device import Autocast

if TYPE_CHECKING:  # config imports this module's choices: no import of config at run time
    from ela.config import EngineConfig


NAMES = ("eager", "compile", "cudagraph")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def build(
    engine: EngineConfig,
    model: torch.nn.Module,
    autocast: Autocast,
    batches: Batches,
    device: torch.device,
    sync: Callable[[], None],
) -> tuple[Forward, float]:
    """The engine's forward function and its setup seconds (every padded shape prepared)."""
    check(engine, device.type)
    t0 = time.perf_counter()
    if engine.name == "eager":
        return make_forward(model, autocast), 0.0
    if engine.name == "compile":
        shapes = one_per_shape(batches)
        forward = make_forward(compiled_module(engine, model), autocast)
        compile_shapes(forward, shapes, engine)
        sync()
        return forward, time.perf_counter() - t0
    forward = _cuda_graphs(model, autocast, batches, device)
    sync()
    return forward, time.perf_counter() - t0


def compiled_module(engine: EngineConfig, model: torch.nn.Module) -> torch.nn.Module:
    """`torch.compile` as ela uses it: one static graph per padded shape, a graph break an error."""
    # dynamic=False: kernels specialised to each shape, as buckets intend; fullgraph=True turns a graph
    # break into an error instead of silently running parts eagerly.
    return torch.compile(
        model,
        mode=None if engine.compile_mode == "default" else engine.compile_mode,
        dynamic=False,
        fullgraph=engine.fullgraph,
    )


def compile_shapes(forward: Forward, shapes: list[dict[str, torch.Tensor]], engine: EngineConfig) -> None:
    """Compile each shape now, not inside a window."""
    allow_recompiles(len(shapes))
    # freezing: inductor folds the weights in as constants (autocast's per-call weight casts go away).
    with inductor_options(engine):
        for inputs in shapes:
            interrupt.check()  # a stop request waits for one shape's compile, not for all of them
            forward(inputs)
            forward(inputs)  # reduce-overhead records its graph on a later call


def check(engine: EngineConfig, device_type: str) -> None:
    """Refuse an engine the device type can't run (before a job waits for its device)."""
    if engine.name == "cudagraph" and device_type != "cuda":
        raise ElaError("engine=cudagraph captures CUDA graphs and needs a CUDA GPU; use engine=eager or compile on CPU")
    if engine.name == "compile" and engine.compile_mode == "reduce-overhead" and device_type != "cuda":
        raise ElaError("engine.compile_mode=reduce-overhead uses CUDA graphs; on CPU use compile_mode=default")


def inductor_options(engine: EngineConfig) -> contextlib.AbstractContextManager:
    """Inductor's settings while an engine compiles: freezing, coordinate-descent tuning."""
    return torch._inductor.config.patch(freezing=engine.freezing, coordinate_descent_tuning=engine.coordinate_descent)


_GRAPHS = [0]  # graphs asked for since dynamo's last reset (kept engines keep theirs across jobs)


def allow_recompiles(shapes: int) -> None:
    """Let dynamo compile these shapes too: past its recompile limit it would silently run eager code.

    Counted since the last `reset_graphs()`: models of one class share their forward's code, so graphs
    of earlier (kept) engines count towards the same limit.
    """
    _GRAPHS[0] += shapes
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), _GRAPHS[0] + 1))


def reset_graphs() -> None:
    """Drop every compiled graph of this process (`torch._dynamo.reset()`) and their count."""
    torch._dynamo.reset()
    _GRAPHS[0] = 0


def one_per_shape(batches: Batches) -> list[dict[str, torch.Tensor]]:
    """One batch of each distinct input shape (what a static-shape engine prepares)."""
    seen: dict[tuple, dict[str, torch.Tensor]] = {}
    for inputs in batches.inputs:
        seen.setdefault(shape_key(inputs), inputs)
    return list(seen.values())


def _cuda_graphs(model, autocast, batches: Batches, device: torch.device) -> Forward:
    """Capture one graph per input shape into a shared memory pool; forward copies inputs and replays."""
    pool = torch.cuda.graph_pool_handle()
    graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], torch.Tensor]] = {}
    stream = torch.cuda.Stream(device)
    for inputs in one_per_shape(batches):
        interrupt.check()
        static = {k: v.clone() for k, v in inputs.items()}
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode(), autocast():
            for _ in range(3):  # warm-up on a side stream, as capture requires
                model(**static)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool), torch.inference_mode(), autocast():
            out = model(**static).logits
        graphs[shape_key(inputs)] = (graph, static, out)

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        graph, static, out = graphs[shape_key(inputs)]
        for k, v in inputs.items():
            static[k].copy_(v)
        graph.replay()
        return out  # overwritten by the next replay: callers copy what they keep before that

    return forward
