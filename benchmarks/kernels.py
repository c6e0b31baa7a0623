"""Shared by the kernel microbenchmarks (GPU machine): CUDA-graph timing, one Markdown row per kernel,
and the FFN up-projection's inputs (RoBERTa-base, bf16)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

HIDDEN, INTER = 768, 3072  # RoBERTa-base: the up-projection is HIDDEN -> INTER


def replay_us(fn, iters: int = 200) -> float:
    """Microseconds per call of fn, captured once in a CUDA graph of `iters` calls and replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return 1000 * start.elapsed_time(end) / (5 * iters)


def print_rows(label: str, runs: dict[str, Callable[[], torch.Tensor]], want: torch.Tensor, rate) -> None:
    """`| label | name | us/call | rate(us) | max error vs want |` per run; a run that fails is a FAILED row."""
    for name, fn in runs.items():
        try:
            err = (fn().float() - want).abs().max().item()
            us = replay_us(fn)
            print(f"| {label} | {name} | {us:.1f} | {rate(us)} | {err:.2e} |", flush=True)
        except Exception as e:  # noqa: BLE001 - a failing variant is a row, not the end of the table
            print(f"| {label} | {name} | FAILED: {type(e).__name__}: {str(e).splitlines()[0][:150]} | | |", flush=True)


def ffn_up_inputs(rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [rows, HIDDEN], weight [INTER, HIDDEN], bias (bf16), and gelu(linear) computed in fp32."""
    x = torch.randn(rows, HIDDEN, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(INTER, HIDDEN, device="cuda") / HIDDEN**0.5).to(torch.bfloat16)
    b = (0.1 * torch.randn(INTER, device="cuda")).to(torch.bfloat16)
    return x, w, b, linear_gelu(x.float(), w.float(), b.float())


def linear_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The model's up-projection as PyTorch runs it: a GEMM, then exact GELU (two kernels)."""
    return F.gelu(F.linear(x, w, b))


def tflops(rows: int) -> Callable[[float], str]:
    """The up-projection's TFLOP/s at `rows` rows, from microseconds per call."""
    return lambda us: f"{2 * rows * HIDDEN * INTER / us / 1e6:.0f}"
