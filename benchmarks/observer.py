"""How much of the launching thread's time do ela's background samplers take, as threads and as processes?

At batch 1 a GPU job is launch-bound: one Python thread queues every kernel, and any moment another Python
thread holds the interpreter lock, no kernel is queued. Inside a job two samplers run beside that thread:
the power trace (`measure.trace`, NVML every `trace_interval_s`) and CodeCarbon's tracker
(`codecarbon.enabled`, every `measure_power_secs`), as threads of the job's process or each in a process of its
own (`measure.samplers_in`; `--where thread,process` tries both). `--work gaps` spins the main thread in a
tight loop of clock reads and adds up every gap longer than `--gap-us` between two reads: time the main
thread was not running Python. With no sampler the gaps are the OS's and the hypervisor's; the difference is
the samplers'. On a GPU, `--work launch` instead launches tiny kernels from the main thread as fast as it can
and reports the launch rate, and `--work forward` runs the hand-written loop of overhead.py (cost per sample,
p50 batch latency) on a real classifier: those also catch a sampler's cost outside the interpreter lock
(NVML calls and kernel submission meet in the driver, whichever process makes them). Sets alternate round by
round, so drift in the host hits them alike.

    python benchmarks/observer.py [--work gaps|launch] [--where thread,process] [--rounds 3] [--seconds 5]
    python benchmarks/observer.py --work forward --model DIR --data DIR [--precision tf32] [--batch 1] \
        [--where process] [--trace-secs 0.1,1] [--power-secs 1,15]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from overhead import CONF, Hand

from ela.config import CodeCarbonConfig, to_container
from ela.measure.carbon import CarbonTracker
from ela.measure.nvml import GpuInfo, NvmlCounter, gpu_info
from ela.measure.trace import PowerTrace


def gaps(seconds: float, gap_s: float) -> tuple[float, int, float]:
    """Spin for `seconds`; the share of it lost in gaps > gap_s, how many, and the largest (ms)."""
    clock = time.perf_counter
    t0 = last = clock()
    lost, n, largest = 0.0, 0, 0.0
    while last - t0 < seconds:
        now = clock()
        if now - last > gap_s:
            lost, n, largest = lost + now - last, n + 1, max(largest, now - last)
        last = now
    return lost / (last - t0), n, largest * 1e3


def launches(seconds: float, device: torch.device) -> tuple[float, int, float]:
    """Launch one-element adds for `seconds`, synchronising every 256; the launch rate per second."""
    x = torch.zeros(1, device=device)
    clock = time.perf_counter
    t0, n = clock(), 0
    while clock() - t0 < seconds:
        for _ in range(256):
            x.add_(1.0)
        torch.cuda.synchronize(device)
        n += 256
    return n / (clock() - t0), 0, 0.0


@contextlib.contextmanager
def samplers(names, cc: CodeCarbonConfig | None, interval_s: float, process: bool, gpu: GpuInfo | None):
    """The named samplers as a job starts them, in processes of their own (ela's default) or as threads here."""
    with contextlib.ExitStack() as stack:
        if "codecarbon" in names:
            tracker = CarbonTracker(cc, [gpu.nvml_index] if gpu else [], "/tmp/ela-samplers", "samplers", process)
            tracker.start()
            stack.callback(tracker.close)
        if "trace" in names and gpu is not None:
            stack.callback(PowerTrace(NvmlCounter(gpu.handle), interval_s, process).start().close)
        yield


def main() -> None:
    """Alternate the sampler sets round by round and print what each one cost the main thread."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", choices=("gaps", "launch", "forward"), default="gaps")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="spin time per set and round")
    ap.add_argument("--gap-us", type=float, default=50.0, help="a longer pause between two clock reads is a gap")
    ap.add_argument("--power-secs", default="1", help="CodeCarbon intervals to try (codecarbon.measure_power_secs)")
    ap.add_argument("--where", default="thread", help="thread, process or thread,process: where the samplers run")
    ap.add_argument("--trace-secs", default="0.1", help="trace intervals to try (measure.trace_interval_s)")
    ap.add_argument("--model", help="--work forward: the classifier's directory")
    ap.add_argument("--data", help="--work forward: the directory with dev.tsv")
    ap.add_argument("--precision", default="tf32")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--limit", type=int, default=300, help="--work forward: first N dev sentences")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = to_container(compose(config_name="config"))
    Set = tuple[tuple[str, ...], CodeCarbonConfig | None, bool, float]  # samplers, CodeCarbon, process, trace s
    sets: dict[str, Set] = {"none": ((), None, False, 0.0)}
    gpu = torch.cuda.is_available()
    card = gpu_info(torch.device("cuda", torch.cuda.current_device())) if gpu else None
    traces = [float(t) for t in args.trace_secs.split(",")]
    for where in args.where.split(","):
        tail, process = ("", False) if where == "thread" else (" (process)", True)
        for ti in traces if gpu else []:
            sets[f"trace@{ti:g}s{tail}"] = (("trace",), None, process, ti)
        for secs in [float(s) for s in args.power_secs.split(",")]:
            cc = CodeCarbonConfig(**{**cfg["codecarbon"], "measure_power_secs": secs, "save_to_file": False})
            sets[f"codecarbon@{secs:g}s{tail}"] = (("codecarbon",), cc, process, 0.0)
            if gpu:
                sets[f"both@{secs:g}s{tail}"] = (("trace", "codecarbon"), cc, process, traces[0])
    if args.work == "launch" and not gpu:
        raise SystemExit("--work launch needs a CUDA GPU")
    what = {"launch": "launch rate", "forward": f"the hand loop, {args.precision}-b{args.batch}"}
    what = what.get(args.work, f"gaps > {args.gap_us:g} us count as lost")
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}; {what}")
    work = {
        "gaps": lambda: gaps(args.seconds, args.gap_us * 1e-6),
        "launch": lambda: launches(args.seconds, torch.device("cuda")),
        "forward": lambda: hand_figures(hand, args),
    }[args.work]
    if args.work == "forward":
        if not (args.model and args.data):
            ap.error("--work forward needs --model and --data")
        hand = Hand(args.model, Path(args.data), torch.device("cuda" if gpu else "cpu"))
        hand.texts = hand.texts[: args.limit]
    if args.work != "gaps":
        work()  # CUDA context, first launches, every shape once
    got: dict[str, list[tuple[float, int, float]]] = {name: [] for name in sets}
    for rnd in range(args.rounds):
        for name, (on, cc, process, interval_s) in sets.items():
            with samplers(on, cc, interval_s, process, card):
                time.sleep(0.3)  # past the samplers' first reads, which a job takes outside its windows
                got[name].append(work())
            value, count, big = got[name][-1]  # (launch rate | cost, p50 | lost share, gaps, largest)
            if args.work == "launch":
                print(f"round {rnd} {name:26s}: {value:,.0f} launches/s", flush=True)
            elif args.work == "forward":
                print(f"round {rnd} {name:26s}: cost {value:.3f} ms/sample, p50 {count:.2f} ms/batch", flush=True)
            else:
                print(f"round {rnd} {name:26s}: lost {value * 100:.3f}% in {count} gaps, largest {big:.2f} ms")
    if args.work != "gaps":
        rate_table(got, "launches/s" if args.work == "launch" else "cost ms/sample")
        return
    base = statistics.median(s for s, _, _ in got["none"])
    print("\n| samplers | main thread's time lost, median [min-max] | minus none | gaps per s | largest gap ms |")
    print("|---|---|---|---|---|")
    for name, rows in got.items():
        shares = [s * 100 for s, _, _ in rows]
        med = statistics.median(shares)
        print(
            f"| {name} | {med:.3f}% [{min(shares):.3f}-{max(shares):.3f}] | {med - base * 100:+.3f} pts | "
            f"{statistics.median(n for _, n, _ in rows) / args.seconds:.1f} | {max(b for _, _, b in rows):.2f} |"
        )


def hand_figures(hand: Hand, args) -> tuple[float, float, float]:
    """The hand loop's cost per sample (one window of --seconds) and p50 batch latency."""
    m = hand.measure(args.precision, args.batch, args.seconds, 1)
    return m["cost_ms_per_sample"], m["batch_latency_ms_p50"], 0.0


def rate_table(got: dict[str, list[tuple[float, float, float]]], unit: str) -> None:
    """Per sampler set, the figure (launch rate or cost) and its change against no samplers (median over rounds)."""
    base = statistics.median(r for r, _, _ in got["none"])
    print(f"\n| samplers | {unit}, median [min-max] | against none |")
    print("|---|---|---|")
    for name, rows in got.items():
        rates = [r for r, _, _ in rows]
        med = statistics.median(rates)
        print(f"| {name} | {med:,.3f} [{min(rates):,.3f}-{max(rates):,.3f}] | {(med / base - 1) * 100:+.2f}% |")


if __name__ == "__main__":
    main()
