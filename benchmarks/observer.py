"""How much of the launching thread's time do ela's background samplers take (the GIL they hold)?

At batch 1 a GPU job is launch-bound: one Python thread queues every kernel, and any moment another Python
thread holds the interpreter lock, no kernel is queued. Inside a job two samplers run beside that thread:
the power trace (`measure.trace`, NVML every `trace_interval_s`) and CodeCarbon's tracker
(`codecarbon.enabled`, every `measure_power_secs`). This probe spins the main thread in a tight loop of
clock reads and adds up every gap longer than `--gap-us` between two reads: time the main thread was not
running Python. With no sampler the gaps are the OS's and the hypervisor's; the difference is the
samplers'. On a GPU, `--work launch` instead launches tiny kernels from the main thread as fast as it can
(what a batch-1 forward does) and reports the launch rate: that also catches a sampler's cost outside the
interpreter lock (NVML and CUDA share the driver). Sets alternate round by round, so drift in the host
hits them alike.

    python benchmarks/observer.py [--work gaps|launch] [--rounds 3] [--seconds 5] [--power-secs 1,15]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from overhead import CONF

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
    ap.add_argument("--work", choices=("gaps", "launch"), default="gaps")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="spin time per set and round")
    ap.add_argument("--gap-us", type=float, default=50.0, help="a longer pause between two clock reads is a gap")
    ap.add_argument("--power-secs", default="1", help="CodeCarbon intervals to try (codecarbon.measure_power_secs)")
    ap.add_argument("--where", default="thread", help="thread, process or thread,process: where the samplers run")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = to_container(compose(config_name="config"))
    sets: dict[str, tuple[tuple[str, ...], CodeCarbonConfig | None, bool]] = {"none": ((), None, False)}
    gpu = torch.cuda.is_available()
    card = gpu_info(torch.device("cuda", torch.cuda.current_device())) if gpu else None
    for where in args.where.split(","):
        tail = "" if where == "thread" else " (process)"
        if gpu:
            sets[f"trace{tail}"] = (("trace",), None, where == "process")
        for secs in [float(s) for s in args.power_secs.split(",")]:
            cc = CodeCarbonConfig(**{**cfg["codecarbon"], "measure_power_secs": secs, "save_to_file": False})
            sets[f"codecarbon@{secs:g}s{tail}"] = (("codecarbon",), cc, where == "process")
            if gpu:
                sets[f"both@{secs:g}s{tail}"] = (("trace", "codecarbon"), cc, where == "process")
    if args.work == "launch" and not gpu:
        raise SystemExit("--work launch needs a CUDA GPU")
    what = "launch rate" if args.work == "launch" else f"gaps > {args.gap_us:g} us count as lost"
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}; {what}")
    work = {
        "gaps": lambda: gaps(args.seconds, args.gap_us * 1e-6),
        "launch": lambda: launches(args.seconds, torch.device("cuda")),
    }[args.work]
    if args.work == "launch":
        work()  # CUDA context, first launches
    got: dict[str, list[tuple[float, int, float]]] = {name: [] for name in sets}
    for rnd in range(args.rounds):
        for name, (on, cc, process) in sets.items():
            with samplers(on, cc, cfg["measure"]["trace_interval_s"], process, card):
                time.sleep(0.3)  # past the samplers' first reads, which a job takes outside its windows
                got[name].append(work())
            share, n, big = got[name][-1]
            if args.work == "launch":
                print(f"round {rnd} {name:26s}: {share:,.0f} launches/s", flush=True)
            else:
                print(f"round {rnd} {name:26s}: lost {share * 100:.3f}% in {n} gaps, largest {big:.2f} ms")
    if args.work == "launch":
        launch_table(got)
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


def launch_table(got: dict[str, list[tuple[float, int, float]]]) -> None:
    """Per sampler set, the launch rate and its loss against no samplers (median over rounds)."""
    base = statistics.median(r for r, _, _ in got["none"])
    print("\n| samplers | launches/s, median [min-max] | against none |")
    print("|---|---|---|")
    for name, rows in got.items():
        rates = [r for r, _, _ in rows]
        med = statistics.median(rates)
        print(f"| {name} | {med:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] | {(med / base - 1) * 100:+.2f}% |")


if __name__ == "__main__":
    main()
