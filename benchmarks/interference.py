"""What slows ela's batch-1 windows? ela's job and the hand loop, each with and without ela's background samplers.

On the H200 the paired headline (benchmarks/headline.sh) found ela's cost per sample at batch 1 1.26-1.28x the
hand loop's run seconds later in the same process, and ela's windows slower than its own synchronised passes.
Inside a job two samplers run that the hand loop never had: the power trace (NVML at 10 Hz, `measure.trace`)
and CodeCarbon's tracker (`codecarbon.enabled`, 1 Hz). Per round, for each set of samplers: ela's job with
exactly that set on, then the hand loop with the same samplers running around it. One process, one card.

    python benchmarks/interference.py --model DIR --data DIR_WITH_dev.tsv [--precision fp16] [--batch 1]
    python benchmarks/interference.py --from-logs results/interference_h200_1.log ...   # summarise earlier runs
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from observer import samplers
from overhead import CONF, KEYS, Hand, ela_job, figures, spread

from ela.config import to_container, validate
from ela.measure.nvml import gpu_info

SETS = {"none": (), "trace": ("trace",), "codecarbon": ("codecarbon",), "both": ("trace", "codecarbon")}


LINE = re.compile(r"round (\d+) samplers=(\S+)\s+(ela|hand)\s*: cost ([\d.]+) ms/sample, p50 ([\d.]+) ms/batch")


def summary(records: list[dict]) -> None:
    """Per sampler set, each side's cost and p50 (median [min-max]); then every pair pooled (ela / hand)."""
    c, p = "cost_ms_per_sample", "batch_latency_ms_p50"
    print(
        "| samplers on | ela cost ms/sample | hand cost ms/sample | ela / hand | ela p50 ms/batch | hand p50 ms/batch |"
    )  # noqa: E501
    print("|---|---|---|---|---|---|")
    by = {(r["set"], r["side"]): [] for r in records}
    for r in records:
        by[(r["set"], r["side"])].append(r)
    for name in dict.fromkeys(r["set"] for r in records):
        e, h = by[(name, "ela")], by[(name, "hand")]
        ratio = statistics.median(x[c] for x in e) / statistics.median(x[c] for x in h)
        print(f"| {name} | {spread([x[c] for x in e])} | {spread([x[c] for x in h])} | {ratio:.3f} | "
              f"{spread([x[p] for x in e], '{:.2f}')} | {spread([x[p] for x in h], '{:.2f}')} |")  # fmt: skip
    pairs = {(r["call"], r["round"], r["set"]): {} for r in records}
    for r in records:
        pairs[(r["call"], r["round"], r["set"])][r["side"]] = r
    full = [v for v in pairs.values() if len(v) == 2]
    for key, name in ((c, "cost"), (p, "p50")):
        ela, hand = [v["ela"][key] for v in full], [v["hand"][key] for v in full]
        print(f"\nall {len(full)} pairs, {name}: ela {spread(ela)}, hand {spread(hand)}, "
              f"ela / hand per pair {spread([a / b for a, b in zip(ela, hand, strict=True)])}")  # fmt: skip


def from_logs(paths: list[str]) -> list[dict]:
    """The measurements printed by earlier runs of this script (one call per file)."""
    out = []
    for call, path in enumerate(paths):
        for m in LINE.finditer(Path(path).read_text()):
            rnd, name, side, cost, p50 = m.groups()
            out.append({"call": call, "round": int(rnd), "set": name, "side": side,
                        "cost_ms_per_sample": float(cost), "batch_latency_ms_p50": float(p50)})  # fmt: skip
    return out


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--limit", type=int, default=300, help="dev sentences (a pass at batch 1 is ~2 s on an H200)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--window-s", type=float, default=5.0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=2.0)
    ap.add_argument("--from-logs", nargs="*", metavar="LOG", help="summarise earlier runs' output instead")
    args = ap.parse_args()
    if args.from_logs:
        summary(from_logs(args.from_logs))
        return
    if not (args.model and args.data):
        ap.error("--model and --data are required")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hand = Hand(args.model, Path(args.data), device)
    hand.texts = hand.texts[: args.limit]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        job = validate(to_container(compose("config", overrides=["model=local", f"model.path={args.model}"])))
    card = gpu_info(device) if device.type == "cuda" else None
    process = job.measure.samplers_in == "process"  # the hand loop's samplers run where the job's do
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    records = []
    for rnd in range(args.rounds):
        for name in args.sets.split(","):
            on = SETS[name]
            extra = (f"measure.trace={'trace' in on}", f"codecarbon.enabled={'codecarbon' in on}",
                     f"dataset.limit={args.limit}")  # fmt: skip
            m_ela = ela_job(args, args.precision, args.batch, extra)
            with samplers(on, job.codecarbon, job.measure.trace_interval_s, process, card):
                m_hand = hand.measure(args.precision, args.batch, args.window_s, args.windows)
            for side, m in (("ela", m_ela), ("hand", m_hand)):
                records.append({"call": 0, "round": rnd, "set": name, "side": side, **{k: m[k] for k in KEYS[:2]}})
                print(f"round {rnd} samplers={name:10s} {side:4s}: {figures(m)}", flush=True)
    print(f"\n{args.precision}-b{args.batch}, {args.limit} sentences, median [min-max] over {args.rounds} rounds:\n")
    summary(records)


if __name__ == "__main__":
    main()
