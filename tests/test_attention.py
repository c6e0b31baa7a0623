"""ela's padded attention on CPU: the transformers plumbing (mask hook, layout, compiled graph) with a
reference kernel standing in for the CUDA one, ela's Triton kernel in Triton's CPU interpreter, and
refusals where the real kernels can't run. On the GPU the kernels are checked against masked attention
by benchmarks/attention.py and, in the whole model, against eager by benchmarks/engines.py."""

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import MODEL
from test_models import CFG
from torch.nn.functional import scaled_dot_product_attention as sdpa
from transformers import AutoTokenizer

from ela import ElaError
from ela.config import EngineConfig, PrecisionConfig
from ela.runtime import attention
from ela.runtime.data import tokenize
from ela.runtime.engines import build
from ela.runtime.models import load_model, stock_kernels

TEXTS = ["a gripping, funny film", "dull and far too long, with a plot that goes nowhere", "fine"]
BF16 = PrecisionConfig(name="bf16", weights_dtype="float32", autocast_dtype="bfloat16", tf32=False)
FP32 = PrecisionConfig(name="fp32", weights_dtype="float32", autocast_dtype=None, tf32=False)


def reference_kernel(q, k, v, lengths, seq, scale):
    """What both CUDA kernels compute: masked attention within each padded segment of `seq` rows."""
    t, h, d = q.shape
    qs, ks, vs = (x.reshape(t // seq, seq, h, d).transpose(1, 2) for x in (q, k, v))
    real = torch.arange(seq)[None, :] < lengths[:, None]
    return sdpa(qs, ks, vs, attn_mask=real[:, None, None, :], scale=scale).transpose(1, 2).reshape(t, h, d)


@pytest.mark.parametrize("name", attention.PADDED)
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


def test_references_run_sdpa_in_place_of_padded_attention(monkeypatch):
    """agreement_with_eager / agreement_with_fp32 compare against transformers' own attention, and ela's
    kernels never run in fp32 (their tl.dot would use TF32): stock_kernels switches to sdpa and back."""
    calls = []
    monkeypatch.setitem(attention.KERNELS, attention.TRITON, lambda *a: calls.append(1) or reference_kernel(*a))
    model = load_model(replace(CFG, attn_implementation=attention.TRITON)).model
    inputs = tokenize(AutoTokenizer.from_pretrained(MODEL), TEXTS, 3, 64, [16]).inputs[0]
    with torch.inference_mode():
        with stock_kernels(model):
            assert model.config._attn_implementation == "sdpa"
            model(**inputs)
        assert not calls
        model(**inputs)
    assert model.config._attn_implementation == attention.TRITON and len(calls) == model.config.num_hidden_layers


def test_triton_kernel_gives_masked_attention():
    """ela's Triton kernel itself, run by Triton's CPU interpreter (fp16: the interpreter has no bf16),
    on q/k/v slices of one fused QKV tensor (the layout a compiled model hands it). In a fresh process:
    the interpreter must be on before anything imports Triton (inductor does, in other tests)."""
    pytest.importorskip("triton", reason='Triton is in the gpu extra (pip install -e ".[gpu]"); tests/gpu runs it')
    proc = subprocess.run(
        [sys.executable, "-c", "import test_attention as t; t.interpreted_kernel_check()"],
        cwd=Path(__file__).parent,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "4 shapes match"


def interpreted_kernel_check() -> None:
    """The kernel against masked attention at four shapes (run by the test above, in its own process)."""
    op = attention._triton_op()
    gen = torch.Generator().manual_seed(0)
    heads, dim = 2, 64
    for batch, seq in ((3, 32), (2, 20), (2, 128), (1, 7)):
        fused = torch.randn(batch * seq, 3 * heads * dim, generator=gen).half()
        q, k, v = (part.view(batch * seq, heads, dim) for part in fused.split(heads * dim, dim=1))
        lengths = torch.randint(1, seq + 1, (batch,), generator=gen, dtype=torch.int32)
        lengths[0] = seq  # one sequence without padding
        got = op(q, k, v, lengths, seq, dim**-0.5)
        want = reference_kernel(q.float(), k.float(), v.float(), lengths, seq, dim**-0.5)
        real = (torch.arange(seq)[None, :] < lengths[:, None]).flatten()  # padded query rows are never read
        torch.testing.assert_close(got.float()[real], want[real], atol=2e-3, rtol=2e-3)
        # Packed rows (engine.packing): the same rows, attention within each token's segment id.
        segments = torch.randint(0, 3, (batch * seq,), generator=gen, dtype=torch.int32)
        got = op(q, k, v, segments, seq, dim**-0.5, True)
        same = segments.view(batch, seq)[:, None, :, None] == segments.view(batch, seq)[:, None, None, :]
        qs, ks, vs = (x.float().reshape(batch, seq, heads, dim).transpose(1, 2) for x in (q, k, v))
        want = sdpa(qs, ks, vs, attn_mask=same, scale=dim**-0.5).transpose(1, 2).reshape(batch * seq, heads, dim)
        torch.testing.assert_close(got.float(), want, atol=2e-3, rtol=2e-3)
    print("4 shapes match")


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
