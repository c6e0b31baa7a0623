"""The feed-forward up-projection + GELU on one batch (GPU machine): what each way of computing it costs.

RoBERTa-base's up-projection (768 -> 3072, bias, exact GELU), bf16, at batch x 32 tokens rows. Each row
is one call, timed over a CUDA-graph replay loop so launch overhead is out; `max err` is the largest
difference from the same computation in fp32.

    python benchmarks/ffn.py [--rows 32,256,2048,8192]

Rows: `cuBLAS linear only` has no GELU (a bound, not the computation); `cuBLAS linear, then GELU` is
eager PyTorch (two kernels); `inductor ...` is torch.compile of gelu(linear(x)) (default: cuBLAS plus
a Triton GELU kernel, what ela's compile engine runs without fused_gelu; max-autotune: inductor's own
Triton GEMM templates with the GELU fused in, where it picks them); `cuBLASLt GELU epilogue` is
torch._addmm_activation, whose GELU is the tanh approximation (NOT the model's exact GELU: a bound);
`ela fused_gelu` is ela.ffn's kernel, autotuned, then each of its tile configs alone.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
import torch.nn.functional as F
from attention import replay_us

from ela import ffn

HIDDEN, INTER = 768, 3072


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="32,256,2048,8192", help="batch x tokens: b1, b8, b64 at 32 tokens; b64 x 128")
    ap.add_argument("--no-autotune", action="store_true", help="skip inductor max-autotune (minutes per shape)")
    a = ap.parse_args()
    torch.manual_seed(0)
    op, kernel, _ = ffn._triton_op()
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, {HIDDEN} -> {INTER} + GELU\n")
    print("| rows | computation | us/call | TFLOP/s | max err vs fp32 |")
    print("|---|---|---|---|---|")
    for m in map(int, a.rows.split(",")):
        x = torch.randn(m, HIDDEN, device="cuda", dtype=torch.bfloat16)
        w = (torch.randn(INTER, HIDDEN, device="cuda") / HIDDEN**0.5).to(torch.bfloat16)
        b = (0.1 * torch.randn(INTER, device="cuda")).to(torch.bfloat16)
        want = F.gelu(F.linear(x.float(), w.float(), b.float()))
        runs = {
            "cuBLAS linear only (no GELU: bound)": partial(F.linear, x, w, b),
            "cuBLAS linear, then GELU": partial(linear_gelu, x, w, b),
            "inductor gelu(linear) (compile default)": compiled(None, x, w, b),
        }
        if not a.no_autotune:
            runs["inductor gelu(linear) (max-autotune)"] = compiled("max-autotune-no-cudagraphs", x, w, b)
        runs["cuBLASLt GELU epilogue (tanh approx: bound)"] = partial(
            torch._addmm_activation, b, x, w.t(), use_gelu=True
        )
        runs["ela fused_gelu (autotuned)"] = partial(op, x, w, b)
        for bm, bn, bk, stages, warps in ffn.CONFIGS:
            meta = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, num_stages=stages, num_warps=warps)
            runs[f"ela fused_gelu {bm}x{bn}x{bk} s{stages} w{warps}"] = partial(ffn.launch, kernel, x, w, b, **meta)
        for name, fn in runs.items():
            try:
                t0 = time.perf_counter()
                got = fn()
                setup = time.perf_counter() - t0
                us = replay_us(fn)
                err = (got.float() - want).abs().max().item()
                note = f" (first call {setup:.1f} s)" if setup > 1 else ""
                print(f"| {m} | {name}{note} | {us:.1f} | {2 * m * HIDDEN * INTER / us / 1e6:.0f} | {err:.2e} |")
            except Exception as e:  # noqa: BLE001 - a failing variant is a row
                print(f"| {m} | {name} | FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | |")
        print(f"| {m} | (ela's autotuning kept: {ffn.chosen_tiles()}) | | | |", flush=True)


def linear_gelu(x, w, b):
    """PyTorch's two steps: the model's computation, unfused."""
    return F.gelu(F.linear(x, w, b))


def compiled(mode: str | None, x, w, b):
    """torch.compile of gelu(linear(x)) on these tensors, as a no-argument function."""
    torch._dynamo.reset()
    fn = torch.compile(linear_gelu, mode=mode, dynamic=False)
    return partial(fn, x, w, b)


if __name__ == "__main__":
    main()
