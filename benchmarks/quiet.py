"""Is this card quiet enough to compare ela with a hand loop at the 1-4% level? Ask before spending a call on it.

On the lent machines the hand-written loop alone has moved from within 1% (a quiet H100) to 1.9x (a busy one)
between measurements seconds apart. This runs that loop (`overhead.Hand`, launch-bound: eager, batch 8) a few
times back to back and prints each cost per sample, their spread (max / min) and a verdict; the exit code is 0
when the spread is within --max-spread, 3 when not, so a device script can choose its work by it:

    python benchmarks/quiet.py --model DIR --data DIR_WITH_dev.tsv && bash issue12_test.sh || bash gpu_bound_work.sh

Timing only: a random-weight model of the same shape (`random_model.py`) serves as well as a trained one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from overhead import Hand


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--times", type=int, default=4)
    ap.add_argument("--window-s", type=float, default=2.0)
    ap.add_argument("--max-spread", type=float, default=1.02, help="largest max/min of the costs called quiet")
    ap.add_argument("--limit", type=int, help="the first N sentences only (a CPU smoke test)")
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hand = Hand(a.model, Path(a.data), device)
    hand.texts = hand.texts[: a.limit]
    costs = []
    for i in range(a.times):
        costs.append(hand.measure(a.precision, a.batch, a.window_s, 2)["cost_ms_per_sample"])
        print(f"hand {a.precision}-b{a.batch} #{i}: {costs[-1]:.4f} ms/sample", flush=True)
    spread = max(costs) / min(costs)
    quiet = spread <= a.max_spread
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{card}: max/min {spread:.3f} over {a.times} measurements: {'quiet' if quiet else 'NOT quiet'}", flush=True)
    sys.exit(0 if quiet else 3)


if __name__ == "__main__":
    main()
