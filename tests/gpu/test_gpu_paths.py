"""The GPU paths on a real card: NVML windows, engines against eager, ela's attention kernels, a real sweep."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest
import torch

from ela.measure.loops import idle_power
from ela.measure.meters import WindowMeter, tick_period_s
from ela.measure.nvml import NvmlCounter, card_state, gpu_info
from ela.runtime.device import synchronizer

DEVICE = torch.device("cuda", 0)


def busy(seconds: float) -> None:
    """Keep the GPU busy with bf16 matmuls for about this long."""
    x = torch.randn(4096, 4096, device=DEVICE, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            x = (x @ x).clamp_(-1, 1)
        torch.cuda.synchronize(DEVICE)


def test_nvml_window_is_the_counter_difference_and_above_idle():
    gpu = gpu_info(DEVICE)
    counter = NvmlCounter(gpu.handle)
    meter = WindowMeter(counter, synchronizer(DEVICE))
    tick = tick_period_s(counter, max_s=1.0)
    assert tick is not None and 0.01 < tick < 1.0  # NVML's counter moves in steps (~100 ms on an H200)
    idle = idle_power(meter, max_settle_s=5.0, window_s=2.0)
    e0 = counter.read_j()
    meter.begin_window("busy")
    busy(3.0)
    window = meter.end_window("busy")
    e1 = counter.read_j()
    assert window.method == "nvml-counter" and window.duration_s >= 2.9
    assert 0 < window.energy_j <= e1 - e0  # the window is inside the raw reads around it
    assert idle.power_w < window.avg_power_w <= gpu.power_limit_w * 1.1
    state = card_state(gpu)
    assert state["sm_clock_mhz"] > 0 and state["power_limit_w"] == pytest.approx(gpu.power_limit_w)
    assert gpu.tags()["gpu.name"] == torch.cuda.get_device_name(DEVICE)


@pytest.mark.parametrize("name, mode", [("cudagraph", None), ("compile", "reduce-overhead"), ("compile", "default")])
def test_engines_agree_with_eager_on_the_card(small_model, sst2, name, mode):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ela.config import EngineConfig
    from ela.measure.loops import make_forward, predict
    from ela.runtime.data import tokenize
    from ela.runtime.engines import build

    texts = [line.split("\t")[0] for line in (sst2 / "dev.tsv").read_text().splitlines()[1:97]]
    batches = tokenize(AutoTokenizer.from_pretrained(small_model), texts, 16, 64, [16, 32, 64]).to(DEVICE)
    model = AutoModelForSequenceClassification.from_pretrained(small_model).eval().to(DEVICE, torch.bfloat16)
    eager = predict(make_forward(model, contextlib.nullcontext), batches)
    engine = EngineConfig(
        name=name, compile_mode=mode, buckets=[16, 32, 64], fullgraph=True, freezing=name == "compile"
    )
    forward, setup_s = build(engine, model, contextlib.nullcontext, batches, DEVICE, synchronizer(DEVICE))
    got = predict(forward, batches)
    assert setup_s > 0
    assert (got.argmax(-1) == eager.argmax(-1)).float().mean() >= 0.99
    torch.testing.assert_close(got, eager, atol=0.05, rtol=0.05)  # bf16 noise, not another function
    torch._dynamo.reset()


@pytest.mark.parametrize("attn", ["sdpa", "padded_varlen", "padded_triton"])
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_packed_rows_give_the_padded_models_predictions(small_model, sst2, attn, mode):
    """engine.packing on the card: FlashAttention varlen over packed offsets (or sdpa's block mask),
    eager and compiled with CUDA graphs, against transformers' own model on padded batches."""
    from ela.config import EngineConfig, ModelConfig
    from ela.measure.loops import make_forward, predict
    from ela.runtime import packing
    from ela.runtime.data import tokenize
    from ela.runtime.models import load_model

    texts = [line.split("\t")[0] for line in (sst2 / "dev.tsv").read_text().splitlines()[1:129]]
    cfg = ModelConfig("small", str(small_model), None, 64, "sdpa", False)
    stock = load_model(cfg)
    tok, eager = stock.tokenizer, stock.model.to(DEVICE, torch.bfloat16)
    want = predict(make_forward(eager, contextlib.nullcontext), tokenize(tok, texts, 32, 64).to(DEVICE))
    model = packing.PackedClassifier(load_model(cfg.__class__(**{**cfg.__dict__, "attn_implementation": attn})).model)
    model = model.to(DEVICE, torch.bfloat16)
    batches = tokenize(tok, texts, 32, 64, packing=(64, packing.first_position(model.config))).to(DEVICE)
    assert batches.padding_fraction < 0.2
    engine = EngineConfig("compile" if mode else "eager", mode, None, True, False, packing=64)
    forward, _ = build_engine(engine, model, batches)
    got = predict(forward, batches)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.99
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.05)  # bf16 noise, not another function
    torch._dynamo.reset()


def build_engine(engine, model, batches):
    """ela's engine build on the card, as a job calls it."""
    from ela.runtime.engines import build

    return build(engine, model, contextlib.nullcontext, batches, DEVICE, synchronizer(DEVICE))


@pytest.mark.parametrize("name", ["padded_varlen", "padded_triton"])
@pytest.mark.parametrize("seq", [32, 128])
def test_ela_attention_kernels_give_masked_attention(name, seq):
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    from ela.runtime import attention

    attention.register(name)
    b, h, d = 8, 12, 64
    q, k, v = (torch.randn(b * seq, h, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    lengths = torch.randint(seq // 4, seq + 1, (b,), device=DEVICE, dtype=torch.int32)
    got = attention.KERNELS[name](q, k, v, lengths, seq, d**-0.5).float()
    qs, ks, vs = (x.float().reshape(b, seq, h, d).transpose(1, 2) for x in (q, k, v))
    real = torch.arange(seq, device=DEVICE)[None, :] < lengths[:, None]
    want = sdpa(qs, ks, vs, attn_mask=real[:, None, None, :], scale=d**-0.5).transpose(1, 2).reshape(b * seq, h, d)
    rows = real.reshape(-1)  # padded query rows are not compared: nothing reads them
    assert (got[rows] - want[rows]).abs().max() < 2e-2


def test_a_small_sweep_on_the_card_measures_with_nvml(small_model, sst2, tmp_path):
    from mlflow.tracking import MlflowClient

    cmd = [sys.executable, "-m", "ela.run", "-m", "precision=fp32,bf16", "batch=16", "model=local",
           f"model.path={small_model}", f"dataset.path={sst2}", "dataset.limit=256", "measure.min_window_s=1.5",
           "measure.repeats=2", "measure.idle_window_s=1", "measure.idle_max_settle_s=3",
           f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"hydra.sweep.dir={tmp_path / 'multirun'}"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=os.getcwd(), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ela").experiment_id])
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(kids) == 2 and all(r.info.status == "FINISHED" for r in kids)
    for r in kids:
        m, t = r.data.metrics, r.data.tags
        assert t["ela.method.energy"] == "nvml-counter" and t["ela.energy_scope"] == "gpu" and t["gpu.name"]
        assert m["energy_j_per_sample"] > 0 and m["idle_power_w"] > 0 and m["nvml_counter_tick_ms"] > 0
        assert m["codecarbon_gpu_energy_kwh"] > 0  # CodeCarbon tracked the same card
        assert m["cost_ms_per_sample"] > 0 and m["batch_latency_ms_p50"] > 0
        assert m["code_import_s"] > 0  # the model's code imported before the job queued for the card
    print("\n" + proc.stdout[-2500:])  # the sweep's table, for benchmarks/README.md


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_fused_projections_on_the_card(mode):
    """model.fuse_projections in bf16 on the GPU, eager and compiled into CUDA graphs: stock logits within bf16."""
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    from ela.runtime.fuse import fuse_projections

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2)  # fmt: skip
    stock = LlamaForCausalLM(config).eval().to(DEVICE, torch.bfloat16)
    fused = copy.deepcopy(stock)
    assert fuse_projections(fused) == {"qkv": 2, "gate_up": 2}
    ids = torch.randint(0, 512, (4, 24), device=DEVICE)
    forward = fused.forward if mode is None else torch.compile(fused.forward, mode=mode, fullgraph=True)
    with torch.inference_mode():
        want = stock(input_ids=ids).logits.float()
        for _ in range(3):  # CUDA graphs: recorded, then replayed
            got = forward(input_ids=ids).logits.float()
    torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_fp8_linears_on_the_card(small_model, sst2, mode):
    """precision=fp8 on the GPU (sm_89+): float8 matmuls, eager and compiled into CUDA graphs, keep bf16's argmax."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ela.config import EngineConfig
    from ela.measure.loops import make_forward, predict
    from ela.runtime import fp8
    from ela.runtime.data import tokenize
    from ela.runtime.engines import build

    if torch.cuda.get_device_capability(DEVICE) < (8, 9):
        pytest.skip("no float8 tensor cores on this card")
    texts = [line.split("\t")[0] for line in (sst2 / "dev.tsv").read_text().splitlines()[1:97]]
    batches = tokenize(AutoTokenizer.from_pretrained(small_model), texts, 16, 64, [16, 32, 64]).to(DEVICE)
    model = AutoModelForSequenceClassification.from_pretrained(small_model).eval().to(DEVICE, torch.bfloat16)
    bf16 = predict(make_forward(model, contextlib.nullcontext), batches)
    assert fp8.convert(model).startswith("13 of 14")  # 2 layers x 6 + the head's dense; its 2-output proj kept
    forward = make_forward(model, contextlib.nullcontext)
    if mode is not None:
        engine = EngineConfig(name="compile", compile_mode=mode, buckets=[16, 32, 64], fullgraph=True, freezing=True)
        forward, _ = build(engine, model, contextlib.nullcontext, batches, DEVICE, synchronizer(DEVICE))
    got = predict(forward, batches)
    assert (got.argmax(-1) == bf16.argmax(-1)).float().mean() >= 0.95
    torch._dynamo.reset()


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_gelu_epilogue_on_the_card(small_model, sst2, mode):
    """model.fuse_gelu: no GELU kernel of its own runs (stock bf16 has one), and the logits stay stock's."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ela.config import EngineConfig
    from ela.measure.loops import make_forward, predict
    from ela.runtime.data import tokenize
    from ela.runtime.engines import build
    from ela.runtime.epilogue import fuse_gelu

    texts = [line.split("\t")[0] for line in (sst2 / "dev.tsv").read_text().splitlines()[1:97]]
    batches = tokenize(AutoTokenizer.from_pretrained(small_model), texts, 16, 64, [16, 32, 64]).to(DEVICE)
    model = AutoModelForSequenceClassification.from_pretrained(small_model).eval().to(DEVICE, torch.bfloat16)

    def kernels(forward) -> tuple[list[str], list[str]]:
        """GELU kernels of their own (and aten GELU calls), and matmul kernels, in one pass over the batches."""
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            predict(forward, batches)
            torch.cuda.synchronize(DEVICE)
        names = [e.key for e in prof.key_averages()]
        print(mode, names)  # the matmul kernels' names show whether cuBLASLt ran an epilogue
        matmul = ("gemm", "nvjet", "xmma", "cutlass", "cublas", "splitk")  # an epilogue may put "gelu" in their names
        mm = [n for n in names if any(m in n.lower() for m in matmul)]
        return [n for n in names if "gelu" in n.lower() and n not in mm], mm

    stock = make_forward(model, contextlib.nullcontext)
    want = predict(stock, batches)
    assert kernels(stock)[0]  # the check below is not vacuous: stock runs GELU as kernels of its own
    assert fuse_gelu(model, "cuda").startswith("2 intermediate layers; cuBLASLt GELU epilogue")
    forward = make_forward(model, contextlib.nullcontext)
    if mode is not None:
        engine = EngineConfig(name="compile", compile_mode=mode, buckets=[16, 32, 64], fullgraph=True, freezing=True)
        forward, _ = build(engine, model, contextlib.nullcontext, batches, DEVICE, synchronizer(DEVICE))
    got = predict(forward, batches)
    gelu, mm = kernels(forward)
    assert gelu == []  # no GELU kernel, no aten::gelu call (torch's fallback when cuBLASLt can't take it)
    assert mm or mode is not None  # eager launches its matmuls in view (CUDA-graph replays may not show them)
    torch.testing.assert_close(got.float(), want.float(), rtol=3e-2, atol=3e-2)
    torch._dynamo.reset()
