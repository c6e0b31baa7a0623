"""Exploration (GPU machine): Triton GEMM + bias + exact GELU variants for the FFN up-projection at one
shape, against cuBLAS. Pointer loads with and without a K mask, TMA descriptors, persistent + TMA with
and without warp specialisation. Each row: us per call (CUDA-graph replay), max error vs fp32.

    python benchmarks/ffn_variants.py [--rows 2048]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import triton
import triton.language as tl
from kernels import HIDDEN, INTER, ffn_up_inputs, linear_gelu, print_rows, tflops
from triton.tools.tensor_descriptor import TensorDescriptor


@triton.jit
def _tile(tile_id, tiles_m, tiles_n, GROUP_M: tl.constexpr):
    per_group = GROUP_M * tiles_n
    first_m = (tile_id // per_group) * GROUP_M
    group_m = min(tiles_m - first_m, GROUP_M)
    return first_m + (tile_id % per_group) % group_m, (tile_id % per_group) // group_m


@triton.jit
def _epilogue(acc, b_ptr, y_ptr, rm, rn, M, N, sym):
    acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    y = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))
    tl.store(y_ptr + rm[:, None] * sym + rn[None, :], y.to(y_ptr.dtype.element_ty),
             mask=(rm < M)[:, None] & (rn < N)[None, :])  # fmt: skip


@triton.jit
def k_ptr(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, sxm, swn, sym, BM: tl.constexpr, BN: tl.constexpr,
          BK: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):  # fmt: skip
    pid_m, pid_n = _tile(tl.program_id(0), tl.cdiv(M, BM), tl.cdiv(N, BN), GROUP_M)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    xs = x_ptr + (rm % M)[:, None] * sxm + rk[None, :]
    ws = w_ptr + (rn % N)[None, :] * swn + rk[:, None]
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        if EVEN_K:
            acc = tl.dot(tl.load(xs), tl.load(ws), acc)
        else:
            in_k = (k0 + rk) < K
            acc = tl.dot(tl.load(xs, mask=in_k[None, :], other=0.0), tl.load(ws, mask=in_k[:, None], other=0.0), acc)
        xs += BK
        ws += BK
    _epilogue(acc, b_ptr, y_ptr, rm, rn, M, N, sym)


@triton.jit
def k_tma(x_desc, w_desc, b_ptr, y_ptr, M, N, K, sym, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
          GROUP_M: tl.constexpr):  # fmt: skip
    pid_m, pid_n = _tile(tl.program_id(0), tl.cdiv(M, BM), tl.cdiv(N, BN), GROUP_M)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        acc = tl.dot(x_desc.load([pid_m * BM, k0]), w_desc.load([pid_n * BN, k0]).T, acc)
    _epilogue(acc, b_ptr, y_ptr, pid_m * BM + tl.arange(0, BM), pid_n * BN + tl.arange(0, BN), M, N, sym)


@triton.jit
def k_tma_persistent(x_desc, w_desc, b_ptr, y_ptr, M, N, K, sym, BM: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr, GROUP_M: tl.constexpr, SMS: tl.constexpr, WS: tl.constexpr):  # fmt: skip
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    for tile_id in tl.range(tl.program_id(0), tiles_m * tiles_n, SMS, flatten=True, warp_specialize=WS):
        pid_m, pid_n = _tile(tile_id, tiles_m, tiles_n, GROUP_M)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for ki in range(k_tiles):
            acc = tl.dot(x_desc.load([pid_m * BM, ki * BK]), w_desc.load([pid_n * BN, ki * BK]).T, acc)
        _epilogue(acc, b_ptr, y_ptr, pid_m * BM + tl.arange(0, BM), pid_n * BN + tl.arange(0, BN), M, N, sym)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="2048")
    a = ap.parse_args()
    torch.manual_seed(0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"card: {torch.cuda.get_device_name()}, triton {triton.__version__}, {sms} SMs\n")
    print("| rows | variant | us/call | TFLOP/s | max err |")
    print("|---|---|---|---|---|")
    for m in map(int, a.rows.split(",")):
        x, w, b, want = ffn_up_inputs(m)
        n, k = INTER, HIDDEN
        runs = {"cuBLAS linear, then GELU": partial(linear_gelu, x, w, b)}
        for bm, bn, bk, st, wp in ((128, 128, 64, 4, 8), (128, 256, 64, 3, 8), (128, 128, 128, 3, 8),
                                   (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (128, 128, 64, 3, 4)):  # fmt: skip
            tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
            y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            cfg = f"{bm}x{bn}x{bk} s{st} w{wp}"
            for even in (False, True):
                runs[f"ptr EVEN_K={even} {cfg}"] = partial(_into, y, partial(
                    k_ptr[(tiles,)], x, w, b, y, m, n, k, x.stride(0), w.stride(0), y.stride(0), bm, bn, bk, 8, even,
                    num_stages=st, num_warps=wp,
                ))  # fmt: skip
            xd = TensorDescriptor(x, [m, k], [k, 1], [bm, bk])
            wd = TensorDescriptor(w, [n, k], [k, 1], [bn, bk])
            runs[f"tma {cfg}"] = partial(_into, y, partial(
                k_tma[(tiles,)], xd, wd, b, y, m, n, k, y.stride(0), bm, bn, bk, 8, num_stages=st, num_warps=wp
            ))  # fmt: skip
            for ws in (False, True):
                runs[f"tma persistent ws={ws} {cfg}"] = partial(_into, y, partial(
                    k_tma_persistent[(min(sms, tiles),)], xd, wd, b, y, m, n, k, y.stride(0), bm, bn, bk, 8, sms, ws,
                    num_stages=st, num_warps=wp,
                ))  # fmt: skip
        print_rows(str(m), runs, want, tflops(m))


def _into(y: torch.Tensor, launch) -> torch.Tensor:
    """Launch a kernel that writes y, and return y."""
    launch()
    return y


if __name__ == "__main__":
    main()
