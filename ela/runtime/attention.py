"""ela's attention implementations for transformers: `padded_varlen`, `padded_triton` and `sdpa_grouped`.

transformers' `sdpa` path hands PyTorch a dense boolean mask, which rules out FlashAttention, and at
SST-2's 32 tokens PyTorch's kernels spend 17-30 us per layer on a batch of 64 (benchmarks/attention.py).
Both implementations here keep each sequence in its padded slot of S tokens (shapes stay static for
compile and CUDA graphs; the work is exactly the padded batch's) and mask the padding by each
sequence's number of real keys, which needs right padding (real tokens first):

- `padded_varlen`: PyTorch's bundled FlashAttention-2 varlen kernel with per-sequence key lengths
  (`seqused_k`). Any length (padded_triton stops at 128 tokens).
- `padded_triton`: ela's Triton kernel, one program per (sequence, head) holding the whole S x S
  score tile, for S <= 128, where FlashAttention's 128-row tiles are mostly padding.

On packed rows (`engine.packing`, ela.runtime.packing) the hook gets a 4D tensor instead of a mask:
`padded_varlen` runs FlashAttention varlen over every sequence's offsets, `padded_triton` one program
per row and head masked by each token's segment id.

Both need a CUDA GPU (sm_80+) and fp16/bf16 activations; `check` refuses anything else before a job
starts, and the model's predictions are compared with eager transformers' (`agreement_with_eager`).

`sdpa_grouped` is for decoders with grouped-query attention (Llama 3, Qwen 2.5): transformers' sdpa path
copies every key/value head of the whole KV cache once per query head that reads it (`repeat_kv`) whenever
there is a mask, at every decoding step; transformers 5.2x skips the copy for one-token queries, but not
under torch.compile, and 5.17 never. Here a one-token query's heads are laid out as the rows of their key/value
head's query (the same sums, no copy of the cache); anything else is transformers' sdpa.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ela import ElaError
from ela.runtime.device import require_half_cuda

if TYPE_CHECKING:  # config imports this module's choices: no import of config at run time
    from ela.config import PrecisionConfig

VARLEN, TRITON = "padded_varlen", "padded_triton"  # no "flash" in a name: transformers would look for flash-attn
PADDED = (VARLEN, TRITON)  # need right padding, a CUDA GPU and half precision
GROUPED = "sdpa_grouped"
NAMES = (*PADDED, GROUPED)  # registered with transformers by ela
TRANSFORMERS = ("sdpa", "eager", "flash_attention_2", "flex_attention")  # transformers' own
CHOICES = (None, *TRANSFORMERS, *NAMES)  # model.attn_implementation (null: transformers' default)
TRITON_MAX_LEN = 128  # the S x S fp32 score tile of one program must fit in registers
TRITON_WARPS: int | None = None  # None: 4 warps per program, 8 from S > 64 (benchmarks/attention.py)


def key_lengths(attention_mask: torch.Tensor | None = None, kv_length: int = 0, **_kwargs) -> torch.Tensor | None:
    """Transformers mask hook: the number of real (leading) tokens per sequence, int32 [B], or None."""
    if attention_mask is None or attention_mask.dim() == 4:  # 4D: packed rows' offsets or segment ids, as they are
        return attention_mask
    return attention_mask[:, -kv_length:].sum(-1, dtype=torch.int32)


def _hook(name: str):
    def attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        **_kwargs,  # dropout is 0 in eval mode, which is all ela runs
    ) -> tuple[torch.Tensor, None]:
        """Transformers attention hook: q, k, v [B, H, S, D] -> output [B, S, H, D] (no weights)."""
        if getattr(module, "is_causal", False):
            raise ElaError(f"attn_implementation={name} is bidirectional; this model's attention is causal: use sdpa")
        b, h, s, d = query.shape
        # [B, H, S, D] -> [B*S, H, D] (eagerly a view of the projections' output): sequence i at rows i*S...
        q, k, v = (t.transpose(1, 2).reshape(b * s, h, d) for t in (query, key, value))
        scale = d**-0.5 if scaling is None else scaling
        if attention_mask is not None and attention_mask.dim() == 4:  # packed rows (packing.py): offsets / segments
            kernel = PACKED if name == VARLEN else TRITON_PACKED
            return KERNELS[kernel](q, k, v, attention_mask.reshape(-1), s, scale).view(b, s, h, d), None
        lengths = attention_mask
        if lengths is None:  # no padding anywhere
            lengths = torch.full((b,), s, dtype=torch.int32, device=q.device)
        out = KERNELS[name](q, k, v, lengths, s, scale)
        return out.view(b, s, h, d), None

    return attention


def flash_varlen(q, k, v, lengths: torch.Tensor, seq: int, scale: float) -> torch.Tensor:
    """FlashAttention-2 varlen forward on [B*S, H, D]: segment i is rows i*S.., its first lengths[i] keys."""
    starts = torch.arange(0, q.shape[0] + 1, seq, device=q.device, dtype=torch.int32)
    return torch.ops.aten._flash_attention_forward(
        q, k, v, starts, starts, seq, seq, 0.0, False, False, scale=scale, seqused_k=lengths
    )[0]


def flash_packed(q, k, v, offsets: torch.Tensor, seq: int, scale: float) -> torch.Tensor:
    """FlashAttention-2 varlen forward on packed rows [B*S, H, D]: segment i is rows offsets[i]..offsets[i+1]."""
    fa = torch.ops.aten._flash_attention_forward
    return fa(q, k, v, offsets, offsets, seq, seq, 0.0, False, False, scale=scale)[0]


def triton_short(q, k, v, lengths: torch.Tensor, seq: int, scale: float) -> torch.Tensor:
    """Ela's Triton kernel on [B*S, H, D]: segment i is rows i*S.., its first lengths[i] keys."""
    # through torch.ops (built by register()): dynamo sees one opaque op, not the Python that builds it
    return torch.ops.ela.padded_triton_attention(q, k, v, lengths, seq, scale)


def triton_packed(q, k, v, segments: torch.Tensor, seq: int, scale: float) -> torch.Tensor:
    """Ela's Triton kernel on packed rows [B*S, H, D]: row i is rows i*S.., attention within each segment id."""
    return torch.ops.ela.padded_triton_attention(q, k, v, segments, seq, scale, True)


# On packed rows (engine.packing): padded_varlen runs FlashAttention varlen on the sequences' offsets (no
# padding computed), padded_triton one program per row and head, masked by segment ids.
PACKED, TRITON_PACKED = "packed_varlen", "packed_triton"
# Looked up per call: CPU tests swap in references.
KERNELS = {VARLEN: flash_varlen, TRITON: triton_short, PACKED: flash_packed, TRITON_PACKED: triton_packed}


@functools.cache
def _triton_op():
    """Build the Triton kernel and its torch op once (Triton is imported only where it is used)."""
    import triton
    import triton.language as tl

    @triton.jit
    def ela_padded_attention(q_ptr, k_ptr, v_ptr, o_ptr, lens_ptr, qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2,
                             os0, os1, os2, scale, S: tl.constexpr, BLOCK: tl.constexpr, D: tl.constexpr,
                             PACKED: tl.constexpr):  # fmt: skip
        # Strides are arguments (any layout works, e.g. slices of a fused QKV output); Triton specialises 1s.
        seq, head = tl.program_id(0), tl.program_id(1)
        rows, cols = tl.arange(0, BLOCK), tl.arange(0, D)
        tok = (seq * S + rows)[:, None]
        in_seq = (rows < S)[:, None]
        if PACKED:  # a packed row (engine.packing): lens_ptr holds each token's segment, attention stays in it
            segs = tl.load(lens_ptr + seq * S + rows, mask=rows < S, other=-1)
            keep, real = segs[:, None] == segs[None, :], in_seq
        else:
            n = tl.load(lens_ptr + seq)  # real keys in this sequence
            keep, real = (rows < n)[None, :], (rows < n)[:, None]
        q = tl.load(q_ptr + tok * qs0 + head * qs1 + cols[None, :] * qs2, mask=in_seq, other=0.0)
        k = tl.load(k_ptr + tok * ks0 + head * ks1 + cols[None, :] * ks2, mask=real, other=0.0)
        v = tl.load(v_ptr + tok * vs0 + head * vs1 + cols[None, :] * vs2, mask=real, other=0.0)
        scores = tl.dot(q, tl.trans(k)) * scale  # fp32 accumulation
        scores = tl.where(keep, scores, float("-inf"))
        p = tl.exp(scores - tl.max(scores, 1)[:, None])
        out = tl.dot(p.to(v.dtype), v) / tl.sum(p, 1)[:, None]  # P in half precision, as FlashAttention
        tl.store(o_ptr + tok * os0 + head * os1 + cols[None, :] * os2, out.to(o_ptr.dtype.element_ty), mask=in_seq)

    # An opaque custom op, not a triton_op: inductor calls it with the tensors it made, and the strides are
    # read here at run time. So inputs in any layout are read right, and flexible_layout lets inductor pass
    # slices of a fused QKV matmul as they are (a triton_op's strides are fixed when traced, before
    # freezing fuses Q/K/V, which forces three copies per layer).
    @torch.library.custom_op("ela::padded_triton_attention", mutates_args=(), tags=(torch.Tag.flexible_layout,))
    def op(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, seq: int, scale: float,
        packed: bool = False,
    ) -> torch.Tensor:  # fmt: skip
        out = fake(q, k, v, lengths, seq, scale, packed)
        block = max(16, triton.next_power_of_2(seq))  # tl.dot needs tiles of 16+
        ela_padded_attention[(q.shape[0] // seq, q.shape[1])](
            q, k, v, out, lengths, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
            scale, seq, block, q.shape[2], packed,
            num_warps=TRITON_WARPS or (8 if block >= 128 else 4),
        )  # fmt: skip
        return out

    @op.register_fake
    def fake(q, k, v, lengths, seq, scale, packed=False):
        tokens, heads, dim = q.shape
        if seq > TRITON_MAX_LEN:
            raise ElaError(f"attn_implementation={TRITON} handles sequences up to {TRITON_MAX_LEN} tokens, got {seq}")
        if dim < 16 or dim & (dim - 1):
            raise ElaError(
                f"attn_implementation={TRITON} needs a power-of-two head size >= 16, got {dim}: use {VARLEN}"
            )
        return torch.empty((tokens, heads, dim), dtype=q.dtype, device=q.device)

    return op


def check(attn_implementation: str | None, precision: PrecisionConfig, device: torch.device, max_len: int) -> None:
    """Refuse padded_* attention where its kernel can't run, before any work (never fall back to another)."""
    name = attn_implementation
    if name not in PADDED:
        return
    fix = "use model.attn_implementation=sdpa"
    if name == TRITON and max_len > TRITON_MAX_LEN:
        raise ElaError(
            f"model.attn_implementation={name} handles sequences up to {TRITON_MAX_LEN} tokens; sequences here "
            f"may reach {max_len}: lower model.max_length and engine.buckets, or use {VARLEN}"
        )
    require_half_cuda(f"model.attn_implementation={name}", precision, device, fix)
    if name == VARLEN and "seqused_k" not in str(torch.ops.aten._flash_attention_forward.default._schema):
        raise ElaError(
            f"model.attn_implementation={name} needs a torch whose FlashAttention takes per-sequence key lengths "
            f"(seqused_k); torch {torch.__version__} has none: {fix}"
        )


def grouped(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs):
    """Transformers attention hook: sdpa, a one-token query's heads grouped onto their key/value head.

    q [B, H, 1, D] and k, v [B, KV, S, D] -> output [B, 1, H, D] (no weights); other calls go to sdpa's hook.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    b, h, length, d = query.shape
    extras = any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "sinks", "s_aux"))
    extras = extras or bool(kwargs.get("dropout")) or module.training  # dropout: sdpa's own path applies it
    if length != 1 or groups == 1 or extras:  # prefill, plain multi-head attention, or what sdpa's path adds
        return sdpa_attention_forward(module, query, key, value, mask, **kwargs)
    # query head i*groups + j reads key/value head i (repeat_kv's order): [b, h, 1, d] -> [b, kv heads, groups, d]
    q = query.reshape(b, h // groups, groups, d)
    if mask is not None and mask.shape[1] != 1:  # [b, 1, 1, kv] is shared by all heads, broadcast over a group
        mask = mask.reshape(b, h // groups, groups, mask.shape[-1])
    scale = kwargs.get("scaling")
    out = torch.nn.functional.scaled_dot_product_attention(q, key, value, attn_mask=mask, scale=scale)
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


def register(name: str) -> None:
    """Make `attn_implementation=<name>` loadable by transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if name == GROUPED:  # sdpa's own (boolean) masks
        AttentionInterface.register(name, grouped)
        AttentionMaskInterface.register(name, sdpa_mask)
        return
    if name == TRITON and torch.cuda.is_available():  # its kernel exists only where CUDA does
        try:
            _triton_op()
        except ImportError as err:
            raise ElaError(f"attn_implementation={TRITON} needs Triton (CUDA builds of torch ship it): {err}") from err
    AttentionInterface.register(name, _hook(name))
    AttentionMaskInterface.register(name, key_lengths)
