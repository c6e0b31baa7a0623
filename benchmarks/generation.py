"""Decoding on the GPU: ela's generation job path over model shapes x precision x batch x engine, one table.

Each row is one `task=generation` job (`ela.job.measure_job`, as a sweep runs it) with a fixed workload
(SST-2 prompts left-padded to one 96-token bucket, `--new-tokens` forced), printed as soon as it ends: TTFT
p50, TPOT p50, output tokens/s, J per output token, J per prompt token, setup s, and the decode step's
ratio to its bandwidth floor: (weight bytes + KV-cache bytes read per step) / measured copy bandwidth.
Random-weight shapes (make_lm.py --kind shape) are timed with `task.scoring=none`: no quality figure is
reported for them. `--quality DIR` adds the tiny LM's next-token-choice accuracy on the whole dev split.

    python benchmarks/generation.py --models /tmp/models/llama-3.2-1b --data DIR_WITH_dev.tsv \
        [--precisions fp32,bf16,bf16_pure] [--batches 1,8,64] [--engines eager,compile,cudagraph] \
        [--attention sdpa,sdpa_grouped] [--fuse false,true] [--quality DIR]

Engines: eager is transformers' `generate`; compile (reduce-overhead here) and cudagraph are ela's own
decoding loop over a static KV cache (`ela/runtime/decode.py`), no synchronisation between steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from ela.config import to_container, validate
from ela.job import measure_job

CONF = Path(__file__).resolve().parent.parent / "conf"
BUCKET = 96  # every prompt padded to this length: one compiled shape per batch size (SST-2 dev prompts: <= 68 here)
BYTES = {"fp32": 4, "bf16": 4, "bf16_pure": 2, "fp16": 4, "fp16_pure": 2}  # weight bytes read per parameter


def copy_bandwidth(gib: float = 2.0) -> float:
    """Device memory bandwidth in bytes/s from timed copies (read + write) of a `gib` GiB buffer."""
    src = torch.empty(int(gib * 2**30), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    t0, n = time.perf_counter(), 20
    for _ in range(n):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * src.numel() * n / (time.perf_counter() - t0)


def step_bytes(model_dir: str, precision: str, batch: int, cache_len: int) -> float:
    """Bytes one decoding step must read: every weight once, and the KV cache of every sequence."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    layers, hidden, vocab = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    kv_heads, head_dim = cfg.get("num_key_value_heads", heads), cfg.get("head_dim", hidden // heads)
    ffn = cfg["intermediate_size"]
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q, o and k, v projections
    params = layers * (attn + 3 * hidden * ffn) + vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    kv_bytes = 2 if precision != "fp32" else 4  # the cache holds the compute dtype
    kv = 2 * layers * kv_heads * head_dim * cache_len * batch * kv_bytes
    return params * BYTES[precision] + kv


def job(overrides: list[str]) -> dict:
    """One generation job through ela's job path; its metrics and tags."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = validate(to_container(compose("config", overrides=overrides)))
    out = measure_job(cfg, Path("/tmp/ela-generation"))
    return {**out.metrics, **out.tags}


def hand_loop(
    model_dir: str, batch: int, new_tokens: int, precision: str = "bf16_pure", compiled: bool = False,
    attn: str = "sdpa", reps: int = 10, fuse: bool = False, tuned: bool = False,
) -> tuple[float, float]:  # fmt: skip
    """A cross-check of ela's per-step CUDA events: ela's captured decoder (compiled or not) timed from outside.

    bf16_pure: bf16 weights; bf16: fp32 weights under bf16 autocast. Whole generations and prefills of
    random prompts (BUCKET tokens) timed with perf_counter around `reps` back-to-back calls, synchronised
    only at the ends; returns (ms per decode step, ms per prefill). `fuse` and `tuned` (inductor's
    coordinate descent) as the row's `model.fuse_projections` and `engine.coordinate_descent`, so that the
    check times the same decoder.
    """
    import contextlib

    from transformers import AutoModelForCausalLM

    from ela.runtime import attention
    from ela.runtime.decode import StaticDecoder
    from ela.runtime.fuse import fuse_projections

    if attn in attention.NAMES:
        attention.register(attn)
    weights = torch.bfloat16 if precision == "bf16_pure" else torch.float32
    autocast = (lambda: torch.autocast("cuda", torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=weights, attn_implementation=attn)
    model = model.cuda().eval()
    if fuse:
        fuse_projections(model)
    ids = torch.randint(100, model.config.vocab_size, (batch, BUCKET), device="cuda")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    compile = {"fullgraph": True, "mode": None} if compiled else None
    decoder = StaticDecoder(model, autocast, new_tokens, None, compile=compile, capture=True)
    with torch._inductor.config.patch(coordinate_descent_tuning=tuned):
        decoder.prepare(inputs)

    def timed(fn) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(inputs)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000 / reps

    prefill, whole = timed(decoder.prefill), timed(decoder)
    del model, decoder
    torch.cuda.empty_cache()
    return (whole - prefill) / (new_tokens - 1), prefill


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated model folders (random-weight shapes)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--precisions", default="fp32,bf16,bf16_pure")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--engines", default="eager,compile,cudagraph")
    ap.add_argument("--attention", default="sdpa", help="model.attn_implementation values, e.g. sdpa,sdpa_grouped")
    ap.add_argument("--fuse", default="false", help="model.fuse_projections values, e.g. false,true")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--window-s", type=float, default=2.0)
    ap.add_argument("--quality", help="the tiny LM's folder: its accuracy by precision on the whole dev split")
    ap.add_argument(
        "--set", nargs="*", default=[], help="more overrides for every row, e.g. engine.coordinate_descent=true"
    )
    ap.add_argument("--hand", action="store_true", help="first, a hand-timed decode per model and batch (bf16)")
    ap.add_argument("--hand-after", action="store_true", help="after each compile row, its decoder timed by hand")
    args = ap.parse_args()
    bw = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bw / 1e12:.2f} TB/s")
    common = [
        "task=generation", "model=local", f"dataset.path={args.data}", f"engine.buckets=[{BUCKET}]",
        f"model.max_length={BUCKET}",
        f"measure.min_window_s={args.window_s}", "measure.repeats=2", "measure.warmup_batches=0",
        "measure.idle_window_s=2", "measure.idle_max_settle_s=3", "codecarbon.enabled=false", *args.set,
    ]  # fmt: skip
    if args.hand:
        print("\n| hand loop (bf16 weights, cudagraph decoder, timed from outside) | batch | ms/step | prefill ms |")
        print("|---|---|---|---|")
        for model in args.models.split(","):
            for b in map(int, args.batches.split(",")):
                step, pre = hand_loop(model, b, args.new_tokens)
                print(f"| {Path(model).name} | {b} | {step:.3f} | {pre:.2f} |", flush=True)
    if args.quality:
        print("\n| tiny LM (trained) | accuracy | same output as fp32 | J/output token |\n|---|---|---|---|")
        for p in args.precisions.split(","):
            m = job([*common, f"model.path={args.quality}", f"precision={p}", "batch=64", "task.max_new_tokens=8"])
            print(f"| {p}-b64 | {m['accuracy']:.4f} | {m.get('generation_agreement_with_fp32', 1.0):.3f} "
                  f"| {m.get('energy_j_per_output_token', float('nan')):.5f} |", flush=True)  # fmt: skip
    print("\n| shape (random weights) | config | TTFT p50 ms | TPOT p50 ms | floor ms | TPOT/floor | tokens/s "
          "| J/output token | J/prompt token | setup s | same output as eager | verdict |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    axes = [args.models, args.engines, args.attention, args.fuse, args.precisions, args.batches]
    for model, engine, attn, fuse, p, batch in itertools.product(*(a.split(",") for a in axes)):
        b = int(batch)
        extra = ["engine.compile_mode=reduce-overhead"] if engine == "compile" else []
        overrides = [
            *common, *extra, f"model.path={model}", f"precision={p}", f"batch={b}", f"engine={engine}",
            f"dataset.limit={max(4, 2 * b)}", f"task.max_new_tokens={args.new_tokens}",
            "task.scoring=none", "measure.fp32_reference=false", f"model.attn_implementation={attn}",
            f"model.fuse_projections={fuse}",
        ]  # fmt: skip
        label = f"{p}-b{b}-{engine}" + ("" if attn == "sdpa" else f"-{attn}") + ("-fused" if fuse == "true" else "")
        try:
            m = job(overrides)
        except Exception as err:  # noqa: BLE001 (a row says why, the table goes on)
            print(f"| {Path(model).name} | {label} | FAILED: {type(err).__name__}: {err} |")
            continue
        floor = 1000 * step_bytes(model, p, b, BUCKET + args.new_tokens) / bw
        print(
            f"| {Path(model).name} | {label} | {m['ttft_ms_p50']:.1f} | {m['tpot_ms_p50']:.2f} "
            f"| {floor:.2f} | {m['tpot_ms_p50'] / floor:.1f}x | {m['output_tokens_per_s']:.0f} "
            f"| {m.get('energy_j_per_output_token', float('nan')):.4f} "
            f"| {m.get('prefill_energy_j_per_prompt_token', float('nan')):.5f} "
            f"| {m['engine_setup_s']:.1f} | {m.get('generation_agreement_with_eager', float('nan')):.3f} "
            f"| {m['ela.verdict']} |",
            flush=True,
        )
        if args.hand_after and engine == "compile":
            try:
                tuned = any(x.replace(" ", "").lower() == "engine.coordinate_descent=true" for x in args.set)
                step, pre = hand_loop(model, b, args.new_tokens, p, True, attn, fuse=fuse == "true", tuned=tuned)
            except Exception as err:  # noqa: BLE001
                print(f"| {Path(model).name} | {label}, hand-timed | FAILED: {type(err).__name__}: {err} |")
                continue
            print(f"| {Path(model).name} | {label}, hand-timed | | {step:.2f} | | | | | | (prefill {pre:.2f} ms) | |")


if __name__ == "__main__":
    main()
