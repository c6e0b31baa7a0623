"""The feed-forward up-projection with its GELU in the GEMM's epilogue: `model.ffn_implementation=fused_gelu`.

In a compiled BERT-style layer the up-projection (hidden -> 4 x hidden) runs as a cuBLAS GEMM and its
exact GELU as a separate kernel that reads and writes the 4 x hidden activations once more: at batch 64
x 32 tokens on an H100 that GELU is 11% of a forward pass (benchmarks/README.md). cuBLAS's own GELU
epilogue computes the tanh approximation, which is not the function BERT/RoBERTa were trained with, so
ela brings its own GEMM: a Triton kernel (fp32 accumulation) that adds the bias and applies the exact
erf GELU to the accumulator before the one store. The result differs from the unfused pair only in
that the GEMM output is not rounded to half precision before the GELU.

It replaces every `*.intermediate` block (`dense` Linear + `intermediate_act_fn`) of BERT, RoBERTa,
MiniLM and relatives whose activation is exact GELU; any other model or activation is refused, as are
CPU jobs, fp32 activations and pre-sm_80 cards (`check`, before the model loads). Predictions are
compared with eager transformers' like every engine's (`agreement_with_eager`).
"""

from __future__ import annotations

import functools

import torch

from ela import ElaError
from ela.config import PrecisionConfig
from ela.device import require_half_cuda

DEFAULT, FUSED_GELU = "default", "fused_gelu"
NAMES = (DEFAULT, FUSED_GELU)
# (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps) tried once per GEMM shape at the first call (engine setup,
# never a timed window); the fastest is kept. Hopper-sized tiles first, small ones for small batches.
CONFIGS = (
    (128, 256, 64, 3, 8),
    (256, 128, 64, 3, 8),
    (128, 128, 64, 4, 8),
    (128, 128, 64, 4, 4),
    (64, 256, 64, 4, 4),
    (128, 64, 64, 4, 4),
    (64, 128, 64, 4, 4),
    (64, 64, 64, 4, 4),
)


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """gelu(x @ weight.T + bias), exact GELU, in one Triton kernel (through torch.ops, built by `_triton_op`)."""
    return torch.ops.ela.linear_gelu(x, weight, bias)


KERNELS = {FUSED_GELU: linear_gelu}  # looked up per call: CPU tests swap in a reference


class FusedGeluIntermediate(torch.nn.Module):
    """Stands in for a BERT-style `intermediate` block: the same `dense` Linear, GELU fused into its GEMM."""

    def __init__(self, dense: torch.nn.Linear, act: torch.nn.Module):
        super().__init__()
        self.dense = dense  # same parameters (and names): precision casts and state dicts see no change
        self.intermediate_act_fn = act
        self.fused = True  # False: transformers' own two steps (ela's references, see models.stock_kernels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """gelu(dense(hidden_states)), with autocast's casts made explicit (a custom op gets none)."""
        if not self.fused:
            return self.intermediate_act_fn(self.dense(hidden_states))
        x, w, b = hidden_states, self.dense.weight, self.dense.bias
        kind = x.device.type
        if torch.is_autocast_enabled(kind):
            dtype = torch.get_autocast_dtype(kind)
            x, w, b = x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)
        return KERNELS[FUSED_GELU](x, w, b)


def apply(model: torch.nn.Module, name: str) -> int:
    """Swap in the fused block for every exact-GELU `intermediate` of the model; how many were swapped."""
    if name == DEFAULT:
        return 0
    from transformers.activations import GELUActivation

    blocks = [(parent, mod) for parent in model.modules() if (mod := getattr(parent, "intermediate", None)) is not None]
    blocks = [(p, m) for p, m in blocks if isinstance(getattr(m, "dense", None), torch.nn.Linear)]
    acts = {type(getattr(m, "intermediate_act_fn", None)).__name__ for _, m in blocks}
    exact = all(type(getattr(m, "intermediate_act_fn", None)) is GELUActivation for _, m in blocks)  # erf GELU
    if not blocks or not exact:
        hidden_act = getattr(getattr(model, "config", None), "hidden_act", "?")
        found = f"activation {', '.join(sorted(acts))} (hidden_act={hidden_act})"
        raise ElaError(
            f"model.ffn_implementation={name} fuses exact GELU into BERT-style `intermediate` blocks; this model "
            f"has {found if blocks else 'no such block'}: use model.ffn_implementation={DEFAULT}"
        )
    if name == FUSED_GELU and torch.cuda.is_available():  # its kernel exists only where CUDA does
        try:
            _triton_op()
        except ImportError as err:
            raise ElaError(
                f"model.ffn_implementation={name} needs Triton (CUDA builds of torch ship it): {err}"
            ) from err
    for parent, mod in blocks:
        parent.intermediate = FusedGeluIntermediate(mod.dense, mod.intermediate_act_fn)
    return len(blocks)


def check(name: str, precision: PrecisionConfig, device: torch.device) -> None:
    """Refuse the fused FFN where its kernel can't run, before any work (never fall back to the unfused one)."""
    if name != DEFAULT:
        require_half_cuda(
            f"model.ffn_implementation={name}", precision, device, f"use model.ffn_implementation={DEFAULT}"
        )


def launch(kernel, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, **meta) -> torch.Tensor:
    """Run `kernel` (autotuned, or plain with its tile sizes in `meta`) on x [..., K], weight [N, K]."""
    import triton

    x2 = x.reshape(-1, x.shape[-1])
    (m, k), n = x2.shape, weight.shape[0]
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    grid = lambda c: (triton.cdiv(m, c["BLOCK_M"]) * triton.cdiv(n, c["BLOCK_N"]),)  # noqa: E731
    kernel[grid](
        x2, weight, weight if bias is None else bias, out, m, n, k, *x2.stride(), *weight.stride(), *out.stride(),
        HAS_BIAS=bias is not None, **meta,
    )  # fmt: skip
    return out.view(*x.shape[:-1], n)


@functools.cache
def _triton_op():
    """Build the Triton kernel and its torch op once (Triton is imported only where it is used)."""
    import triton
    import triton.language as tl

    @triton.jit
    def ela_linear_gelu(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, sxm, sxk, swn, swk, sym, syn, HAS_BIAS: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        GROUP_M: tl.constexpr):  # fmt: skip
        # Tiles in groups of GROUP_M rows so neighbouring programs share weight columns in L2.
        pid = tl.program_id(0)
        tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        first_m = (pid // (GROUP_M * tiles_n)) * GROUP_M
        group_m = min(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % (GROUP_M * tiles_n)) % group_m
        pid_n = (pid % (GROUP_M * tiles_n)) // group_m
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        # Rows/columns past the edge read row 0 (loads stay unmasked and pipelined); they are never stored.
        xs = x_ptr + (rm % M)[:, None] * sxm + rk[None, :] * sxk
        ws = w_ptr + (rn % N)[None, :] * swn + rk[:, None] * swk  # a [BLOCK_K, BLOCK_N] tile of weight.T
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            in_k = (k0 + rk) < K
            acc = tl.dot(tl.load(xs, mask=in_k[None, :], other=0.0), tl.load(ws, mask=in_k[:, None], other=0.0), acc)
            xs += BLOCK_K * sxk
            ws += BLOCK_K * swk
        if HAS_BIAS:
            acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
        y = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))  # exact GELU, as torch's approximate="none"
        tl.store(y_ptr + rm[:, None] * sym + rn[None, :] * syn, y.to(y_ptr.dtype.element_ty),
                 mask=(rm < M)[:, None] & (rn < N)[None, :])  # fmt: skip

    tuned = triton.autotune(
        [
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for bm, bn, bk, s, w in CONFIGS
        ],
        key=["M", "N", "K"],
    )(ela_linear_gelu)

    # Opaque to dynamo/inductor (strides read at run time); autotuning happens on the first call per shape,
    # which ela's engines make while preparing every padded shape, outside the timed windows.
    @torch.library.custom_op("ela::linear_gelu", mutates_args=())
    def op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return launch(tuned, x, weight, bias)

    @op.register_fake
    def _(x, weight, bias):
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    return op, ela_linear_gelu, tuned


def chosen_tiles() -> str:
    """The tile config autotuning kept per GEMM shape (M, N, K) so far in this process, for the run's tags."""
    if not _triton_op.cache_info().currsize:
        return "none"
    cache = _triton_op()[2].cache  # triton's Autotuner: {key: Config}; key = (M, N, K, dtypes...)
    return "; ".join(f"{key[:3]}: {cfg}" for key, cfg in cache.items()) or "none"
