"""Print a sweep's results from MLflow as a Markdown table (for benchmarks/README.md).

python benchmarks/sweep_table.py                      # latest sweep in ./mlflow.db, experiment 'ela'
python benchmarks/sweep_table.py --uri sqlite:///x.db --sweep <parent run id>
python benchmarks/sweep_table.py --placement          # where and when each job ran (parallel sweeps)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ela.tracking.report import formatted, runs_table
from ela.tracking.store import Tracker, tracking_uri

COLUMNS = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("agreement_with_fp32", "agree fp32", "{:.4f}"),
    ("agreement_with_eager", "agree eager", "{:.4f}"),
    ("engine_setup_s", "setup s", "{:.1f}"),
    ("cost_ms_per_sample", "cost ms/sample", "{:.3f}"),
    ("cost_ms_per_sample_cv", "cost CV", "{:.1%}"),
    ("batch_latency_ms_p50", "p50 ms/batch", "{:.2f}"),
    ("batch_latency_ms_p90", "p90 ms/batch", "{:.2f}"),
    ("stalled_batch_share", "stalled", "{:.1%}"),
    ("throughput_samples_per_s", "samples/s (window)", "{:.0f}"),
    ("energy_j_per_sample", "J/sample", "{:.4f}"),
    ("dynamic_energy_j_per_sample", "dynamic J/sample", "{:.4f}"),
    ("idle_power_w", "idle W", "{:.0f}"),
    ("avg_power_w", "avg W", "{:.0f}"),
    ("energy_window_s", "window s", "{:.1f}"),
    ("peak_memory_mb", "peak MiB", "{:.0f}"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default=None, help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    ap.add_argument("--experiment", default="ela")
    ap.add_argument("--sweep", default=None, help="parent run id (default: the latest sweep)")
    ap.add_argument("--placement", action="store_true", help="print where and when each job ran instead")
    a = ap.parse_args()
    tracker = Tracker(tracking_uri(a.uri, Path.cwd()), a.experiment)
    sweep = a.sweep
    if sweep is None:
        parents = tracker.client.search_runs(
            [tracker.experiment_id],
            "tags.`ela.run_kind` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            raise SystemExit("no sweep in this experiment")
        sweep = parents[0].info.run_id
    runs = tracker.children(sweep)
    first = next((r for r in runs if r.info.status == "FINISHED"), None)
    if first is not None:
        t = first.data.tags
        print(
            f"card: {t.get('gpu.name', 'CPU ' + t.get('host.cpu', '?'))}, driver {t.get('gpu.driver', '-')}, "
            f"torch {t.get('version.torch')}, transformers {t.get('version.transformers')}, "
            f"model {t.get('ela.model_source')}, energy {t.get('ela.method.energy')}\n"
        )
    if a.placement:
        print_placement(runs)
        return
    table = formatted(runs_table(runs, COLUMNS), COLUMNS)
    table.insert(
        1,
        "engine, attention",
        [f"{r.data.tags.get('ela.engine')}, {r.data.tags.get('ela.attn_implementation')}" for r in runs],
    )
    print("| " + " | ".join(table.columns) + " |")
    print("|---" * len(table.columns) + "|")
    for row in table.itertuples(index=False):
        print("| " + " | ".join(map(str, row)) + " |")


def print_placement(runs) -> None:
    """Each job's process, GPU and time span (s from the first job's start): shows what ran at once."""
    t0 = min(r.info.start_time for r in runs)
    print("| run | status | pid | GPU (NVML index, UUID) | CUDA_VISIBLE_DEVICES | start s | end s | "
          "waited s | J/sample | idle W | error |")  # fmt: skip
    print("|---" * 11 + "|")
    for r in sorted(runs, key=lambda r: r.info.start_time):
        t, m = r.data.tags, r.data.metrics
        end = f"{(r.info.end_time - t0) / 1000:.1f}" if r.info.end_time else "-"
        print(
            f"| {r.info.run_name} | {r.info.status} | {t.get('ela.pid', '-')} | "
            f"{t.get('gpu.nvml_index', '-')}, {t.get('gpu.uuid', '-')[:12]} | "
            f"{t.get('ela.cuda_visible_devices', '-')[:12]} | {(r.info.start_time - t0) / 1000:.1f} | {end} | "
            f"{m.get('device_wait_s', float('nan')):.1f} | {m.get('energy_j_per_sample', float('nan')):.4f} | "
            f"{m.get('idle_power_w', float('nan')):.0f} | {t.get('ela.error', '')[:90]} |"
        )


if __name__ == "__main__":
    main()
