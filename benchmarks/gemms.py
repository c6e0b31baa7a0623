"""The four GEMMs of a RoBERTa-base layer at one batch shape (GPU machine): cuBLAS's heuristic choice
against PyTorch TunableOp's (every cuBLAS/cuBLASLt algorithm benchmarked, the fastest kept).

    python benchmarks/gemms.py [--rows 2048]

Each row is one linear layer (bf16, with bias, x [rows, in] @ W.T), timed over a CUDA-graph replay loop.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from kernels import replay_us

SHAPES = {"QKV (fused)": (2304, 768), "attention out": (768, 768), "FFN up": (3072, 768), "FFN down": (768, 3072)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="2048")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16\n")
    print("| rows | GEMM (out x in) | cuBLAS heuristic us | TFLOP/s | TunableOp us | TFLOP/s | max diff |")
    print("|---|---|---|---|---|---|---|")
    for m in map(int, a.rows.split(",")):
        for name, (n, k) in SHAPES.items():
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            w = (torch.randn(n, k, device="cuda") / k**0.5).to(torch.bfloat16)
            b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
            fn = partial(F.linear, x, w, b)
            torch.cuda.tunable.enable(False)
            base, want = replay_us(fn), fn()
            torch.cuda.tunable.enable(True)
            torch.cuda.tunable.tuning_enable(True)
            got = fn()  # tunes this shape
            tuned = replay_us(fn)
            diff = (got.float() - want.float()).abs().max().item()
            tf = 2 * m * n * k / 1e6
            print(
                f"| {m} | {name} {n}x{k} | {base:.1f} | {tf / base:.0f} | {tuned:.1f} | {tf / tuned:.0f} | {diff:.1e} |"
            )
    torch.cuda.tunable.enable(False)
    for key, value in torch.cuda.tunable.get_results():
        print(key, value)


if __name__ == "__main__":
    torch.cuda.tunable.set_filename("/tmp/tunableop_results.csv")  # never into the checkout
    main()
