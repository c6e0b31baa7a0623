"""`model.fuse_gelu`: a BERT-style layer's intermediate matmul and its GELU as one matmul with a GELU epilogue.

An encoder layer writes `x @ W.T + b`, a [tokens, 4 x hidden] tensor, then reads it back and writes it again
to apply the GELU. That pass is pure memory traffic: on an H200, one packed batch of SST-2 dev spent 1.21 of
its 8.28 ms in it (benchmarks/README.md, `real_data.py --profile`). cuBLASLt can apply the GELU as the matmul
writes its tiles (`torch._addmm_activation(..., use_gelu=True)`, which inductor calls as it is, an extern
kernel), so the tensor is written once. torch runs the matmul and a separate tanh GELU instead where cuBLASLt
can't take it (a one-row input, `DISABLE_ADDMM_CUDA_LT=1`): the same function, without the saving.

cuBLASLt's GELU is the tanh approximation, which differs from the exact (erf) GELU by at most 4.7e-4 (at
x = 2.70). So on CUDA a model whose activation is the exact GELU computes a slightly different function:
opt-in, tagged `ela.gelu_epilogue`, and checked against transformers' own model (`agreement_with_eager`,
`agreement_with_fp32`) as every engine is. A model whose activation already is the tanh approximation
(`gelu_new`, `gelu_pytorch_tanh`) computes the same function. On a CPU there is no epilogue: torch applies
the exact GELU after the matmul (and `GeluLinear` the tanh one for a tanh model), so each model keeps its own
function there; the wiring is tested on a CPU, the speed and the approximation on the card.
"""

from __future__ import annotations

import torch
from torch import nn

from ela import ElaError

EXACT, TANH = ("gelu", "gelu_python"), ("gelu_new", "gelu_pytorch_tanh")  # config.hidden_act values it takes
FIX = "set model.fuse_gelu=false"


def check_config(fuse_gelu: bool, task: str, linear: str | None, autocast_dtype: str | None) -> None:
    """Refuse the fused GELU where it can't apply, from the config alone (a sweep refuses it before any job)."""
    if not fuse_gelu:
        return
    if task != "classification":
        raise ElaError(f"model.fuse_gelu=true fuses a classifier's intermediate GELU, not task={task}'s: {FIX}")
    if linear is not None:
        raise ElaError(
            f"model.fuse_gelu=true: precision.linear={linear} has no GELU epilogue: use precision=bf16_pure, or {FIX}"
        )
    if autocast_dtype is not None:
        raise ElaError(
            "model.fuse_gelu=true multiplies in the weights' dtype, so it can't run under autocast "
            f"({autocast_dtype}): use precision=fp32, tf32, fp16_pure or bf16_pure, or {FIX}"
        )


def check_model(config, fuse_gelu: bool) -> None:
    """Refuse a checkpoint whose activation is not a GELU (from its config.json, before any weights load)."""
    act = getattr(config, "hidden_act", None)
    if fuse_gelu and act not in EXACT + TANH:
        raise ElaError(
            f"model.fuse_gelu=true: the checkpoint's config.hidden_act is {act!r}; the epilogue computes a GELU "
            f"({', '.join(EXACT + TANH)}): {FIX}"
        )


class GeluLinear(nn.Module):
    """`gelu(nn.Linear(x))` as one matmul with cuBLASLt's GELU epilogue (tanh approximation on CUDA)."""

    def __init__(self, linear: nn.Linear, tanh: bool = False) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias  # the same parameters: nothing copied
        self.in_features, self.out_features, self.tanh = linear.in_features, linear.out_features, tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return gelu(x @ w.T + b), the GELU applied in the matmul's epilogue."""
        if self.tanh and not x.is_cuda:  # torch's CPU path applies the exact GELU: keep a tanh model's own
            return nn.functional.gelu(nn.functional.linear(x, self.weight, self.bias), approximate="tanh")
        rows = x.reshape(-1, self.in_features)
        y = torch._addmm_activation(self.bias, rows, self.weight.t(), use_gelu=True)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Sizes, as nn.Linear shows them."""
        return f"in_features={self.in_features}, out_features={self.out_features}, GELU epilogue"


def fuse_gelu(model: nn.Module, device_type: str) -> str:
    """Fuse every intermediate layer's GELU into its matmul, in place; what was fused, for `ela.gelu_epilogue`."""
    config = getattr(model, "config", None)
    check_model(config, True)
    layers = [m for m in model.modules() if hasattr(m, "intermediate_act_fn")]
    if not layers or any(type(getattr(m, "dense", None)) is not nn.Linear or m.dense.bias is None for m in layers):
        raise ElaError(
            f"model.fuse_gelu=true: {type(model).__name__} has no BERT-style intermediate layer (a `dense` "
            f"nn.Linear with a bias, then `intermediate_act_fn`): {FIX}"
        )
    tanh = config.hidden_act in TANH
    for m in layers:
        m.dense, m.intermediate_act_fn = GeluLinear(m.dense, tanh), nn.Identity()
    if device_type != "cuda":
        return (
            f"{len(layers)} intermediate layers; on {device_type}: the matmul, then the model's own GELU (no epilogue)"
        )
    how = "the same tanh approximation" if tanh else "exact"
    return (
        f"{len(layers)} intermediate layers; cuBLASLt GELU epilogue requested, tanh approximation (the model's "
        f"GELU: {how})"
    )
