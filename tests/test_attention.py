"""ela's padded attention on CPU: the transformers plumbing (mask hook, layout, compiled graph) with a
reference kernel standing in for the CUDA one, and refusals where the real kernels can't run.
The CUDA kernels themselves are checked against masked attention by benchmarks/attention.py and,
in the whole model, by agreement with eager in benchmarks/engines.py (figures in benchmarks/README.md)."""

import contextlib
import json
from dataclasses import replace

import pytest
import torch
from conftest import MODEL
from test_models import CFG
from torch.nn.functional import scaled_dot_product_attention as sdpa
from transformers import AutoTokenizer

from ela import ElaError, attention
from ela.config import EngineConfig, PrecisionConfig
from ela.data import tokenize
from ela.engines import build
from ela.models import load_model

TEXTS = ["a gripping, funny film", "dull and far too long, with a plot that goes nowhere", "fine"]
BF16 = PrecisionConfig(name="bf16", weights_dtype="float32", autocast_dtype="bfloat16", tf32=False)
FP32 = PrecisionConfig(name="fp32", weights_dtype="float32", autocast_dtype=None, tf32=False)


def reference_kernel(q, k, v, lengths, seq, scale):
    """What both CUDA kernels compute: masked attention within each padded segment of `seq` rows."""
    t, h, d = q.shape
    qs, ks, vs = (x.reshape(t // seq, seq, h, d).transpose(1, 2) for x in (q, k, v))
    real = torch.arange(seq)[None, :] < lengths[:, None]
    return sdpa(qs, ks, vs, attn_mask=real[:, None, None, :], scale=scale).transpose(1, 2).reshape(t, h, d)


@pytest.mark.parametrize("name", attention.NAMES)
def test_padded_attention_gives_sdpa_logits_eager_and_compiled(monkeypatch, name):
    calls = []
    monkeypatch.setitem(attention.KERNELS, name, lambda *args: calls.append(1) or reference_kernel(*args))
    batches = tokenize(AutoTokenizer.from_pretrained(MODEL), TEXTS, 3, 64, [16])
    inputs = batches.inputs[0]
    assert inputs["attention_mask"].sum() < inputs["attention_mask"].numel()  # there is padding to mask
    padded = load_model(replace(CFG, attn_implementation=name)).model
    assert padded.config._attn_implementation == name
    with torch.inference_mode():
        want = load_model(CFG).model(**inputs).logits  # transformers' sdpa with its dense mask
        torch.testing.assert_close(padded(**inputs).logits, want, atol=1e-5, rtol=1e-5)
    assert len(calls) == padded.config.num_hidden_layers  # every layer went through ela's hook
    monkeypatch.setitem(attention.KERNELS, name, reference_kernel)  # (dynamo can't trace the counting)
    engine = EngineConfig(name="compile", compile_mode="default", buckets=[16], fullgraph=True, freezing=True)
    forward, _ = build(engine, padded, contextlib.nullcontext, batches, torch.device("cpu"), lambda: None)
    torch.testing.assert_close(forward(inputs), want, atol=1e-4, rtol=1e-4)  # traced whole, no graph break
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "name, precision, device, max_len, message",
    [
        ("padded_varlen", BF16, "cpu", 64, "runs a CUDA kernel; this job runs on cpu"),
        ("padded_triton", FP32, "cuda", 64, "needs fp16/bf16 activations; precision=fp32 computes in fp32"),
        ("padded_triton", BF16, "cuda", 512, "up to 128 tokens; sequences here may reach 512"),
    ],
)
def test_padded_attention_is_refused_where_it_cannot_run(name, precision, device, max_len, message):
    with pytest.raises(ElaError, match=message):
        attention.check(name, precision, torch.device(device), max_len)
    attention.check("sdpa", FP32, torch.device("cpu"), 4096)  # transformers' own: nothing to check


def test_padded_attention_needs_right_padding(tmp_path):
    for f in MODEL.iterdir():  # the shared checkpoint, its tokenizer set to pad on the left
        if f.name != "tokenizer_config.json":
            (tmp_path / f.name).symlink_to(f)
    tok_cfg = json.loads((MODEL / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**tok_cfg, "padding_side": "left"}))
    with pytest.raises(ElaError, match="needs right padding.*pads on the left"):
        load_model(replace(CFG, path=str(tmp_path), attn_implementation="padded_varlen"))
