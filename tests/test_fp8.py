"""precision=fp8: float8 linear layers (ela/runtime/fp8.py), their refusals, and a real job on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_job, measure
from torch import nn

from ela import ElaError
from ela.runtime import fp8


def test_a_float8_linear_is_the_linear_within_e4m3s_rounding():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32).to(torch.bfloat16)
    x = torch.randn(5, 7, 64, dtype=torch.bfloat16)  # any leading shape: rows are flattened and restored
    got, want = fp8.Fp8Linear(linear)(x), linear(x)
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    err = (got.float() - want.float()).norm() / want.float().norm()
    assert 0 < err < 0.05  # e4m3 keeps 3 mantissa bits: a few % per element, less over a dot product


def test_convert_replaces_what_float8_takes_and_names_what_it_kept():
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 2)).to(torch.bfloat16)
    assert fp8.convert(model) == "1 of 2; kept in bf16: 2 (64->2)"
    assert isinstance(model[0], fp8.Fp8Linear) and isinstance(model[2], nn.Linear)
    with pytest.raises(ElaError, match="no linear layer whose sizes are multiples of 16"):
        fp8.convert(nn.Sequential(nn.Linear(10, 3)))


def test_a_card_without_float8_tensor_cores_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    with pytest.raises(ElaError, match="NVIDIA A100 has no float8 tensor cores.*use bf16_pure"):
        fp8.probe(torch.device("cuda", 0))


def test_fp8_is_refused_where_it_does_not_apply_before_any_work():
    with pytest.raises(ElaError, match="precision=fp8 .* is for task=classification so far"):
        compose_job("precision=fp8", "task=generation")
    with pytest.raises(ElaError, match="precision.weights_dtype.*bfloat16 with autocast_dtype null"):
        compose_job("precision=fp8", "precision.weights_dtype=float32")
    with pytest.raises(ElaError, match="precision.linear"):
        compose_job("precision=bf16_pure", "+precision.linear=int4")


def test_an_fp8_job_keeps_the_fp32_predictions_and_says_which_layers(tmp_path):
    out = measure(tmp_path, *FAST, "precision=fp8", "batch=8", "dataset.limit=48", "codecarbon.enabled=false")
    assert out.tags["ela.fp8_linears"] == "37 of 38; kept in bf16: classifier (384->2)"  # MiniLM: 6 layers x 6 + pooler
    assert out.metrics["agreement_with_fp32"] >= 0.95


def test_the_benchmarks_floor_counts_float8_layers_as_the_matmuls_they_are(monkeypatch):
    # real_data.py --precision fp8 computed its floor after convert(): a work() that saw only nn.Linear
    # counted none of the float8 matmuls, and the row's "x floor" came out ~100x too high.
    from transformers import BertConfig, BertForSequenceClassification

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from engines import work

    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=99)
    model = BertForSequenceClassification(cfg).to(torch.bfloat16).eval()
    flops, nbytes = work(model, 2, 16)
    fp8.convert(model)
    flops8, nbytes8 = work(model, 2, 16)
    assert flops8 == flops  # the same multiply-adds, in float8
    assert nbytes8 < nbytes  # each converted weight is read as 1 byte, not 2
