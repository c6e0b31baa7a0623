"""Attention kernels on one padded batch (GPU machine): what each costs, and does it give masked attention?

RoBERTa-base heads (12 x 64), bf16, right-padded sequences whose real lengths are SST-2-like
(uniform in [S/4, S]). Each row is one attention call, timed over a CUDA-graph replay loop so launch
overhead is out; `max err` is the largest difference from fp32 masked attention over the real query
rows (padded query rows are never read by a classifier).

    python benchmarks/attention.py [--batches 1,8,64] [--seqs 32,128]

Rows: `sdpa <backend>` is PyTorch SDPA with the boolean mask transformers passes ([B, 1, S, S]),
forced to one backend; `padded_varlen` and `padded_triton` are ela's (ela.attention); `flash, no mask` ignores
padding, so it is NOT masked attention: it is only the lower bound of a FlashAttention call.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

from ela.runtime import attention
from ela.runtime.attention import KERNELS, TRITON, register

HEADS, DIM = 12, 64


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


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--seqs", default="32,128")
    a = ap.parse_args()
    torch.manual_seed(0)
    register(TRITON)
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, {HEADS} heads x {DIM}\n")
    print("| batch | seq | attention | us/call | max err vs fp32 masked |")
    print("|---|---|---|---|---|")
    for s in map(int, a.seqs.split(",")):
        for b in map(int, a.batches.split(",")):
            one_shape(b, s)


def one_shape(b: int, s: int) -> None:
    """Print one row per attention kernel at batch b, padded length s."""
    q, k, v = (torch.randn(b, HEADS, s, DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    lengths = torch.randint(s // 4, s + 1, (b,), device="cuda", dtype=torch.int32)
    real = torch.arange(s, device="cuda")[None, :] < lengths[:, None]  # [B, S], right padding
    mask = real[:, None, None, :].expand(b, 1, s, s)
    want = sdpa(q.float(), k.float(), v.float(), attn_mask=mask)
    # ela's layout: [B*S, H, D] slices of one [B*S, 3*H*D] tensor, as a compiled model's fused QKV matmul leaves them
    fused = torch.cat([t.transpose(1, 2).reshape(b * s, HEADS * DIM) for t in (q, k, v)], dim=1)
    qv, kv, vv = (part.view(b * s, HEADS, DIM) for part in fused.split(HEADS * DIM, dim=1))
    runs = {
        f"sdpa {be.name.lower()}": partial(_forced, be, q, k, v, mask)
        for be in (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH)
    }
    for name, kernel in KERNELS.items():
        runs[name] = partial(_ela, kernel, qv, kv, vv, lengths, s)
    for warps in (1, 2, 8):  # padded_triton at other warp counts (the default is above)
        runs[f"padded_triton, {warps} warps"] = partial(_ela, partial(_warps, warps), qv, kv, vv, lengths, s)
    runs["flash, no mask (bound only)"] = partial(_forced, SDPBackend.FLASH_ATTENTION, q, k, v, None)
    for name, fn in runs.items():
        try:
            got = fn()
            err = (got.float() - want).abs().transpose(1, 2)[real].max().item()
            print(f"| {b} | {s} | {name} | {replay_us(fn):.1f} | {err:.2e} |", flush=True)
        except RuntimeError as e:
            print(f"| {b} | {s} | {name} | FAILED: {str(e).splitlines()[0][:120]} | |", flush=True)


def _ela(kernel, q, k, v, lengths, s) -> torch.Tensor:
    return kernel(q, k, v, lengths, s, DIM**-0.5).view(-1, s, HEADS, DIM).transpose(1, 2)


def _warps(warps: int, *args) -> torch.Tensor:
    default, attention.TRITON_WARPS = attention.TRITON_WARPS, warps
    try:
        return attention.triton_short(*args)
    finally:
        attention.TRITON_WARPS = default


def _forced(backend: SDPBackend, q, k, v, mask) -> torch.Tensor:
    with sdpa_kernel(backend):
        return sdpa(q, k, v, attn_mask=mask)


if __name__ == "__main__":
    main()
