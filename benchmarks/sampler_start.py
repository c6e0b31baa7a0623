"""What starting and stopping CodeCarbon's whole-job tracker costs a job, by where it runs.

`thread`: in the job's process (`measure.samplers_in=thread`); `cold`: a process of its own, started when the job
needs it; `prepared`: a process of its own that `ela.measure.sidecar.prepare` started ahead of need and that had
`--lead-s` to import CodeCarbon (what a GPU job gets: see `ela.job.samplers.prepare`). Modes alternate
round by round; each figure is the time from building the tracker to its `stop` returning, with nothing to measure
in between. CPU or GPU host; `--gpus 0` has the tracker track that GPU, as a GPU job's does (CodeCarbon then
queries NVML as it starts and stops).

    python benchmarks/sampler_start.py [--rounds 10] [--lead-s 1.0] [--gpus 0]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

from hydra import compose, initialize_config_dir
from overhead import CONF

from ela.config import to_container, validate
from ela.measure.carbon import CarbonTracker
from ela.measure.meters import MeasurementError


def main() -> None:
    """Rounds of each mode, then median [min-max] seconds per mode."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--lead-s", type=float, default=1.0, help="how long a prepared process had before it was needed")
    ap.add_argument("--gpus", default="", help="comma-separated NVML indices for the tracker to track (a GPU job's)")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = validate(to_container(compose("config", overrides=["device=cpu"]))).codecarbon
    gpus = [int(i) for i in args.gpus.split(",") if i]
    got: dict[str, list[float]] = {"thread": [], "cold": [], "prepared": []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.rounds):
            for mode, times in got.items():
                if mode == "prepared":
                    CarbonTracker.prepare()
                    time.sleep(args.lead_s)
                t0 = time.perf_counter()
                tracker = CarbonTracker(cfg, gpus, out, "sampler-start", process=mode != "thread")
                tracker.start()
                with contextlib.suppress(MeasurementError):  # so short a span can read 0 J for a GPU: time only
                    tracker.stop()
                times.append(time.perf_counter() - t0)
    print(f"\n| CodeCarbon's tracker | start + stop s, median [min-max] over {args.rounds} |\n|---|---|")
    for mode, times in got.items():
        print(f"| {mode} | {statistics.median(times):.3f} [{min(times):.3f}-{max(times):.3f}] |")


if __name__ == "__main__":
    main()
