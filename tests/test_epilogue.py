"""model.fuse_gelu: the intermediate matmul with a GELU epilogue (ela/runtime/epilogue.py), its refusals, a real job."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
from conftest import FAST, MODEL, REPO, compose_job, measure
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ela import ElaError
from ela.analysis.recommend import quality_constraint
from ela.runtime import epilogue
from ela.runtime.epilogue import GeluLinear, fuse_gelu
from ela.tracking.identity import config_hash


def test_the_fused_layer_is_linear_then_gelu_on_a_cpu():
    torch.manual_seed(0)
    linear = nn.Linear(32, 128)
    x = torch.randn(3, 5, 32)  # any leading shape: rows are flattened and restored
    fused = GeluLinear(linear)
    assert fused.weight is linear.weight and fused.bias is linear.bias  # the same parameters, nothing copied
    got = fused(x)
    assert got.shape == (3, 5, 128)
    torch.testing.assert_close(got, nn.functional.gelu(linear(x)))  # on a CPU, torch's GELU after it is exact


def test_fusing_minilm_keeps_its_logits_eager_and_compiled():
    model = AutoModelForSequenceClassification.from_pretrained(MODEL).eval()
    batch = AutoTokenizer.from_pretrained(MODEL)(
        ["a gripping film", "dull and far too long"], return_tensors="pt", padding=True
    )
    fused = copy.deepcopy(model)
    how = fuse_gelu(fused, "cpu")
    assert how == "6 intermediate layers; on cpu: the matmul, then the model's own GELU (no epilogue)"
    layer = fused.bert.encoder.layer[0].intermediate
    assert isinstance(layer.dense, GeluLinear) and isinstance(layer.intermediate_act_fn, nn.Identity)
    with torch.no_grad():
        want = model(**batch).logits
        torch.testing.assert_close(fused(**batch).logits, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.compile(fused)(**batch).logits, want, atol=1e-4, rtol=1e-4)


def test_a_model_without_gelu_or_intermediate_layers_is_refused_by_name():
    model = AutoModelForSequenceClassification.from_pretrained(MODEL)
    model.config.hidden_act = "relu"
    with pytest.raises(ElaError, match="config.hidden_act is 'relu'.*model.fuse_gelu=false"):
        fuse_gelu(model, "cpu")
    plain = nn.Sequential(nn.Linear(4, 4))
    plain.config = model.config
    model.config.hidden_act = "gelu"
    with pytest.raises(ElaError, match="Sequential has no BERT-style intermediate layer"):
        fuse_gelu(plain, "cpu")


def test_fuse_gelu_is_refused_where_it_does_not_apply_before_any_work():
    with pytest.raises(ElaError, match="can't run under autocast \\(bfloat16\\).*bf16_pure"):
        compose_job("model.fuse_gelu=true", "precision=bf16")
    with pytest.raises(ElaError, match="precision.linear=fp8_rowwise has no GELU epilogue"):
        compose_job("model.fuse_gelu=true", "precision=fp8")
    with pytest.raises(ElaError, match="task=generation"):
        compose_job("model.fuse_gelu=true", "task=generation", "precision=bf16_pure")
    with pytest.raises(ElaError, match="model.fuse_gelu"):
        compose_job("model.fuse_gelu=maybe")


def test_runs_without_the_key_keep_their_config_hash():
    data = {"model": {"name": "m", "fuse_gelu": False}, "batch": 8}
    assert config_hash(data) == config_hash({"model": {"name": "m"}, "batch": 8})
    assert config_hash({**data, "model": {"name": "m", "fuse_gelu": True}}) != config_hash(data)


def test_a_fused_job_agrees_with_transformers_eager_model_and_says_what_it_fused(tmp_path):
    out = measure(tmp_path, *FAST, "model.fuse_gelu=true", "batch=8", "codecarbon.enabled=false")
    assert out.tags["ela.gelu_epilogue"].startswith("6 intermediate layers; on cpu")
    assert out.metrics["agreement_with_eager"] == 1.0
    assert out.metrics["accuracy"] > 0.8


def test_the_benchmarks_floor_counts_fused_layers_as_the_matmuls_they_are(monkeypatch):
    # As for float8 layers (test_fp8.py): a work() that saw only nn.Linear would drop the fused matmuls.
    from transformers import BertConfig, BertForSequenceClassification

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from engines import work

    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=99)
    model = BertForSequenceClassification(cfg).eval()
    before = work(model, 2, 16)
    fuse_gelu(model, "cpu")
    assert work(model, 2, 16) == before


def test_a_tanh_gelu_model_keeps_its_own_function_on_a_cpu():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=99)
    cfg.hidden_act = "gelu_new"  # the tanh approximation, as cuBLASLt's epilogue computes it
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(0, 99, (3, 12))
    fused = copy.deepcopy(model)
    fuse_gelu(fused, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6, rtol=1e-6)


def test_a_checkpoint_without_a_gelu_is_refused_before_its_weights_load(tmp_path):
    config = json.loads((MODEL / "config.json").read_text())
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))  # no weights at all
    with pytest.raises(ElaError, match="config.hidden_act is 'relu'"):
        measure(tmp_path, *FAST, f"model.path={tmp_path / 'm'}", "model.fuse_gelu=true", "codecarbon.enabled=false")


def test_a_fused_fp32_job_measures_its_agreement_with_fp32(tmp_path, monkeypatch):
    # fp32 jobs are their own reference (agreement 1.0 by definition); a fused GELU is another function, so
    # its agreement is measured against fp32's stock model. A broken fusion must show.
    monkeypatch.setattr(epilogue.GeluLinear, "forward", lambda self, x: torch.zeros(*x.shape[:-1], self.out_features))
    out = measure(tmp_path, *FAST, "model.fuse_gelu=true", "precision=fp32", "codecarbon.enabled=false")
    assert out.metrics["agreement_with_fp32"] < 0.9
    assert out.metrics["agreement_with_eager"] < 0.9


def test_a_fused_fp32_run_is_not_the_quality_reference():
    configs = pd.DataFrame(
        {
            "params.precision.name": ["fp32", "fp32", "bf16_pure"],
            "params.model.fuse_gelu": ["False", "True", "True"],
            "accuracy": [0.90, 0.50, 0.89],
        }
    )
    _, threshold, _ = quality_constraint(configs, 0.99)
    assert threshold == pytest.approx(0.99 * 0.90)
