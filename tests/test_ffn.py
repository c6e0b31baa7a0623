"""ela's fused up-projection + GELU on CPU: the transformers plumbing (module swap, autocast, compiled graph,
the stock-kernel references) with a reference kernel standing in for the CUDA one, ela's Triton kernel in
Triton's CPU interpreter, and refusals where it can't run. On the GPU the whole model is checked against
transformers' eager by benchmarks/engines.py (agreement and largest logit difference)."""

import contextlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import MODEL
from test_attention import BF16, FP32, TEXTS, reference_kernel
from test_models import CFG
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ela import ElaError, attention, ffn
from ela.config import EngineConfig
from ela.data import tokenize
from ela.engines import build
from ela.models import load_model, stock_kernels

FUSED = replace(CFG, ffn_implementation="fused_gelu")


def reference_linear_gelu(x, weight, bias):
    """What ela's kernel computes: exact GELU of the up-projection."""
    return F.gelu(F.linear(x, weight, bias))


def test_fused_gelu_gives_transformers_logits_eager_autocast_and_compiled(monkeypatch):
    calls = []
    monkeypatch.setitem(ffn.KERNELS, ffn.FUSED_GELU, lambda *a: calls.append(a[0].dtype) or reference_linear_gelu(*a))
    inputs = tokenize(AutoTokenizer.from_pretrained(MODEL), TEXTS, 3, 64, [16]).inputs[0]
    fused, stock = load_model(FUSED).model, load_model(CFG).model
    layers = fused.config.num_hidden_layers
    assert sum(isinstance(m, ffn.FusedGeluIntermediate) for m in fused.modules()) == layers
    assert fused.state_dict().keys() == stock.state_dict().keys()  # same parameters, same names
    with torch.inference_mode():
        want = stock(**inputs).logits
        torch.testing.assert_close(fused(**inputs).logits, want, atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", torch.bfloat16):  # the casts autocast's linear would make, made by ela
            torch.testing.assert_close(fused(**inputs).logits, stock(**inputs).logits, atol=0, rtol=0)
    assert calls == [torch.float32] * layers + [torch.bfloat16] * layers
    with torch.inference_mode(), stock_kernels(fused):  # the references run transformers' own two steps
        torch.testing.assert_close(fused(**inputs).logits, want, atol=1e-5, rtol=1e-5)
    assert len(calls) == 2 * layers
    monkeypatch.setitem(ffn.KERNELS, ffn.FUSED_GELU, reference_linear_gelu)  # (dynamo can't trace the counting)
    engine = EngineConfig(name="compile", compile_mode="default", buckets=[16], fullgraph=True, freezing=True)
    batches = tokenize(AutoTokenizer.from_pretrained(MODEL), TEXTS, 3, 64, [16])
    forward, _ = build(engine, fused, contextlib.nullcontext, batches, torch.device("cpu"), lambda: None)
    torch.testing.assert_close(forward(batches.inputs[0]), want, atol=1e-4, rtol=1e-4)  # traced whole
    torch._dynamo.reset()


def test_stock_kernels_switches_padded_attention_to_sdpa_and_back(monkeypatch):
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


def test_triton_kernel_gives_linear_then_exact_gelu():
    """ela's Triton kernel itself, in Triton's CPU interpreter (fp16: it has no bf16), at explicit tile
    sizes (autotuning needs a GPU), on a strided input and a transposed weight. Own process: the
    interpreter must be on before anything imports Triton."""
    proc = subprocess.run(
        [sys.executable, "-c", "import test_ffn as t; t.interpreted_kernel_check()"],
        cwd=Path(__file__).parent,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "4 shapes match"


def interpreted_kernel_check() -> None:
    """The kernel against F.gelu(F.linear(...)) in fp32 (run by the test above, in its own process)."""
    _, kernel, _ = ffn._triton_op()
    gen = torch.Generator().manual_seed(0)
    shapes = ((2, 32, 128, 64, 32), (1, 37, 96, 80, 16), (1, 5, 40, 24, 16), (3, 16, 64, 256, 64))
    for batch, m, n, k, tile in shapes:  # edges in M, N and K; K longer than one tile
        wide = torch.randn(batch, m, 2 * k, generator=gen).half()
        x = wide[..., :k]  # rows 2k apart, as a slice of a wider activation
        w = (torch.randn(k, n, generator=gen) / k**0.5).half().t()  # [N, K] with K-stride N
        b = torch.randn(n, generator=gen).half() if n != 40 else None
        got = ffn.launch(kernel, x, w, b, BLOCK_M=tile, BLOCK_N=tile, BLOCK_K=tile, GROUP_M=2)
        want = reference_linear_gelu(x.float(), w.float(), None if b is None else b.float())
        torch.testing.assert_close(got.float(), want, atol=4e-3, rtol=4e-3)  # fp16 output rounding
    print("4 shapes match")


@pytest.mark.parametrize(
    "precision, device, message",
    [
        (BF16, "cpu", "model.ffn_implementation=fused_gelu runs a CUDA kernel; this job runs on cpu"),
        (FP32, "cuda", "needs fp16/bf16 activations; precision=fp32 computes in fp32"),
    ],
)
def test_fused_gelu_is_refused_where_it_cannot_run(precision, device, message):
    with pytest.raises(ElaError, match=message):
        ffn.check(ffn.FUSED_GELU, precision, torch.device(device))
    ffn.check(ffn.DEFAULT, FP32, torch.device("cpu"))  # transformers' own: nothing to check


def test_fused_gelu_refuses_other_activations():
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, hidden_act="gelu_new")  # tanh GELU
    with pytest.raises(ElaError, match="exact GELU.*NewGELUActivation.*hidden_act=gelu_new.*=default"):
        ffn.apply(model, ffn.FUSED_GELU)
    with pytest.raises(ElaError, match="has no such block"):
        ffn.apply(torch.nn.Sequential(torch.nn.Linear(2, 2)), ffn.FUSED_GELU)
