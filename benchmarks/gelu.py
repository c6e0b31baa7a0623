"""Exploration (GPU machine): exact GELU on the FFN's [rows, 3072] bf16 activations, kernel by kernel.

Eager PyTorch, inductor's generated kernel (what ela's compile engine runs), and a plain Triton kernel
at several block sizes, each timed over a CUDA-graph replay loop; max difference from fp32 GELU.

    python benchmarks/gelu.py [--rows 2048]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from kernels import INTER, print_rows


@triton.jit
def gelu_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n).to(tl.float32)
    y = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n)


def triton_gelu(x: torch.Tensor, y: torch.Tensor, block: int, warps: int) -> torch.Tensor:
    gelu_kernel[(triton.cdiv(x.numel(), block),)](x, y, x.numel(), block, num_warps=warps)
    return y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="2048")
    a = ap.parse_args()
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}\n")
    print("| rows | kernel | us/call | GB/s (read + write) | max diff vs fp32 |")
    print("|---|---|---|---|---|")
    for m in map(int, a.rows.split(",")):
        x = torch.randn(m, INTER, device="cuda", dtype=torch.bfloat16)
        y = torch.empty_like(x)
        want = F.gelu(x.float())
        runs = {"eager F.gelu": partial(F.gelu, x), "inductor": partial(torch.compile(F.gelu, dynamic=False), x)}
        for block, warps in ((1024, 4), (2048, 4), (4096, 8), (8192, 8), (16384, 16)):
            runs[f"triton block {block} warps {warps}"] = partial(triton_gelu, x, y, block, warps)
        print_rows(str(m), runs, want, lambda us, n=x.numel(): f"{2 * n * 2 / us / 1e3:.0f}")


if __name__ == "__main__":
    main()
