"""Exploration (GPU machine with nvcc): the FFN up-projection with bias + exact (erf) GELU in a CUTLASS 3
sm90 epilogue (`LinCombPerColBiasEltAct<GELU>`), against cuBLAS + a separate GELU.

CUTLASS's `epilogue::thread::GELU` is the erf GELU (its tanh form is `GELU_taylor`). Needs the
`nvidia-cutlass` wheel (headers) and ninja; compiles with nvcc for sm_90a on first run.

    python benchmarks/cutlass_gelu.py [--rows 2048,8192]
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from kernels import ffn_up_inputs, linear_gelu, print_rows, tflops

VARIANTS = {  # name: (tile M, N, K, cluster M, mainloop schedule, epilogue schedule)
    "coop_128x128": (
        "_128,_128,_64",
        "_1,_1,_1",
        "KernelTmaWarpSpecializedCooperative",
        "TmaWarpSpecializedCooperative",
    ),
    "coop_256x128": (
        "_256,_128,_64",
        "_1,_1,_1",
        "KernelTmaWarpSpecializedCooperative",
        "TmaWarpSpecializedCooperative",
    ),
    "coop_128x256": (
        "_128,_256,_64",
        "_1,_1,_1",
        "KernelTmaWarpSpecializedCooperative",
        "TmaWarpSpecializedCooperative",
    ),
    "pingpong_64x128": ("_64,_128,_64", "_1,_1,_1", "KernelTmaWarpSpecializedPingpong", "TmaWarpSpecialized"),
    "coop_128x128_c2": (
        "_128,_128,_64",
        "_2,_1,_1",
        "KernelTmaWarpSpecializedCooperative",
        "TmaWarpSpecializedCooperative",
    ),
}

HEADER = r"""
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
using namespace cute;
using ElemBF16 = cutlass::bfloat16_t;

template <class Tile, class Cluster, class Sched, class EpiSched>
torch::Tensor linear_gelu(torch::Tensor x, torch::Tensor w, torch::Tensor b) {
  using Fusion = cutlass::epilogue::fusion::LinCombPerColBiasEltAct<
      cutlass::epilogue::thread::GELU, ElemBF16, float, ElemBF16, ElemBF16, float>;
  using Epi = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      ElemBF16, cutlass::layout::RowMajor, 8, ElemBF16, cutlass::layout::RowMajor, 8, EpiSched, Fusion>::CollectiveOp;
  using Main = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      ElemBF16, cutlass::layout::RowMajor, 8, ElemBF16, cutlass::layout::ColumnMajor, 8, float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epi::SharedStorage))>,
      Sched>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Main, Epi>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  int M = x.size(0), K = x.size(1), N = w.size(0);
  auto out = torch::empty({M, N}, x.options());
  auto sa = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, {M, K, 1});
  auto sb = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, {N, K, 1});
  auto sc = cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, {M, N, 1});
  auto sd = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, {M, N, 1});
  auto* po = reinterpret_cast<ElemBF16*>(out.data_ptr());
  typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm, {M, N, K, 1},
      {reinterpret_cast<ElemBF16 const*>(x.data_ptr()), sa, reinterpret_cast<ElemBF16 const*>(w.data_ptr()), sb},
      {{}, po, sc, po, sd}};
  args.epilogue.thread.alpha = 1.f;
  args.epilogue.thread.beta = 0.f;
  args.epilogue.thread.bias_ptr = reinterpret_cast<ElemBF16 const*>(b.data_ptr());
  Gemm gemm;
  TORCH_CHECK(gemm.can_implement(args) == cutlass::Status::kSuccess, "CUTLASS cannot implement this GEMM");
  auto ws = torch::empty({(int64_t)Gemm::get_workspace_size(args)}, x.options().dtype(torch::kUInt8));
  auto stream = at::cuda::getCurrentCUDAStream();
  TORCH_CHECK(gemm.initialize(args, ws.data_ptr(), stream) == cutlass::Status::kSuccess, "initialize failed");
  TORCH_CHECK(gemm.run(stream) == cutlass::Status::kSuccess, "run failed");
  return out;
}
"""


def build():
    """Compile the variants once (nvcc, sm_90a) and return the extension module."""
    import cutlass_library
    from torch.utils.cpp_extension import load_inline

    src = Path(cutlass_library.__file__).parent / "source"
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0a")
    body = HEADER + "".join(
        f"torch::Tensor {name}(torch::Tensor x, torch::Tensor w, torch::Tensor b) {{ return linear_gelu<Shape<{t}>, "
        f"Shape<{c}>, cutlass::gemm::{s}, cutlass::epilogue::{e}>(x, w, b); }}\n"
        for name, (t, c, s, e) in VARIANTS.items()
    )
    decls = "".join(f"torch::Tensor {n}(torch::Tensor x, torch::Tensor w, torch::Tensor b);\n" for n in VARIANTS)
    return load_inline(
        "ela_cutlass_gelu", cpp_sources="#include <torch/extension.h>\n" + decls, cuda_sources=body,
        functions=list(VARIANTS), extra_include_paths=[str(src / "include"), str(src / "tools/util/include")],
        extra_cuda_cflags=["-std=c++17", "--expt-relaxed-constexpr", "-O3", "-DNDEBUG"], verbose=False,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="2048,8192")
    a = ap.parse_args()
    import time

    t0 = time.perf_counter()
    ext = build()
    print(
        f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}; built in {time.perf_counter() - t0:.0f} s\n"
    )
    print("| rows | computation | us/call | TFLOP/s | max err vs fp32 |")
    print("|---|---|---|---|---|")
    torch.manual_seed(0)
    for m in map(int, a.rows.split(",")):
        x, w, b, want = ffn_up_inputs(m)
        runs = {
            "cuBLAS linear only (bound)": partial(F.linear, x, w, b),
            "cuBLAS linear, then GELU": partial(linear_gelu, x, w, b),
        }
        runs |= {f"CUTLASS {n} + bias + erf GELU epilogue": partial(getattr(ext, n), x, w, b) for n in VARIANTS}
        print_rows(str(m), runs, want, tflops(m))


if __name__ == "__main__":
    main()
