"""Padding-free batches (engine.packing): the packing itself, the packed model's logits against
transformers' own padded model (BERT and RoBERTa families, sdpa, eager, ela's varlen hook, compiled),
a real job on the full SST-2 dev split, and refusals before any weights load."""

import contextlib
import csv
import json
from dataclasses import replace

import pytest
import torch
from conftest import FAST, LOCAL, MODEL, SST2, measure
from test_models import CFG
from torch.nn.functional import scaled_dot_product_attention as sdpa
from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

from ela import ElaError
from ela.config import EngineConfig
from ela.runtime import attention, packing
from ela.runtime.data import tokenize
from ela.runtime.engines import build
from ela.runtime.models import load_model

with open(SST2 / "dev.tsv", encoding="utf-8", newline="") as f:
    TEXTS = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][:96]


def test_layout_is_first_fit_decreasing_and_cuts_rows_to_the_fullest():
    plan = packing.layout([50, 20, 70, 30, 40], row_tokens=128)
    # 70 -> row 0, 50 -> row 0 (120), 40 -> row 1, 30 -> row 1, 20 -> row 1 (90): two rows
    assert plan.rows == 2 and plan.width == 120  # the fullest row, on a step of 8 (120 = 15 x 8)
    assert plan.places == [(0, 70), (1, 70), (0, 0), (1, 40), (1, 0)]
    one = packing.layout([25], row_tokens=128)
    assert (one.rows, one.width) == (1, 32)  # a lone sequence is not padded to the row length
    with pytest.raises(ElaError, match="a sequence of 130 tokens does not fit engine.packing=128"):
        packing.layout([130], 128)


@pytest.mark.parametrize("first", [0, 2])  # BERT positions from 0, RoBERTa's from padding_idx + 1
def test_pack_gives_each_sequence_its_positions_segment_and_first_token(first):
    ids = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]]
    got = packing.pack(ids, row_tokens=8, pad_id=0, first_position=first)
    rows, width = got["input_ids"].shape
    assert (rows, width) == (2, 8)
    flat = got["input_ids"].flatten()
    for seq, start in zip(ids, got["first_token"].tolist(), strict=True):
        assert flat[start : start + len(seq)].tolist() == seq
        assert got["position_ids"].flatten()[start : start + len(seq)].tolist() == list(range(first, first + len(seq)))
        assert len(set(got["segment_ids"].flatten()[start : start + len(seq)].tolist())) == 1
    assert int((got["segment_ids"] > 0).sum()) == sum(map(len, ids))
    offsets = got["offsets"]  # every sequence, then each row's padded tail: n + rows + 1 offsets
    assert offsets.dtype == torch.int32 and len(offsets) == len(ids) + rows + 1 and offsets[-1] == rows * width


def test_packing_cuts_sst2_padding_with_few_shapes():
    tok = AutoTokenizer.from_pretrained(MODEL)
    padded = tokenize(tok, TEXTS, 32, 128, [16, 32, 64, 128])
    packed = tokenize(tok, TEXTS, 32, 128, packing=(128, 0))
    assert padded.padding_fraction > 0.5 and packed.padding_fraction < 0.15
    assert len(packed.shapes) <= 4 and packed.indices == padded.indices


def packed_kernel(q, k, v, offsets, seq, scale):
    """What FlashAttention varlen computes on packed rows: attention within each offsets segment."""
    out = torch.empty_like(q)
    for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        if b > a:
            part = (x[a:b].transpose(0, 1)[None] for x in (q, k, v))
            out[a:b] = sdpa(*part, scale=scale)[0].transpose(0, 1)
    return out


def segment_kernel(q, k, v, segments, seq, scale):
    """What ela's Triton kernel computes on packed rows: attention within each row's segment ids."""
    t, h, d = q.shape
    qs, ks, vs = (x.reshape(t // seq, seq, h, d).transpose(1, 2) for x in (q, k, v))
    rows = segments.view(t // seq, seq)
    same = rows[:, None, :, None] == rows[:, None, None, :]
    return sdpa(qs, ks, vs, attn_mask=same, scale=scale).transpose(1, 2).reshape(t, h, d)


def _logits(model, batches):
    with torch.inference_mode():
        return torch.cat([model(**b).logits for b in batches.inputs])


@pytest.mark.parametrize("attn", ["sdpa", "eager", "padded_varlen", "padded_triton"])
def test_packed_minilm_gives_transformers_padded_logits(monkeypatch, attn):
    monkeypatch.setitem(attention.KERNELS, attention.PACKED, packed_kernel)  # the CUDA kernels' CPU stand-ins
    monkeypatch.setitem(attention.KERNELS, attention.TRITON_PACKED, segment_kernel)
    tok = AutoTokenizer.from_pretrained(MODEL)
    want = _logits(load_model(CFG).model, tokenize(tok, TEXTS, 16, 64))
    model = packing.PackedClassifier(load_model(replace(CFG, attn_implementation=attn)).model)
    packed = tokenize(tok, TEXTS, 16, 64, packing=(64, packing.first_position(model.config)))
    torch.testing.assert_close(_logits(model, packed), want, atol=1e-5, rtol=1e-5)


def test_packed_roberta_gives_transformers_padded_logits(tmp_path):
    # A random RoBERTa classifier: its positions start after padding_idx, its head reads <s> directly.
    cfg = RobertaConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, pad_token_id=0, max_position_embeddings=130)  # fmt: skip
    cfg.architectures = ["RobertaForSequenceClassification"]
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(cfg).eval()
    tok = AutoTokenizer.from_pretrained(MODEL)
    want = _logits(model, tokenize(tok, TEXTS, 16, 64))
    wrapped = packing.PackedClassifier(model)
    packed = tokenize(tok, TEXTS, 16, 64, packing=(64, packing.first_position(cfg)))
    torch.testing.assert_close(_logits(wrapped, packed), want, atol=1e-5, rtol=1e-5)


def test_a_compiled_packed_model_gives_the_padded_logits():
    tok = AutoTokenizer.from_pretrained(MODEL)
    want = _logits(load_model(CFG).model, tokenize(tok, TEXTS[:48], 16, 64))
    model = packing.PackedClassifier(load_model(CFG).model)
    batches = tokenize(tok, TEXTS[:48], 16, 64, packing=(64, 0))
    engine = EngineConfig("compile", "default", None, fullgraph=True, freezing=True, packing=64)
    forward, _ = build(engine, model, contextlib.nullcontext, batches, torch.device("cpu"), lambda: None)
    with torch.inference_mode():
        got = torch.cat([forward(b) for b in batches.inputs])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # one graph per packed shape, no break
    torch._dynamo.reset()


def test_a_packed_job_on_the_full_split_keeps_accuracy_and_agrees_with_eager(tmp_path):
    # ../shared/models/minilm-l6-sst2/README.md: fp32 dev accuracy 0.8991 (784/872) at max_length 64.
    out = measure(tmp_path, *LOCAL, "batch=64", "engine.packing=64", "measure.repeats=1", "measure.idle_window_s=0.2")
    m = out.metrics
    assert m["accuracy"] == pytest.approx(784 / 872) and m["agreement_with_eager"] == 1.0
    assert m["padding_fraction"] < 0.1 and m["distinct_shapes"] <= 8
    assert out.files["predictions.csv"].count("\n") == 873  # every sample, mapped back to its row
    assert out.tags["ela.engine"] == "eager(packing=64)"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["engine.packing=32"], "engine.packing=32: rows must hold the longest sequence, so an int >= model.max_len"),
        (["engine.packing=64", "model.attn_implementation=flash_attention_2"], "not flash_attention_2"),
        (["engine.packing=256", "model.attn_implementation=padded_triton"], "holds rows of up to 128 tokens"),
        (["engine.packing=64", "task=generation"], "task=generation pads prompts: set engine.packing=null"),
    ],
)
def test_packing_is_refused_where_it_cannot_apply(tmp_path, overrides, message):
    with pytest.raises(ElaError, match=message):
        measure(tmp_path, *FAST, *overrides)


def test_packing_refuses_a_head_it_cannot_feed_before_loading_weights(tmp_path):
    folder = tmp_path / "distil"
    folder.mkdir()
    config = json.loads((MODEL / "config.json").read_text())
    config["architectures"] = ["DistilBertForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ElaError, match="engine.packing supports BertForSequenceClassification"):
        measure(tmp_path, *FAST, f"model.path={folder}", "engine.packing=64")  # no weights there: refused first
