"""Does the untimed fp32 reference pass slow the fp16/bf16 forward timed after it (issue 12's lead)?

An fp16/bf16 job predicts once in fp32 (`agreement_with_fp32`) before its warm-up; an fp32 job does not. On quiet
H100s ela's fp16/bf16 cost was 1-4% above a hand loop while fp32's matched it. In one process, on one model, three
states alternate round by round (their order rotating), so a card that drifts moves them alike:
  plain      the CUDA allocator's cache emptied, warm-up, timed
  reference  cache emptied, the fp32 pass, warm-up, timed               (what a job did)
  emptied    cache emptied, the fp32 pass, cache emptied, warm-up, timed
Per state: ms/sample over >= --seconds of back-to-back passes (synchronised at the ends) and the allocator's
segments and inactive split blocks as the timed loop starts; per round, each state against plain.
  python benchmarks/reference_pass.py --model M --data D [--configs bf16-8,fp16-1] [--rounds 10] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch
from overhead import read_dev, spread

from ela.measure.loops import make_forward

STATES = ("plain", "reference", "emptied")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def sync(device) -> None:
    """Wait for the GPU (nothing to wait for on a CPU, where this script runs only as a smoke test)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def passes(forward, batches, seconds: float, device) -> float:
    """Milliseconds per sample over whole passes covering >= seconds, synchronised at the ends only."""
    n = sum(len(b["input_ids"]) for b in batches)
    sync(device)
    t0, count = time.perf_counter(), 0
    while not count or time.perf_counter() - t0 < seconds:
        for b in batches:
            forward(b)
        count += 1
    sync(device)
    return 1000 * (time.perf_counter() - t0) / (count * n)


def one(state: str, model, batches, dtype, seconds: float, device) -> tuple[float, dict[str, int]]:
    """Prepare the allocator as `state` says, warm up as ela does, time; the allocator's blocks at the start."""
    amp = make_forward(model, lambda: torch.autocast(device.type, dtype=dtype))
    empty = torch.cuda.empty_cache if device.type == "cuda" else lambda: None
    empty()
    if state != "plain":
        fp32 = make_forward(model, contextlib.nullcontext)
        _ = [fp32(b).float().cpu() for b in batches]  # as ela's reference: every batch's logits to the host
    if state == "emptied":
        empty()
    for b in [*batches, *batches[:10]]:  # ela's warm-up: every shape once, then 10 batches
        amp(b)
    stats = torch.cuda.memory_stats(device) if device.type == "cuda" else {}
    blocks = {k: stats.get(f"{k}.all.current", 0) for k in ("segment", "inactive_split")}
    return passes(amp, batches, seconds, device), blocks


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--configs", default="bf16-8,fp16-1", help="precision-batch pairs")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--limit", type=int, help="the first N sentences only (a CPU smoke test)")
    args = ap.parse_args()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke test: no allocator)"
    print(f"device: {card}, torch {torch.__version__}", flush=True)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, attn_implementation="sdpa").eval().to(device)
    texts = read_dev(Path(args.data))[: args.limit]
    for config in args.configs.split(","):
        precision, batch = config.split("-")
        batches = [
            {k: v.to(device) for k, v in tok(texts[i : i + int(batch)], padding=True, truncation=True,
                                             max_length=128, return_tensors="pt").items()}
            for i in range(0, len(texts), int(batch))
        ]  # fmt: skip
        cost: dict[str, list[float]] = {s: [] for s in STATES}
        blocks: dict[str, list[dict[str, int]]] = {s: [] for s in STATES}
        for r in range(args.rounds):
            order = STATES[r % 3 :] + STATES[: r % 3]
            for state in order:
                c, b = one(state, model, batches, DTYPES[precision], args.seconds, device)
                cost[state].append(c)
                blocks[state].append(b)
            print(f"{config} round {r}: " + ", ".join(f"{s} {cost[s][-1]:.4f}" for s in STATES), flush=True)
        print(f"\n{config}, {args.rounds} rounds (median [min-max]):\n")
        print("| state | ms/sample | / plain, per round | segments | inactive split blocks |")
        print("|---|---|---|---|---|")
        for s in STATES:
            ratio = [a / p for a, p in zip(cost[s], cost["plain"], strict=True)]
            seg = statistics.median(b["segment"] for b in blocks[s])
            split = statistics.median(b["inactive_split"] for b in blocks[s])
            print(f"| {s} | {spread(cost[s], '{:.4f}')} | {spread(ratio)} | {seg:.0f} | {split:.0f} |", flush=True)
        print()


if __name__ == "__main__":
    main()
