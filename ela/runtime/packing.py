"""Padding-free batches (`engine.packing=L`): each batch's sequences packed into rows of at most L tokens.

`batch` keeps its meaning, sequences per forward pass (what a request waits with). They are packed
first-fit-decreasing into as few rows of L tokens as they fit, so a batch is [rows, width] and padding
is only what is left at the end of each row. Each sequence keeps its own positions (0.. for BERT,
RoBERTa's offset after its padding index) and attends only to itself: a block-diagonal mask for
transformers' sdpa/eager, FlashAttention varlen offsets for ela's `padded_varlen` (no padding computed
at all), segment ids for ela's `padded_triton` (one tile per row). Its first token ([CLS] / <s>) goes
to the model's own head. Shapes stay few and static: SST-2 dev at batch 64, L=128 has 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ela import ElaError

# Classifier class -> how its head reads the first token: BERT's pooler + classifier, RoBERTa's classifier.
FAMILIES = {
    "BertForSequenceClassification": "bert",
    "RobertaForSequenceClassification": "roberta",
    "XLMRobertaForSequenceClassification": "roberta",
}
ATTENTION = (None, "sdpa", "eager", "padded_varlen", "padded_triton")  # attn_implementation choices it works with


def check_config(packing: int | None, attn_implementation: str | None, max_length: int, task: str) -> None:
    """Refuse packing where it can't apply, from the config alone (a sweep refuses it before any job)."""
    if packing is None:
        return
    if task != "classification":
        raise ElaError("engine.packing packs classifier inputs; task=generation pads prompts: set engine.packing=null")
    if not isinstance(packing, int) or isinstance(packing, bool) or packing < max_length:
        raise ElaError(
            f"engine.packing={packing!r}: rows must hold the longest sequence, so an int >= model.max_length "
            f"({max_length}), e.g. engine.packing={max_length}; null pads each sequence instead"
        )
    if attn_implementation not in ATTENTION:
        raise ElaError(
            f"engine.packing works with model.attn_implementation sdpa, eager, padded_varlen or padded_triton, not "
            f"{attn_implementation}: set one of those, or engine.packing=null"
        )
    if attn_implementation == "padded_triton" and packing > 128:  # attention.TRITON_MAX_LEN: one tile per row
        raise ElaError(
            f"engine.packing={packing} with model.attn_implementation=padded_triton: its kernel holds rows of up to "
            "128 tokens; set engine.packing=128, or use padded_varlen"
        )


def check_model(architectures: list[str], packing: int | None) -> None:
    """Refuse packing for a classifier whose head ela can't feed per sequence (from its config.json)."""
    if packing is not None and not any(a in FAMILIES for a in architectures):
        raise ElaError(
            f"engine.packing supports {', '.join(FAMILIES)}; this checkpoint is {architectures or 'of unknown class'}: "
            "set engine.packing=null (pad each sequence) or engine.buckets for fewer shapes"
        )


@dataclass(frozen=True)
class Layout:
    """How one batch is packed: each sequence's row and start, in batch order, and the rows' width."""

    rows: int
    width: int  # tokens per row: the fullest row's, rounded up (few shapes), at most row_tokens
    places: list[tuple[int, int]]  # (row, start) of each sequence


def layout(lengths: list[int], row_tokens: int) -> Layout:
    """First-fit decreasing: longest sequence first, into the first row with room (a new row if none).

    Rows are then cut to the fullest one, rounded up to a step of 1/16-1/8 of it (at least 8 tokens): a
    batch that fills one short row (batch 1) is not padded to row_tokens, and widths stay few.
    """
    if max(lengths) > row_tokens:
        raise ElaError(
            f"a sequence of {max(lengths)} tokens does not fit engine.packing={row_tokens}: set engine.packing to at "
            "least model.max_length"
        )
    free: list[int] = []
    places: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
        if row is None:
            row = len(free)
            free.append(row_tokens)
        places[i] = (row, row_tokens - free[row])
        free[row] -= lengths[i]
    used = row_tokens - min(free)
    step = max(8, 2 ** (used.bit_length() - 4))  # 1/16 to 1/8 of the width: at most ~12% of padding
    width = min(row_tokens, -(-used // step) * step)
    return Layout(rows=len(free), width=width, places=places)


def pack(ids: list[list[int]], row_tokens: int, pad_id: int, first_position: int) -> dict[str, torch.Tensor]:
    """One batch's sequences as packed model inputs.

    input_ids, position_ids, segment_ids [rows, width]: segment_ids numbers a row's sequences from 1 (0:
    padding). first_token [n]: each sequence's first slot in the flattened rows, in batch order, so the
    head's outputs come back in that order. offsets [n + rows + 1]: FlashAttention varlen offsets over
    the flattened rows, every sequence and then each row's padded tail (maybe empty): a count fixed
    per shape, as compiled graphs need.
    """
    plan = layout([len(x) for x in ids], row_tokens)
    width = plan.width
    input_ids = torch.full((plan.rows, width), pad_id, dtype=torch.long)
    positions = torch.full_like(input_ids, max(first_position - 1, 0))  # RoBERTa: padding's own position
    segments = torch.zeros_like(input_ids, dtype=torch.int32)
    first = torch.empty(len(ids), dtype=torch.long)
    for i, (seq, (row, start)) in enumerate(zip(ids, plan.places, strict=True)):
        end = start + len(seq)
        input_ids[row, start:end] = torch.tensor(seq)
        positions[row, start:end] = torch.arange(first_position, first_position + len(seq))
        segments[row, start:end] = int(segments[row].max()) + 1
        first[i] = row * width + start
    sizes = []
    for row in range(plan.rows):
        used = sorted((start, len(ids[i])) for i, (r, start) in enumerate(plan.places) if r == row)
        sizes += [n for _, n in used] + [width - sum(n for _, n in used)]
    offsets = torch.tensor([0, *sizes], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    return {
        "input_ids": input_ids,
        "position_ids": positions,
        "segment_ids": segments,
        "first_token": first,
        "offsets": offsets,
    }


def family_of(config) -> str:
    """`bert` or `roberta`: how the checkpoint's head reads a sequence's first token (check_model ran before)."""
    return next(FAMILIES[a] for a in config.architectures if a in FAMILIES)


def first_position(config) -> int:
    """The position id of a sequence's first token: RoBERTa counts from padding_idx + 1, BERT from 0."""
    return config.pad_token_id + 1 if family_of(config) == "roberta" else 0


class PackedOutput(NamedTuple):
    """What the packed classifier returns: `.logits`, as transformers' outputs have it.

    A tuple, not transformers' class: the config checks above import this module, and transformers costs
    ~1.4 s to import.
    """

    logits: torch.Tensor  # [sequences, labels], in batch order


class PackedClassifier(torch.nn.Module):
    """A sequence classifier that takes packed rows and returns one row of logits per sequence."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.family = family_of(model.config)

    @property
    def config(self):
        """The wrapped model's config (attention implementation, labels)."""
        return self.model.config

    def set_attn_implementation(self, name: str) -> None:
        """Switch the wrapped model's attention (as transformers' models do)."""
        self.model.set_attn_implementation(name)

    def forward(self, input_ids, position_ids, segment_ids, first_token, offsets) -> PackedOutput:
        """Encode the rows with attention inside each sequence, then the head on each first token."""
        mask = self._mask(segment_ids, offsets)
        encoder = getattr(self.model, self.family)
        hidden = encoder(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
        first = hidden.flatten(0, 1).index_select(0, first_token)[:, None]  # [n, 1, H]: as if each had one token
        if self.family == "bert":
            logits = self.model.classifier(self.model.dropout(encoder.pooler(first)))
        else:
            logits = self.model.classifier(first)
        return PackedOutput(logits)

    def _mask(self, segments: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        attn = self.model.config._attn_implementation
        # transformers hands a 4D "mask" to ela's attention hook untouched (ela.runtime.attention)
        if attn == "padded_varlen":
            return offsets.view(1, 1, 1, -1)
        if attn == "padded_triton":
            return segments.view(segments.shape[0], 1, 1, -1)
        # Padding attends to padding of its row (never to a sequence): no row of the mask is empty.
        same = segments[:, None, :, None] == segments[:, None, None, :]  # [rows, 1, L, L]
        if attn == "sdpa":
            return same
        dtype = self.model.get_input_embeddings().weight.dtype  # eager adds the mask to its scores
        return torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill(~same, torch.finfo(dtype).min)
