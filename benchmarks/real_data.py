"""ela's best engines on the real SST-2 dev split against the real-token floor (GPU machine).

Unlike engines.py (every sentence cut or padded to one length), every sentence keeps its own length, so
padding is what each batching mode really costs. For each mode x batch, in one process:

- ms/sample and J/sample from ela's energy windows (NVML counter over whole passes), dynamic J/sample
  (minus idle power), padding fraction and distinct shapes of the batches;
- setup s of the first build, and of a second build as a later job of a sweep makes it
  (`ela.runtime.kept`: the compiled module kept, only unseen shapes compiled);
- agreement of predictions with transformers' own eager model on padded batches, and the largest
  logit difference; accuracy against the split's labels;
- peak GPU memory of the row (torch.cuda.max_memory_allocated above what earlier rows left allocated);
- x floor: time per sample over the real-token floor, the FLOPs of the split's non-padding tokens (matmuls
  and attention, engines.work per sentence) at the bf16 matmul rate measured in the same run; for
  `--precision fp8` also at the float8 matmul rate measured there (its own floor: the bf16 one flatters it).

A mode is `<attention>/<batching>[+gelu]`: batching `pack<L>` (engine.packing=L), `buckets` (engine.buckets
16/32/64/128) or `buckets-by_length` (the same, sentences sorted by length first); `+gelu` adds
`model.fuse_gelu=true` (the intermediate matmul with cuBLASLt's GELU epilogue; "agree eager" is then against
the stock model). Rows go to --csv as they come, so a run cut off keeps them:

    python benchmarks/real_data.py --model DIR --data DIR_WITH_dev.tsv --precision bf16_pure \
        --rows padded_triton/buckets-by_length@1,64,256 padded_varlen/pack128@8,64,256,1024 [--profile]
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml
from engines import CONF, engine, fp8_rate, measure, peak_rates, profile, work

from ela.config import EngineConfig, ModelConfig, PrecisionConfig
from ela.measure.loops import idle_power, make_forward, predict
from ela.measure.meters import WindowMeter
from ela.measure.nvml import NvmlCounter, gpu_info
from ela.runtime import fp8, kept, packing
from ela.runtime.data import tokenize
from ela.runtime.device import DTYPE, autocast, set_tf32, synchronizer
from ela.runtime.epilogue import check_config, fuse_gelu
from ela.runtime.models import apply_precision, load_model, stock_kernels

BUCKETS = [16, 32, 64, 128]
MAX_LENGTH = 128
DEVICE = "cuda"  # (a CPU dry run of this script sets "cpu", with a fake meter in place of NVML)


def parse(row: str) -> tuple[str, str, bool, list[int]]:
    """`<attention>/<batching>[+gelu]@<batch>,...` -> attention, batching, fused GELU, batch sizes."""
    mode, _, sizes = row.partition("@")
    attn, batching = mode.split("/")
    return attn, batching.removesuffix("+gelu"), batching.endswith("+gelu"), [int(b) for b in sizes.split(",")]


def engine_for(spec: str, batching: str) -> EngineConfig:
    """The --engine spec with this mode's batching: packing rows, or buckets."""
    base = engine(spec, MAX_LENGTH)
    rows = int(batching.removeprefix("pack")) if batching.startswith("pack") else None
    return EngineConfig(**{**base.__dict__, "buckets": None if rows else BUCKETS, "packing": rows})


CARD_COLUMNS = ("card", "driver", "torch", "date", "precision", "engine")
ROW_COLUMNS = ("padding", "shapes", "setup_first_s", "setup_reused_s", "reuse", "agree_eager", "max_logit_diff",
               "accuracy", "peak_mb", "floor_ms_per_sample")  # fmt: skip


def main() -> None:
    """One table row per mode x batch size; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--precision", default="bf16_pure")
    ap.add_argument("--engine", default="compile:reduce-overhead+freezing")
    ap.add_argument("--rows", nargs="+", required=True, help="<attention>/<batching>@<batch>,<batch>...")
    ap.add_argument("--window-s", type=float, default=2.0)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--csv", default="real_data.csv")
    ap.add_argument("--profile", action="store_true", help="also print GPU time by kernel kind (largest batch)")
    a = ap.parse_args()

    device = torch.device(DEVICE, 0)
    sync = synchronizer(device)
    gpu = gpu_info(device)
    meter = WindowMeter(NvmlCounter(gpu.handle), sync)
    flops_rate, _ = peak_rates(device)
    torch.cuda.empty_cache()
    idle = idle_power(meter, 15.0, 3.0)
    with open(Path(a.data) / "dev.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts, labels = [r["sentence"] for r in rows], torch.tensor([int(r["label"]) for r in rows])
    p = PrecisionConfig(**yaml.safe_load((CONF / "precision" / f"{a.precision}.yaml").read_text()))
    for row in a.rows:  # a +gelu row the precision can't take is refused before anything is measured
        check_config(parse(row)[2], "classification", p.linear, p.autocast_dtype)
    set_tf32(p.tf32)

    def amp() -> object:
        return autocast(p, device)

    f8_rate = fp8_rate(device) if p.linear else None  # precision=fp8: also its own floor, at the float8 rate
    print(f"card: {gpu.name}, driver {gpu.driver}, torch {torch.__version__}, {a.precision}, engine {a.engine}")
    print(f"measured: bf16 matmul {flops_rate / 1e12:.0f} TFLOP/s"
          + (f", float8 matmul {f8_rate / 1e12:.0f} TFLOP/s" if f8_rate else "")
          + f"; idle {idle.power_w:.1f} W; {len(texts)} sentences")  # fmt: skip
    print(
        "| attention | batching | batch | ms/sample | J/sample | dynamic J/sample | padding | shapes | setup s "
        "(first / reused) | agree eager (max logit diff) | accuracy | peak MB | x real-token floor | x float8 floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    out = open(a.csv, "a", newline="")  # noqa: SIM115 - rows are flushed as they come
    writer = csv.writer(out)
    for row in a.rows:
        attn, batching, gelu, sizes = parse(row)
        label = batching + ("+gelu" if gelu else "")  # the row's name in the table and the CSV
        cfg = ModelConfig("local", a.model, None, MAX_LENGTH, attn, False, fuse_gelu=gelu)
        # What earlier rows left allocated is not this row's peak (ela's jobs count theirs the same way).
        base = torch.cuda.memory_allocated(device)
        loaded = load_model(cfg)
        inner = stock = apply_precision(loaded.model, DTYPE[p.weights_dtype], device)
        if p.linear:
            print(f"float8 linear layers: {fp8.convert(inner)}", flush=True)
        if gelu:  # the reference stays transformers' own model (its modules copied, the weights shared)
            stock = copy.deepcopy(inner, memo={id(t): t for t in (*inner.parameters(), *inner.buffers())})
            print(f"GELU epilogue: {fuse_gelu(inner, device.type)}", flush=True)
        order = "by_length" if batching.endswith("by_length") else "original"
        for batch in sizes:
            eng = engine_for(a.engine, batching)
            forward = None
            try:
                padded = tokenize(loaded.tokenizer, texts, batch, MAX_LENGTH, BUCKETS, order).to(device)
                with stock_kernels(stock):
                    want = predict(make_forward(stock, amp), padded)
                pack = (eng.packing, packing.first_position(inner.config)) if eng.packing else None
                batches = tokenize(loaded.tokenizer, texts, batch, MAX_LENGTH, eng.buckets, order, packing=pack)
                batches = batches.to(device)
                model = packing.PackedClassifier(inner) if eng.packing else inner
                job = SimpleNamespace(model=cfg, precision=p, engine=eng, reuse_engines=True, run_name=f"b{batch}")
                kept.clear()
                torch.cuda.reset_peak_memory_stats(device)
                forward, first_s, _ = kept.build(job, model, amp, batches, device, sync)
                _, reused_s, how = kept.build(job, model, amp, batches, device, sync)
                got = predict(forward, batches)
                agree = float((got.argmax(-1) == want.argmax(-1)).float().mean())
                dlogit = float((got - want).abs().max())
                accuracy = float((got.argmax(-1) == labels[batches.indices]).float().mean())  # batch order
                m = measure(forward, batches, meter, idle.power_w, a.window_s, a.windows)
                peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
                real_flops = sum(work(inner, 1, n)[0] for n in batches.token_lengths) / batches.num_samples
                floor_ms = 1000 * real_flops / flops_rate
                f8_floor = f"{m['ms_per_sample'] / (1000 * real_flops / f8_rate):.2f}" if f8_rate else "-"
                print(
                    f"| {attn} | {label} | {batch} | {m['ms_per_sample']:.4f} | {m['j_per_sample']:.4f} | "
                    f"{m['dynamic_j_per_sample']:.4f} | {100 * batches.padding_fraction:.1f}% | "
                    f"{len(batches.shapes)} | {first_s:.1f} / {reused_s:.2f} | {agree:.4f} ({dlogit:.3f}) | "
                    f"{accuracy:.4f} | {peak_mb:.0f} | {m['ms_per_sample'] / floor_ms:.2f} | {f8_floor} |",
                    flush=True,
                )
                card = [gpu.name, gpu.driver, torch.__version__, time.strftime("%Y-%m-%d"), a.precision, a.engine]
                shape = [attn, label, batch, *m.values(), batches.padding_fraction, len(batches.shapes)]
                if out.tell() == 0:  # a new file: its columns first
                    writer.writerow([*CARD_COLUMNS, "attention", "batching", "batch", *m, *ROW_COLUMNS])
                writer.writerow([*card, *shape, first_s, reused_s, how, agree, dlogit, accuracy, peak_mb, floor_ms])
                out.flush()
                if a.profile:
                    big = max(batches.inputs, key=lambda b: b["input_ids"].numel())
                    print(f"profile {attn}/{label} b{batch}: {profile(forward, big)}", flush=True)
            except Exception as err:  # noqa: BLE001 - a failing row (out of memory, say) is a row, not the end
                print(f"| {attn} | {label} | {batch} | FAILED: {type(err).__name__}: {str(err)[:300]} |", flush=True)
            forward = model = batches = padded = want = got = None  # nothing of this batch outlives it
            kept.clear()
            torch.cuda.empty_cache()
        del inner, stock, loaded
        gc.collect()  # the next row's base (its peak is counted above it) holds nothing of this row
        torch.cuda.empty_cache()
    print(f"real-token floor per sample: FLOPs of the non-padding tokens / {flops_rate / 1e12:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
