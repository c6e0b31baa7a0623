"""`model.fuse_projections`: one matmul for a decoder layer's q/k/v projections and one for gate/up.

At one-token decoding steps every projection is a matrix-vector product, and the small ones (a GQA model's
k and v: 2 MB each in Llama-3.2-1B) are too short to reach the card's bandwidth, so a step pays per kernel,
not per byte. Concatenating the weights of projections that read the same input makes one longer product
(q|k|v, gate|up) with the same sums: 3 fewer kernels per layer. inductor's own `concat_linear` pass does
this only with freezing, which a static KV cache rules out (ela.runtime.generation).

transformers' attention forward calls `q_proj`, `k_proj` and `v_proj` one after the other on the same input;
here `q_proj` runs the fused product and hands k and v to the two that follow (a hand-off on a plain object,
which torch.compile traces as a side effect), so transformers' own forward (rotary, cache, attention hook)
runs unchanged in every version. The MLP's forward is replaced outright: `down(act(gate(x)) * up(x))`.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from ela import ElaError


class _Handoff:
    """k and v from the fused product, between the `q_proj` call that made them and the calls that take them."""

    def __init__(self) -> None:
        self.kv: torch.Tensor | None = None
        self.x: torch.Tensor | None = None  # the input they came from


class FusedQ(nn.Module):
    """Stands in for `q_proj`: computes q|k|v in one product, returns q, leaves k|v for `k_proj`/`v_proj`."""

    def __init__(self, qkv: nn.Linear, q_size: int, handoff: _Handoff) -> None:
        super().__init__()
        self.qkv, self.q_size, self.handoff = qkv, q_size, handoff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The query projection of x; its key|value part kept for the next two calls."""
        out = self.qkv(x)
        self.handoff.kv, self.handoff.x = out[..., self.q_size :], x
        return out[..., : self.q_size]


class TakeKV(nn.Module):
    """Stands in for `k_proj` (first) or `v_proj` (second): its slice of what `FusedQ` just computed."""

    def __init__(self, start: int, stop: int, handoff: _Handoff, last: bool) -> None:
        super().__init__()
        self.start, self.stop, self.handoff, self.last = start, stop, handoff, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The slice of the hand-off (x is the same input q_proj had; it is not read again)."""
        kv = self.handoff.kv
        if kv is None or x is not self.handoff.x:  # e.g. cross-attention: k and v of another input
            raise ElaError(
                "model.fuse_projections: k_proj/v_proj did not follow q_proj on the same input in this model's "
                "attention, so they can't share its matmul: run with model.fuse_projections=false"
            )
        if self.last:
            self.handoff.kv = self.handoff.x = None  # no reference to a step's tensors outlives the step
        return kv[..., self.start : self.stop]


def _concat(linears: list[nn.Linear]) -> nn.Linear:
    """One Linear whose output is the given Linears' outputs side by side."""
    first = linears[0]
    bias = first.bias is not None
    fused = nn.Linear(first.in_features, sum(m.out_features for m in linears), bias=bias,
                      device=first.weight.device, dtype=first.weight.dtype)  # fmt: skip
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in linears]))
        if bias:
            fused.bias.copy_(torch.cat([m.bias for m in linears]))
    return fused.requires_grad_(first.weight.requires_grad)


def _same_input(linears: list[nn.Module]) -> bool:
    if not all(type(m) is nn.Linear for m in linears):  # quantised or LoRA-wrapped layers: not ours to merge
        return False
    first = linears[0]
    return all(
        m.in_features == first.in_features
        and m.weight.dtype == first.weight.dtype
        and m.weight.device == first.weight.device
        and (m.bias is None) == (first.bias is None)
        for m in linears
    )


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
    return self.down_proj(self.act_fn(gate) * up)


def fuse_projections(model: nn.Module) -> dict[str, int]:
    """Fuse every attention's q/k/v and every gated MLP's gate/up in place; how many of each were fused.

    Refuses a model where nothing matches (the option would do nothing), before any work is timed.
    """
    counts = {"qkv": 0, "gate_up": 0}
    for module in list(model.modules()):
        names = ("q_proj", "k_proj", "v_proj")
        if all(hasattr(module, n) for n in names) and _same_input([getattr(module, n) for n in names]):
            q, k, v = (getattr(module, n) for n in names)
            handoff = _Handoff()
            qs, ks = q.out_features, k.out_features
            module.q_proj = FusedQ(_concat([q, k, v]), qs, handoff)
            module.k_proj = TakeKV(0, ks, handoff, last=False)
            module.v_proj = TakeKV(ks, ks + v.out_features, handoff, last=True)
            counts["qkv"] += 1
        names = ("gate_proj", "up_proj")
        if all(hasattr(module, n) for n in (*names, "down_proj", "act_fn")) and _same_input(
            [getattr(module, n) for n in names]
        ):
            module.gate_up_proj = _concat([module.gate_proj, module.up_proj])
            del module.gate_proj, module.up_proj
            module.forward = types.MethodType(_mlp_forward, module)
            counts["gate_up"] += 1
    if not any(counts.values()):
        raise ElaError(
            f"model.fuse_projections=true: {type(model).__name__} has no q_proj/k_proj/v_proj attention or "
            "gate_proj/up_proj MLP to fuse (Llama, Qwen2, Mistral-style decoders have both); set it to false"
        )
    return counts
