"""`precision=fp8`: a model's linear layers as float8 (e4m3) matmuls, with a scale per row and per output channel.

Each `nn.Linear` whose sizes the float8 matmul takes (multiples of 16) becomes `Fp8Linear`: its weight is
quantised once, per output channel (the channel's largest |w| maps to e4m3's largest value, 448); each input
row is quantised the same way on the fly, and `torch._scaled_mm` multiplies in float8 with both scales applied
in its bf16 output. Everything else (embeddings, norms, attention, activations, the bias) runs in the model's
bf16. A layer of other sizes (a classifier head of 2 outputs) keeps its bf16 matmul, and the job's tag
`ela.fp8_linears` says which were converted and which kept. The float8 tensor cores exist from sm_89 (Ada,
Hopper); on a CPU torch runs the same arithmetic (slowly: a check of accuracy and agreement, not of speed).
"""

from __future__ import annotations

import torch
from torch import nn

from ela import ElaError
from ela.checks import _check, _one_of

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
LINEARS = ("fp8_rowwise",)  # precision.linear: how nn.Linear layers multiply (null: in the weights' dtype)


def check_config(linear: str | None, weights_dtype: str, autocast_dtype: str | None) -> None:
    """precision.linear: null, or one of LINEARS over bf16 weights without autocast (the float8 layers give bf16)."""
    _one_of("precision.linear", linear, (None, *LINEARS))
    _check(
        linear is None or (weights_dtype == "bfloat16" and autocast_dtype is None),
        "precision.weights_dtype",
        weights_dtype,
        "bfloat16 with autocast_dtype null when precision.linear is set (the float8 matmuls give bf16)",
    )


def _to_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Return x / scale in float8, clamped first: e4m3fn has no infinity, and a cast past 448 need not saturate."""
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)


def _scale(x: torch.Tensor, dim: int) -> torch.Tensor:
    """float32 scales along `dim` that map each row's (or column's) largest |x| to FP8_MAX."""
    return (x.abs().amax(dim=dim, keepdim=True).float() / FP8_MAX).clamp(min=1e-12)


class Fp8Linear(nn.Module):
    """`nn.Linear` as a float8 matmul: weight scaled per output channel, input per row; output in the input's dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = _scale(w, dim=1)  # [out, 1]
        # row-major [out, in]; forward passes its transpose, the column-major operand _scaled_mm takes (a
        # buffer stored transposed could be made contiguous, row-major, when inductor freezes it)
        self.register_buffer("weight_fp8", _to_fp8(w, scale))
        self.register_buffer("weight_scale", scale.t().contiguous())  # [1, out]
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x @ w.T + b, with x and w multiplied in float8."""
        rows = x.reshape(-1, self.in_features)
        scale = _scale(rows, dim=1)  # [rows, 1]
        q = _to_fp8(rows, scale)
        y = torch._scaled_mm(q, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype)
        if self.bias is not None:  # added in bf16 after the matmul (_scaled_mm's own bias argument is not used)
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Sizes, as nn.Linear shows them."""
        return f"in_features={self.in_features}, out_features={self.out_features}, float8 e4m3 rowwise"


def convertible(linear: nn.Linear) -> bool:
    """The float8 matmul takes inner and output sizes that are multiples of 16."""
    return linear.in_features % 16 == 0 and linear.out_features % 16 == 0


def convert(model: nn.Module) -> str:
    """Replace every convertible nn.Linear in place; what was converted and kept, for the `ela.fp8_linears` tag."""
    converted, kept = 0, []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            if convertible(child):
                setattr(parent, name, Fp8Linear(child))
                converted += 1
            else:
                kept.append(f"{parent_name}.{name} ({child.in_features}->{child.out_features})".lstrip("."))
    if not converted:
        raise ElaError("precision=fp8: the model has no linear layer whose sizes are multiples of 16; use bf16_pure")
    return f"{converted} of {converted + len(kept)}" + (f"; kept in bf16: {', '.join(kept)}" if kept else "")


def probe(device: torch.device) -> None:
    """A tiny float8 matmul on the device; ElaError naming the card (or torch) where it can't run."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        raise ElaError(
            f"precision=fp8: {torch.cuda.get_device_name(device)} has no float8 tensor cores (sm_89+: Ada, "
            "Hopper and newer); use bf16_pure or fp16_pure"
        )
    try:
        layer = Fp8Linear(nn.Linear(16, 16, device=device, dtype=torch.bfloat16))
        layer(torch.ones(16, 16, device=device, dtype=torch.bfloat16)).sum().item()
    except (RuntimeError, NotImplementedError) as err:
        raise ElaError(f"precision=fp8: torch {torch.__version__} can't run float8 matmuls on {device}: {err}") from err
