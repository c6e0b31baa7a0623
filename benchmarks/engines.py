"""ela's engines against hand-written references and the hardware floor (GPU machine).

For each precision x batch (sequence length fixed at --seq: every SST-2 dev sentence truncated or
padded to it, the first 832 sentences so every batch has the same shape), in one process:

- ela's engines, built by `ela.engines.build` exactly as a job builds them: ms/sample and J/sample
  (NVML counter over whole passes, as a job's energy windows), dynamic J/sample (minus idle power),
  setup s (compile/capture), agreement of predictions with eager in the same precision (and the
  largest logit difference from eager);
- hand-written references on one fixed input batch: `torch.compile(model, mode="reduce-overhead")`
  called in a loop, and a raw CUDA-graph replay loop (capture once, `replay()` only, no input copy);
- the floor per batch: max(FLOPs / measured bf16 matmul rate, bytes / measured copy bandwidth), where
  FLOPs are the model's matmuls and attention and bytes are the weights in bf16 (embedding rows
  actually gathered) plus every linear layer reading its input and writing its output once in bf16.

Prints one Markdown table (and writes CSV rows to --csv as it goes, so a cut-off run keeps them):

    python benchmarks/engines.py --model DIR --data DIR_WITH_dev.tsv \
        [--precisions fp32,bf16,bf16_pure] [--batches 1,8,64] \
        [--engines eager,cudagraph,compile:reduce-overhead] [--autotune-batches 64] [--attn sdpa]

An engine spec is `eager`, `cudagraph` or `compile:<mode>`; `+freezing` after a compile spec sets
engine.freezing=true (inductor folds the weights in as constants, e.g. autocast's weight casts), `+cd`
engine.coordinate_descent=true (inductor tunes every kernel's launch config).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from functools import partial
from pathlib import Path

import torch
import yaml

from ela.config import EngineConfig, ModelConfig, PrecisionConfig
from ela.measure.loops import Forward, energy_window, idle_power, make_forward, predict, warmup
from ela.measure.meters import WindowMeter
from ela.measure.nvml import NvmlCounter, gpu_info
from ela.runtime import fp8
from ela.runtime.data import Batches, tokenize
from ela.runtime.device import DTYPE, autocast, set_tf32, synchronizer
from ela.runtime.engines import build
from ela.runtime.epilogue import GeluLinear
from ela.runtime.models import apply_precision, load_model, stock_kernels

CONF = Path(__file__).resolve().parent.parent / "conf"
SAMPLES = 832  # 13 x 64: every batch size here divides it, so every batch has one shape


def best_time(fn, iters: int, device: torch.device, trials: int = 5) -> float:
    """Seconds per call of fn on the GPU (CUDA events), the best of `trials` timings of `iters` calls."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        best = min(best, start.elapsed_time(end) / 1000 / iters)
    return best


def fp8_rate(device: torch.device) -> float:
    """Measured float8 (e4m3, rowwise-scaled) matmul FLOP/s at 8192^3, as precision=fp8's layers run it."""
    n = 8192
    a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major, as _scaled_mm takes it
    sa, sb = torch.ones(n, 1, device=device), torch.ones(1, n, device=device)
    mm = lambda: torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)  # noqa: E731
    return 2 * n**3 / best_time(mm, 50, device)


def peak_rates(device: torch.device) -> tuple[float, float]:
    """Measured bf16 matmul FLOP/s (8192^3) and device copy bandwidth (bytes read + written per s).

    Each the best of 5 timings: one timing varied by +-4% between runs on one card, and a floor from a
    slow timing would flatter every ratio to it.
    """
    timed = partial(best_time, device=device)
    n = 8192
    m1 = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    m2 = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    flops = 2 * n**3 / timed(lambda: m1 @ m2, 50)
    src = torch.empty(2**30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() / timed(lambda: dst.copy_(src), 50)
    return flops, bandwidth  # the buffers go when this returns


def work(model: torch.nn.Module, batch: int, seq: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one forward pass at this shape; see the module docstring for what is counted."""
    cfg, tokens = model.config, batch * seq
    flops = act = 0.0
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Linear, fp8.Fp8Linear, GeluLinear)):  # fp8 and fuse_gelu replace nn.Linear
            rows = batch if name.startswith("classifier") else tokens  # the head sees the first token only
            flops += 2 * rows * mod.in_features * mod.out_features
            act += 2 * rows * (mod.in_features + mod.out_features)
    flops += 4 * batch * seq * seq * cfg.hidden_size * cfg.num_hidden_layers  # QK^T and PV
    embed = model.get_input_embeddings().weight
    params = sum(p.numel() for p in model.parameters()) - embed.numel()
    f8 = sum(m.weight_fp8.numel() for m in model.modules() if isinstance(m, fp8.Fp8Linear))  # buffers, 1 byte
    weights = 2 * (params + tokens * embed.shape[1]) + f8
    return flops, weights + act


def hand_compile(model, amp, one: dict[str, torch.Tensor]) -> tuple[Forward, float]:
    """Reference: torch.compile(reduce-overhead) called on one fixed input."""
    torch._dynamo.reset()
    t0 = time.perf_counter()
    compiled = torch.compile(model, mode="reduce-overhead")

    def forward(_inputs):
        with torch.inference_mode(), amp():
            return compiled(**one).logits

    for _ in range(3):
        forward(one)
    torch.cuda.synchronize()
    return forward, time.perf_counter() - t0


def hand_graph(model, amp, one: dict[str, torch.Tensor]) -> tuple[Forward, float]:
    """Reference: capture one forward on a fixed input, then only replay it."""
    t0 = time.perf_counter()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode(), amp():
        for _ in range(3):
            model(**one)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode(), amp():
        out = model(**one).logits

    def forward(_inputs):
        graph.replay()
        return out

    torch.cuda.synchronize()
    return forward, time.perf_counter() - t0


def measure(forward: Forward, on: Batches, meter: WindowMeter, idle_w: float, window_s: float, n: int) -> dict:
    """Warm up, then n energy windows of whole passes (ela's own window code): per-sample figures."""
    warmup(forward, on, 10, meter.sync)
    ws = [energy_window(forward, on, meter.sync, meter, window_s) for _ in range(n)]
    per_j = [w.window.energy_j / w.samples for w in ws]
    secs, joules = sum(w.duration_s for w in ws), sum(w.window.energy_j for w in ws)
    samples = sum(w.samples for w in ws)
    return {
        "ms_per_sample": 1000 * secs / samples,
        "j_per_sample": joules / samples,
        "dynamic_j_per_sample": (joules - idle_w * secs) / samples,
        "window_cv": statistics.pstdev(per_j) / statistics.mean(per_j),
    }


def engine(spec: str, seq: int) -> EngineConfig:
    """`compile:<mode>[+freezing][+cd]`, `cudagraph` or `eager` as ela's engine config at one bucket.

    `+cd`: inductor's coordinate-descent tuning of every kernel's launch config (`engine.coordinate_descent`).
    """
    name, _, rest = spec.partition(":")
    mode, *flags = rest.split("+")
    unknown = set(flags) - {"freezing", "cd"}
    if unknown:
        raise ValueError(f"engine spec {spec!r}: unknown flag(s) {sorted(unknown)}; known: +freezing, +cd")
    return EngineConfig(
        name=name,
        compile_mode=mode or None,
        buckets=[seq],
        fullgraph=True,
        freezing="freezing" in flags,
        coordinate_descent="cd" in flags,
    )


KERNELS = {  # kernel-name fragments -> what the kernel does
    "matmul": ("gemm", "cutlass", "triton_mm", "nvjet", "sm90_xmma", "sm80_xmma", "cublas", "splitk"),
    "attention": ("fmha", "attention", "flash", "sdpa", "efficient"),
}


def profile(forward: Forward, one: dict[str, torch.Tensor], iters: int = 20, top_n: int = 12) -> str:
    """GPU time per forward by kernel kind, against wall time, and the top kernels by name."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(iters):
            forward(one)
        torch.cuda.synchronize()
        wall_ms = 1000 * (time.perf_counter() - t0) / iters
    kinds: dict[str, float] = {}
    by_name: dict[str, float] = {}
    count = 0
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        name = e.name.lower()
        kind = next((k for k, frags in KERNELS.items() if any(f in name for f in frags)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + e.device_time_total / 1000 / iters
        by_name[e.name] = by_name.get(e.name, 0.0) + e.device_time_total / 1000 / iters
        count += 1
    busy = sum(kinds.values())
    parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:top_n]
    lines = "".join(f"\n    {ms:.4f} ms  {name[:110]}" for name, ms in top)
    return f"wall {wall_ms:.3f} ms/batch, GPU busy {busy:.3f} ms ({parts}), {count / iters:.0f} kernels{lines}"


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--precisions", default="fp32,bf16,bf16_pure")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--engines", default="eager,cudagraph,compile:reduce-overhead")
    ap.add_argument("--autotune-batches", default="64", help="also compile:max-autotune at these batch sizes")
    ap.add_argument("--extra", default="", help="more engine specs, at --autotune-batches only")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--window-s", type=float, default=2.0)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--no-refs", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print each ela engine's GPU time by kernel kind")
    ap.add_argument("--csv", default="engines.csv")
    a = ap.parse_args()

    device = torch.device("cuda", 0)
    sync = synchronizer(device)
    gpu = gpu_info(device)
    meter = WindowMeter(NvmlCounter(gpu.handle), sync)
    flops_rate, bandwidth = peak_rates(device)
    torch.cuda.empty_cache()
    print(f"card: {gpu.name}, driver {gpu.driver}, torch {torch.__version__}, attention {a.attn}, seq {a.seq}")
    print(f"measured: bf16 matmul {flops_rate / 1e12:.0f} TFLOP/s, copy {bandwidth / 1e12:.2f} TB/s (read + write)")
    idle = idle_power(meter, 15.0, 3.0)
    print(f"idle power {idle.power_w:.1f} W (settled after {idle.settle_s:.1f} s)\n", flush=True)

    with open(Path(a.data) / "dev.tsv", encoding="utf-8", newline="") as f:
        texts = [r[0] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1 : SAMPLES + 1]
    out = open(a.csv, "a", newline="")  # noqa: SIM115 - rows are flushed as they come
    writer = csv.writer(out)
    print("| precision | batch | engine | ms/sample | ms/batch | J/sample | dynamic J/sample | window CV | setup s | "
          "agree eager (max abs logit diff) | x floor | x best hand ref |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for pname in a.precisions.split(","):
        p = PrecisionConfig(**yaml.safe_load((CONF / "precision" / f"{pname}.yaml").read_text()))
        loaded = load_model(ModelConfig("local", a.model, None, a.seq, a.attn, False))
        model = apply_precision(loaded.model, DTYPE[p.weights_dtype], device)
        set_tf32(p.tf32)

        def amp(p=p):
            return autocast(p, device)

        for batch in map(int, a.batches.split(",")):
            batches = tokenize(loaded.tokenizer, texts, batch, a.seq, [a.seq]).to(device)
            one = batches.inputs[0]
            fixed = Batches([one] * len(batches.inputs), batches.token_lengths, batches.indices)
            flops, nbytes = work(model, batch, a.seq)
            floor_ms = 1000 * max(flops / flops_rate, nbytes / bandwidth)
            with stock_kernels(model):  # transformers' own kernels: ela's (--attn) are compared too
                eager_logits = predict(make_forward(model, amp), batches)
            specs = a.engines.split(",")
            if str(batch) in a.autotune_batches.split(","):
                specs += ["compile:max-autotune"] + [s for s in a.extra.split(",") if s]
            rows = []

            for spec in specs:
                torch._dynamo.reset()
                forward = None
                try:
                    forward, setup_s = build(engine(spec, a.seq), model, amp, batches, device, sync)
                    logits = predict(forward, batches)
                    agree = float((logits.argmax(-1) == eager_logits.argmax(-1)).float().mean())
                    dlogit = float((logits.float() - eager_logits.float()).abs().max())
                    got = measure(forward, batches, meter, idle.power_w, a.window_s, a.windows)
                    rows.append(
                        {"engine": f"ela {spec}", **got, "setup_s": setup_s, "agreement": agree, "dlogit": dlogit}
                    )
                    if a.profile:
                        print(f"profile {pname} b{batch} {spec}: {profile(forward, one)}", flush=True)
                except Exception as err:  # noqa: BLE001 - a failing engine is a row, not the end of the table
                    print(f"| {pname} | {batch} | ela {spec} | FAILED: {type(err).__name__}: {str(err)[:200]} |")
                del forward
            if not a.no_refs:
                for label, make in (
                    ("hand compile(reduce-overhead)", hand_compile),
                    ("hand CUDA-graph replay", hand_graph),
                ):
                    forward, setup_s = make(model, amp, one)
                    got = measure(forward, fixed, meter, idle.power_w, a.window_s, a.windows)
                    rows.append({"engine": label, **got, "setup_s": setup_s, "agreement": None, "dlogit": None})
                    del forward
                    torch._dynamo.reset()
            refs = [r["ms_per_sample"] for r in rows if r["engine"].startswith("hand")]
            for r in rows:
                ms_batch = r["ms_per_sample"] * batch
                vs_ref = f"{r['ms_per_sample'] / min(refs):.3f}" if refs else "-"
                agree = "-" if r["agreement"] is None else f"{r['agreement']:.4f} ({r['dlogit']:.3f})"
                print(
                    f"| {pname} | {batch} | {r['engine']} | {r['ms_per_sample']:.4f} | {ms_batch:.3f} | "
                    f"{r['j_per_sample']:.4f} | {r['dynamic_j_per_sample']:.4f} | {100 * r['window_cv']:.1f}% | "
                    f"{r['setup_s']:.1f} | {agree} | {ms_batch / floor_ms:.2f} | {vs_ref} |",
                    flush=True,
                )
                writer.writerow(
                    [gpu.name, gpu.driver, torch.__version__, a.attn, a.seq, pname, batch, floor_ms, *r.values()]
                )
            out.flush()
            print(f"| {pname} | {batch} | floor | | {floor_ms:.3f} | | | | | | 1.00 | |", flush=True)
            torch._dynamo.reset()
        del model, loaded
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
