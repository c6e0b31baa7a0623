"""Does ela report what a hand-written loop measures? On the GPU machine; CPU works too, without energy.

Three modes, all on the same model and data:

* default: in one process, `--rounds` rounds; in each, for every precision x batch, a minimal
  hand-written loop and ela's own job path (`ela.job.measure_job`, as a sweep runs it), their
  order alternating between rounds. Prints both figures ela reports -- the cost per sample (window
  time / samples, no per-batch sync) and the p50 batch latency (device synchronised around each
  batch) -- as median [min-max] over the rounds, their ratio, and the sign of each speed-up vs fp32.
  With `--csv F --resume` a run goes on from F (a call's time limit stopped it): measurements already in F
  are kept and not repeated, and the table covers all of them, so rounds can span several device calls (on the
  same kind of card: rows carry the card's name, and a CSV from another is refused). Each `--variant "OVERRIDES"`
  adds a side: ela's job path with those overrides (space-separated, e.g. `measure.fp32_reference=false`), in
  the same rounds (the order of the sides rotating), with a table of its own against the hand loop.
* `--hand-only --csv F`: the hand-written loop alone, to a CSV (to run before and after a sweep).
* `--sweep-uri U1,U2 --hand-csv F1,F2`: every sweep in those stores (a repetition each; a store per device
  call) next to those hand-loop CSVs,
  with whether each side's [min-max] range overlaps the other's; rows with a `seed` (written by
  `HandAfterJob`) are also paired with the job of that config and seed: ela / hand per pair.
* `HandAfterJob`, a Hydra callback (`headline.sh` adds it to the README's main command): after each job,
  in the job's process and seconds after its windows, the hand-written loop on the same config.

    python benchmarks/overhead.py --model DIR --data DIR_WITH_dev.tsv [--precisions fp32,fp16,bf16] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ela.config import to_container, validate
from ela.job import measure_job
from ela.measure import host
from ela.tracking.identity import config_hash
from ela.tracking.store import job_tracker

CONF = Path(__file__).resolve().parent.parent / "conf"
AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}
KEYS = ("cost_ms_per_sample", "batch_latency_ms_p50", "energy_j_per_sample")


def read_dev(data: Path) -> list[str]:
    """The sentences of SST-2 dev.tsv."""
    with open(data / "dev.tsv", encoding="utf-8", newline="") as f:
        return [r[0] for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]


class Hand:
    """The hand-written reference: batches on the device, forward, synchronise, a clock and NVML's counter."""

    def __init__(self, model_dir: str, data: Path, device: torch.device) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device, self.tok = device, AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="sdpa")
        self.model = self.model.eval().to(device)
        self.texts = read_dev(data)
        self.handle = None
        if device.type == "cuda":
            import pynvml

            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")

    def sync(self) -> None:
        """Wait for the device."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def energy_j(self) -> float:
        """NVML's energy counter in J (NaN on a CPU)."""
        import pynvml

        return pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0 if self.handle else float("nan")

    def measure(self, precision: str, batch: int, window_s: float, windows: int) -> dict[str, float]:
        """p50 batch latency over synced passes of >= window_s, then cost and energy per sample per window."""
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        batches = [
            {k: v.to(self.device) for k, v in self.tok(self.texts[i : i + batch], padding=True, truncation=True,
                                                       max_length=128, return_tensors="pt").items()}
            for i in range(0, len(self.texts), batch)
        ]  # fmt: skip
        n = len(self.texts)

        def forward(b):
            if precision in AUTOCAST:
                with torch.autocast(self.device.type, dtype=AUTOCAST[precision]):
                    return self.model(**b).logits
            return self.model(**b).logits

        with torch.inference_mode():
            for b in [*batches, *batches[:10]]:  # as ela: every shape once, then 10 batches
                forward(b)
            times, t_start = [], time.perf_counter()
            while not times or time.perf_counter() - t_start < window_s:
                for b in batches:
                    self.sync()
                    t0 = time.perf_counter()
                    forward(b)
                    self.sync()
                    times.append((time.perf_counter() - t0) * 1000)
            costs, joules = [], []
            with host.Watch() as watch:
                for _ in range(windows):
                    self.sync()
                    t0, e0, passes = time.perf_counter(), self.energy_j(), 0
                    while time.perf_counter() - t0 < window_s:
                        for b in batches:
                            forward(b)
                        passes += 1
                    self.sync()
                    t1, e1 = time.perf_counter(), self.energy_j()
                    costs.append(1000 * (t1 - t0) / (passes * n))
                    joules.append((e1 - e0) / (passes * n))
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        return {
            "cost_ms_per_sample": statistics.mean(costs),
            "batch_latency_ms_p50": statistics.median(times),
            "energy_j_per_sample": statistics.mean(joules),
            **(host_figures(watch.load) if watch.load else {}),
        }


class HandAfterJob(Callback):
    """After every FINISHED job of a sweep, the hand-written loop on its precision and batch; a CSV row each.

    Same process and card, seconds after the job's energy windows, so a drifting machine moves both sides of
    a pair together. The hand model is loaded once (fp32 weights; autocast for fp16/bf16, as ela does).
    With `before=true` the hand loop also runs right before each job (the row's `before_*` columns): the job
    is bracketed, and the hand loop's own change across it is the pair's run-to-run spread.
    """

    def __init__(self, csv: str, window_s: float = 2.5, windows: int = 2, before: bool = False) -> None:
        self.csv, self.window_s, self.windows, self.hand = Path(csv), window_s, windows, None
        self.before, self.last_before = before, None

    def _measure(self, config: DictConfig) -> dict[str, float]:
        """The hand loop on this job's precision and batch (the model loaded at the first call)."""
        if self.hand is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self.hand = Hand(str(config.model.path), Path(config.dataset.path), device)
            self.hand.texts = self.hand.texts[: config.dataset.get("limit") or None]  # the job's rows, as ela
        return self.hand.measure(str(config.precision.name), int(config.batch), self.window_s, self.windows)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        """With `before`, measure the job's config by hand first (not for a job that resume will skip)."""
        self.last_before = None
        if self.before and not self._resumed(config):
            self.last_before = self._measure(config)
            print(f"[hand] before {config.precision.name}-b{config.batch}-s{config.seed}: {figures(self.last_before)}")

    @staticmethod
    def _resumed(config: DictConfig) -> bool:
        """resume=true and this job already FINISHED in its store: ela skips it, as `ela.run` decides."""
        if not config.get("resume"):
            return False
        data = to_container(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
        return (
            job_tracker(data, HydraConfig.get().runtime.cwd).finished_run(config_hash(data, with_seed=True)) is not None
        )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        """Measure the job's config by hand unless the job did not finish."""
        ret = job_return.return_value if job_return.status.name == "COMPLETED" else None
        if not isinstance(ret, dict) or ret.get("status") != "FINISHED":
            return
        precision, batch, seed = str(config.precision.name), int(config.batch), int(config.seed)
        m = self._measure(config)
        before = {f"before_{k}": v for k, v in (self.last_before or {}).items()}
        row = {"round": seed, "seed": seed, "side": "hand", "precision": precision, "batch": batch, **m, **before,
               "run_id": ret.get("run_id", ""), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES", "")}  # fmt: skip
        append_row(self.csv, row)
        was = f" (before the job: {figures(self.last_before)})" if self.last_before else ""
        print(f"[hand] {precision}-b{batch}-s{seed}: {figures(m)}{was}", flush=True)


def ela_job(args, precision: str, batch: int, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Ela's job path, as a sweep runs it (defaults but for the window settings given here and `extra`)."""
    overrides = [
        "model=local", f"model.path={args.model}", f"dataset.path={args.data}", f"precision={precision}",
        f"batch={batch}", f"measure.min_window_s={args.window_s}", f"measure.repeats={args.windows}",
        f"measure.idle_window_s={args.idle_s}", f"measure.idle_max_settle_s={args.idle_s}", *extra,
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        job = validate(to_container(compose("config", overrides=overrides)))
    out = measure_job(job, Path("/tmp/ela-overhead"))
    return {**out.metrics, "verdict": out.tags.get("ela.verdict")}


def host_figures(load: host.HostLoad) -> dict[str, float]:
    """The host's load during a measurement's windows, under ela's metric names."""
    return {"process_cpus_busy": load.own_cpus, "host_steal_share": load.steal_share,
            "host_other_cpu_share": load.other_share, "gc_share": load.gc_share}  # fmt: skip


def figures(m: dict[str, float]) -> str:
    """One measurement's cost, p50 and energy per sample (and the host's load where known), for a progress line."""
    joules = m.get("energy_j_per_sample", float("nan"))
    cost, p50 = m["cost_ms_per_sample"], m["batch_latency_ms_p50"]
    out = f"cost {cost:.3f} ms/sample, p50 {p50:.2f} ms/batch, {joules:.4f} J/sample"
    if "process_cpus_busy" in m:  # why a window was slow: this process off the CPU, or the VM's CPUs stolen
        out += (f", CPUs busy {m['process_cpus_busy']:.2f}, other {m['host_other_cpu_share']:.1%}"
                f" (steal {m['host_steal_share']:.1%}), GC {m['gc_share']:.1%}")  # fmt: skip
    return out


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    """Median [min-max]."""
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def same_sign(sa: float, sb: float) -> bool:
    """Two speed-ups vs fp32 point the same way (or lie within 5% of each other)."""
    return (sa - 1) * (sb - 1) > 0 or abs(sa - sb) < 0.05


def direction(config: list[float], fp32: list[float]) -> str:
    """A config's cost against fp32's on one side: faster or slower only where their [min-max] ranges part."""
    if max(config) < min(fp32):
        return "faster"
    if min(config) > max(fp32):
        return "slower"
    return "within spread"


def agreement(da: str, db: str) -> str:
    """Do two sides' directions agree: yes, no claim (one side within its spread), or NO (opposite claims)."""
    if da == db:
        return "yes"
    return "no claim" if "within spread" in (da, db) else "NO"


def table(rows: dict[tuple[str, int], dict[str, list[float]]], sides: tuple[str, str]) -> None:
    """Markdown: each side's cost and p50 (median [min-max]), their ratio, and the speed-up vs fp32 of each.

    "same sign" compares medians (the same direction, or within 5% of each other); "directions" claims a
    direction only where a side's [min-max] range of the config and of fp32 do not overlap.
    """
    a, b = sides
    print(f"| config | {a} cost ms/sample | {b} cost ms/sample | ratio | overlap | {a} p50 ms/batch "
          f"| {b} p50 ms/batch | ratio | overlap | {a} speed-up vs fp32 | {b} speed-up vs fp32 "
          f"| same sign | directions ({a} / {b}) | agree |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (precision, batch), r in rows.items():
        ref = rows.get(("fp32", batch))
        cells = [f"{precision}-b{batch}"]
        for key in ("cost_ms_per_sample", "batch_latency_ms_p50"):
            ratio = statistics.median(r[f"{b}:{key}"]) / statistics.median(r[f"{a}:{key}"])
            va, vb = r[f"{a}:{key}"], r[f"{b}:{key}"]
            # "within the run-to-run spread": the two [min-max] ranges overlap
            overlap = "yes" if min(va) <= max(vb) and min(vb) <= max(va) else "NO"
            cells += [spread(va), spread(vb), f"{ratio:.3f}", overlap]
        if ref:
            sa = statistics.median(ref[f"{a}:cost_ms_per_sample"]) / statistics.median(r[f"{a}:cost_ms_per_sample"])
            sb = statistics.median(ref[f"{b}:cost_ms_per_sample"]) / statistics.median(r[f"{b}:cost_ms_per_sample"])
            same = "yes" if same_sign(sa, sb) else "NO"
            key = "cost_ms_per_sample"
            da, db = (direction(r[f"{x}:{key}"], ref[f"{x}:{key}"]) for x in (a, b))
            cells += [f"{sa:.2f}x", f"{sb:.2f}x", same, f"{da} / {db}", agreement(da, db)]
        else:
            cells += ["-"] * 5
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=5.0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--hand-only", action="store_true")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="OVERRIDE",
        help="also ela's job path with these overrides (space-separated; a side of its own)",
    )
    ap.add_argument("--csv", help="write every measurement here")
    ap.add_argument("--resume", action="store_true", help="go on from --csv: keep its measurements, add the rest")
    ap.add_argument("--sweep-uri", help="compare the latest sweep in this MLflow store with --hand-csv files")
    ap.add_argument("--hand-csv", help="comma-separated CSVs written by --hand-only")
    ap.add_argument("--list-sweeps", metavar="URI", help="print the run ids of this store's sweeps, comma-separated")
    ap.add_argument("--by", default="", help="with --sweep-uri: params (comma-separated) that tell configs apart too")
    args = ap.parse_args()
    if args.list_sweeps:
        print(",".join(sweep_ids(args.list_sweeps)))
        return
    if not args.sweep_uri and not (args.model and args.data):
        ap.error("--model and --data are required")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {card}, torch {torch.__version__}")
    configs = [(p, int(b)) for p in args.precisions.split(",") for b in args.batches.split(",")]
    rows: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    if args.sweep_uri:
        compare_sweep(args, rows)
        return
    if args.resume and not args.csv:
        ap.error("--resume goes on from the --csv file: name it")
    done = set()
    if args.csv and args.resume and Path(args.csv).exists():  # measured in an earlier call: kept, not repeated
        with open(args.csv, newline="") as f:
            for r in csv.DictReader(f):
                if r.get("device", card) != card:  # rounds on another card are not repetitions of these
                    sys.exit(f"{args.csv} holds measurements on {r['device']}, this is {card}: resume on that card")
                done.add((int(r["round"]), r["side"], r["precision"], int(r["batch"])))
                for k in ("cost_ms_per_sample", "batch_latency_ms_p50", "energy_j_per_sample"):
                    rows[(r["precision"], int(r["batch"]))][f"{r['side']}:{k}"].append(float(r[k] or "nan"))
        print(f"resuming from {args.csv}: {len(done)} measurements already there", flush=True)
    elif args.csv:
        Path(args.csv).unlink(missing_ok=True)  # rows are appended as they come: a call's time limit keeps them
    hand = Hand(args.model, Path(args.data), device)
    overrides = {"ela": (), **{f"ela[{v}]": tuple(v.split()) for v in args.variant}}  # ela's sides, by label
    for rnd in range(args.rounds):
        for precision, batch in configs:
            sides = ["hand", *overrides]
            order = sides if args.hand_only else sides[rnd % len(sides) :] + sides[: rnd % len(sides)]
            for side in order:
                if (side != "hand" and args.hand_only) or (rnd, side, precision, batch) in done:
                    continue
                if side == "hand":
                    m = hand.measure(precision, batch, args.window_s, args.windows)
                else:
                    m = ela_job(args, precision, batch, overrides[side])
                for k in ("cost_ms_per_sample", "batch_latency_ms_p50", "energy_j_per_sample"):
                    rows[(precision, batch)][f"{side}:{k}"].append(m.get(k, float("nan")))
                keep = ("cost_ms_per_sample", "batch_latency_ms_p50", "energy_j_per_sample", "stalled_batch_share")
                row = {"device": card, "round": rnd, "side": side, "precision": precision, "batch": batch,
                       **{k: m.get(k) for k in (*keep, "verdict")}}  # fmt: skip
                if args.csv:
                    append_row(Path(args.csv), row)
                print(f"round {rnd} {side:4s} {precision}-b{batch}: {figures(m)}", flush=True)
    if not args.hand_only:
        where = "one process" if not done else "this process and the CSV's earlier calls"
        print(f"\nmedian [min-max] over {args.rounds} interleaved rounds, {where}:\n")
        for side in overrides:
            print(f"\nhand vs {side}:\n")
            table(rows, ("hand", side))
        if args.csv:
            paired(Path(args.csv), list(overrides))


def paired(path: Path, sides: list[str]) -> None:
    """Per round, each side's cost over the hand loop's (and each variant's over plain ela's) in that round.

    Measurements of one round sit seconds apart, so on a drifting card the ratio within a round is the figure
    that a 1-4% difference can show in: median [min-max] over the rounds, and in how many rounds it was above 1.
    """
    cost: dict[tuple[str, int, int], dict[str, float]] = defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            cost[(r["precision"], int(r["batch"]), int(r["round"]))][r["side"]] = float(r["cost_ms_per_sample"])
    pairs = [(s, "hand") for s in sides] + [(s, "ela") for s in sides[1:]]
    print("\ncost per sample, paired within each round: median [min-max] (rounds above 1 / rounds)\n")
    print("| config | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    for config in sorted({k[:2] for k in cost}):
        cells = []
        for a, b in pairs:
            ratios = [c[a] / c[b] for k, c in cost.items() if k[:2] == config and a in c and b in c]
            above = sum(x > 1 for x in ratios)
            cells.append(f"{spread(ratios)} ({above}/{len(ratios)})" if ratios else "-")
        print(f"| {config[0]}-b{config[1]} | " + " | ".join(cells) + " |", flush=True)


def append_row(path: Path, row: dict) -> None:
    """Append one row to a CSV, with the header if the file is new; safe for jobs that end at once."""
    with open(path, "a", newline="") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # jobs of a parallel launcher (fork, n_jobs>1) end at once
        w = csv.DictWriter(f, fieldnames=list(row))
        if f.seek(0, 2) == 0:  # empty once the lock is ours: this row is the first
            w.writeheader()
        w.writerow(row)


def sweep_ids(uri: str) -> list[str]:
    """Run ids of every sweep (parent run) in the store, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ela")
    where = "tags.`ela.run_kind` = 'sweep'"
    parents = client.search_runs([exp.experiment_id], where, order_by=["attributes.start_time"])
    return [p.info.run_id for p in parents]


def compare_sweep(args, rows) -> None:
    """Every sweep's jobs (a repetition each: seeds) next to hand-loop rounds, each side median [min-max].

    `--sweep-uri` may name several stores (one per device call): a pair is a job and the hand-loop row that
    names its run id, and each call's seeds stay apart (`call:seed`), so calls with the same seeds add pairs.
    """
    from mlflow.tracking import MlflowClient

    pairs: dict[tuple[str, int, str], dict[str, dict]] = defaultdict(dict)
    rep_of, runs = {}, []  # run id -> (config, repetition)
    uris = args.sweep_uri.split(",")
    for i, uri in enumerate(uris):
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("ela")
        for p in sweep_ids(uri):
            runs += [(i, r) for r in client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{p}'")]
    for i, run in runs:
        if run.info.status != "FINISHED":
            continue
        params = run.data.params
        label = params["precision.name"] + "".join(f" {b}={params.get(b)}" for b in filter(None, args.by.split(",")))
        m, key = run.data.metrics, (label, int(params["batch"]))
        seed = params.get("seed", "0")
        rep = f"{i}:{seed}" if len(uris) > 1 else str(seed)
        rep_of[run.info.run_id] = (*key, rep)
        rows[key]["ela:cost_ms_per_sample"].append(m["cost_ms_per_sample"])
        rows[key]["ela:batch_latency_ms_p50"].append(m["batch_latency_ms_p50"])
        pairs[(*key, rep)]["ela"] = m
        cv = m.get("cost_ms_per_sample_cv", 0)
        print(f"ela {key[0]}-b{key[1]} seed {rep}: cost {m['cost_ms_per_sample']:.3f} (window CV {cv:.1%}), "
              f"p50 {m['batch_latency_ms_p50']:.2f}, p90 {m['batch_latency_ms_p90']:.2f}, stalled "
              f"{m['stalled_batch_share']:.1%}, verdict {run.data.tags.get('ela.verdict')}"
              + (f", CPUs busy {m['process_cpus_busy']:.2f}, steal {m['host_steal_share']:.1%}, GC {m['gc_share']:.1%}"
                 if "process_cpus_busy" in m else ""))  # fmt: skip
    for path in args.hand_csv.split(","):
        with open(path) as f:
            for r in csv.DictReader(f):
                key = (r["precision"], int(r["batch"]))
                rows[key]["hand:cost_ms_per_sample"].append(float(r["cost_ms_per_sample"]))
                rows[key]["hand:batch_latency_ms_p50"].append(float(r["batch_latency_ms_p50"]))
                pair = rep_of.get(r.get("run_id") or "")  # the job this row followed (HandAfterJob)
                if pair is None and len(uris) == 1 and r.get("seed") not in (None, ""):
                    pair = (*key, str(r["seed"]))
                if pair in pairs:
                    pairs[pair]["hand"] = {k: float(r[k]) for k in KEYS}
                    if r.get(f"before_{KEYS[0]}"):  # bracketed (HandAfterJob before=true)
                        pairs[pair]["before"] = {k: float(r[f"before_{k}"]) for k in KEYS}
    print(
        f"\n{len(runs)} jobs of the store's sweeps (one per repetition) vs {len(args.hand_csv.split(','))} "
        "hand-loop file(s) (median [min-max]):\n"
    )
    names = ["fp32", "tf32", "fp16", "bf16"]
    order = sorted(rows, key=lambda k: (k[1], names.index(k[0]) if k[0] in names else 9))
    both = [k for k in order if rows[k].get("ela:cost_ms_per_sample") and rows[k].get("hand:cost_ms_per_sample")]
    table({k: rows[k] for k in both}, ("hand", "ela"))
    paired = {k: v for k, v in pairs.items() if "ela" in v and "hand" in v}
    if paired:
        around = "before and after" if any("before" in v for v in paired.values()) else "right after"
        print(f"\n{len(paired)} pairs (a job and the hand loop {around} it, same config and seed):\n")
        paired_table(paired, [k for k in order if any(p[:2] == k for p in paired)])


def paired_table(pairs: dict[tuple[str, int, str], dict[str, dict]], configs: list[tuple[str, int]]) -> None:
    """Markdown: per config, ela / hand of each pair (median [min-max]) and each pair's speed-up vs fp32.

    Where the hand loop also ran before each job (bracketed pairs), two more columns: the hand loop's own
    change across the job (after / before: the pair's run-to-run spread), and in how many pairs ela's cost
    lies within the two hand measurements' range.
    """
    bracketed = any("before" in v for v in pairs.values())
    more = " hand after / before | ela inside hand's range |" if bracketed else ""
    head = "| config | pairs | cost ela / hand | p50 ela / hand | speed-up vs fp32 per seed, hand | ela | signs agree |"
    print(head + more)
    print("|---|---|---|---|---|---|---|" + ("---|---|" if bracketed else ""))
    cost = KEYS[0]
    for precision, batch in configs:
        seeds = sorted(s for (p, b, s) in pairs if (p, b) == (precision, batch))
        ratio = {k: [pairs[(precision, batch, s)]["ela"][k] / pairs[(precision, batch, s)]["hand"][k] for s in seeds]
                 for k in KEYS[:2]}  # fmt: skip
        ups, agree = {"hand": [], "ela": []}, 0
        for s in seeds:
            ref = pairs.get(("fp32", batch, s))
            if not ref:
                continue
            up = {side: ref[side][cost] / pairs[(precision, batch, s)][side][cost] for side in ups}
            for side in ups:
                ups[side].append(f"{up[side]:.2f}x")
            agree += same_sign(up["hand"], up["ela"])
        n = len(ups["ela"])
        cells = [f"{precision}-b{batch}", str(len(seeds)), *(spread(ratio[k]) for k in KEYS[:2]),
                 " ".join(ups["hand"]) or "-", " ".join(ups["ela"]) or "-", f"{agree} of {n}"]  # fmt: skip
        if bracketed:
            both = [pairs[(precision, batch, s)] for s in seeds if "before" in pairs[(precision, batch, s)]]
            drift = [p["hand"][cost] / p["before"][cost] for p in both]
            lo_hi = [sorted((p["before"][cost], p["hand"][cost])) for p in both]
            inside = sum(lo <= p["ela"][cost] <= hi for (lo, hi), p in zip(lo_hi, both, strict=True))
            cells += [spread(drift) if drift else "-", f"{inside} of {len(both)}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
