"""`model.fuse_gelu`: a BERT-style layer's intermediate matmul and its GELU as one matmul with a GELU epilogue.

An encoder layer computes `gelu(x @ W.T + b)` into a [tokens, 4 x hidden] tensor, then reads it back for the
GELU and again for the next matmul. The GELU is pure memory traffic: on an H200, one packed batch of SST-2 dev
spent 1.21 of its 8.28 ms in it (benchmarks/README.md, `real_data.py --profile`). cuBLASLt can apply the GELU
as the matmul writes its tiles (`torch._addmm_activation(..., use_gelu=True)`, which inductor calls as it is),
so that tensor is written once and never read back for the activation.

cuBLASLt's GELU is the tanh approximation, which differs from the exact (erf) GELU by at most 4.7e-4 (at
x = 2.70). So on CUDA a model whose activation is the exact GELU computes a slightly different function:
opt-in, tagged `ela.gelu_epilogue`, and checked against transformers' own model (`agreement_with_eager`,
`agreement_with_fp32`) as every engine is. A model whose activation already is the tanh approximation
(`gelu_new`, `gelu_pytorch_tanh`) computes the same function. On a CPU torch applies the exact GELU after
the matmul: the wiring is tested there, not the speed or the approximation.
"""

from __future__ import annotations

import torch
from torch import nn

from ela import ElaError

EXACT, TANH = ("gelu", "gelu_python"), ("gelu_new", "gelu_pytorch_tanh")  # config.hidden_act values it takes


def check_config(fuse_gelu: bool, task: str, linear: str | None, autocast_dtype: str | None) -> None:
    """Refuse the fused GELU where it can't apply, from the config alone (a sweep refuses it before any job)."""
    if not fuse_gelu:
        return
    fix = "or set model.fuse_gelu=false"
    if task != "classification":
        raise ElaError(f"model.fuse_gelu=true fuses an encoder's intermediate GELU; task={task}: {fix}")
    if linear is not None:
        raise ElaError(f"model.fuse_gelu=true: precision.linear={linear} has no GELU epilogue; use bf16_pure, {fix}")
    if autocast_dtype is not None:
        raise ElaError(
            "model.fuse_gelu=true multiplies in the weights' dtype, so it can't run under autocast "
            f"({autocast_dtype}): use precision=fp32, tf32, fp16_pure or bf16_pure, {fix}"
        )


class GeluLinear(nn.Module):
    """`gelu(nn.Linear(x))` as one matmul with cuBLASLt's GELU epilogue (tanh approximation on CUDA)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias  # the same parameters: nothing copied
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return gelu(x @ w.T + b), the GELU applied in the matmul's epilogue."""
        rows = x.reshape(-1, self.in_features)
        y = torch._addmm_activation(self.bias, rows, self.weight.t(), use_gelu=True)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Sizes, as nn.Linear shows them."""
        return f"in_features={self.in_features}, out_features={self.out_features}, GELU epilogue"


def fuse_gelu(model: nn.Module, device_type: str) -> str:
    """Fuse every intermediate layer's GELU into its matmul, in place; what was fused, for `ela.gelu_epilogue`."""
    act = getattr(getattr(model, "config", None), "hidden_act", None)
    if act not in EXACT + TANH:
        raise ElaError(
            f"model.fuse_gelu=true: the model's activation is {act!r}; the GELU epilogue computes the GELU "
            f"({', '.join(EXACT + TANH)}): set model.fuse_gelu=false"
        )
    layers = [m for m in model.modules() if hasattr(m, "intermediate_act_fn") and isinstance(m.dense, nn.Linear)]
    if not layers or any(m.dense.bias is None for m in layers):
        raise ElaError(
            f"model.fuse_gelu=true: {type(model).__name__} has no BERT-style intermediate layer (a `dense` linear "
            "layer with a bias, then `intermediate_act_fn`): set model.fuse_gelu=false"
        )
    for m in layers:
        m.dense, m.intermediate_act_fn = GeluLinear(m.dense), nn.Identity()
    if device_type != "cuda":
        return f"{len(layers)} intermediate layers; on {device_type}: the matmul, then the exact GELU (no epilogue)"
    how = "exact" if act in EXACT else "the same tanh approximation"
    return f"{len(layers)} intermediate layers; cuBLASLt GELU epilogue, tanh approximation (the model's GELU: {how})"
