"""Human-readable output: one line per finished job and a table per sweep."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ela import schema as s
from ela.columns import COLUMNS

# The end-of-sweep table (headers and formats from ela.schema). Cost is the energy windows' time per sample
# (pairs with J/sample); p50/p90 are the batch latency a request waits, over synchronised passes.
TABLE_METRICS = (
    s.ACCURACY,
    s.COST,
    s.P50,
    s.P90,
    s.TTFT_P90,  # task=generation: these columns show only where a job has them
    s.TPOT_P50,
    s.TOKEN_ENERGY,
    s.ENERGY,
    s.DYNAMIC_ENERGY,
    s.AVG_POWER,
    s.AGREE_FP32,
    s.GEN_AGREE_FP32,
    s.EMISSIONS_G,
)
TABLE = tuple((m, COLUMNS[m].header, COLUMNS[m].fmt) for m in TABLE_METRICS)


def summary_line(name: str, status: str, metrics: dict[str, float], tags: dict[str, str], run_id: str) -> str:
    """`[ela] fp16-b8-s0 FINISHED acc 0.8991 | cost 0.93 ms/sample | batch p50 7.6 / p90 9.1 ms | ... | run 1a2b`."""
    if status != "FINISHED":
        return f"[ela] {name} {status}: {tags.get('ela.error', '')} | run {run_id[:8]}"
    parts = [f"acc {metrics[s.ACCURACY]:.4f}"] if s.ACCURACY in metrics else []
    parts += [f"cost {metrics[s.COST]:.3f} ms/sample", f"batch p50 {metrics[s.P50]:.2f} / p90 {metrics[s.P90]:.2f} ms"]
    if s.TPOT_P50 in metrics:  # generation: a sample is a request
        parts.append(f"TTFT p90 {metrics[s.TTFT_P90]:.1f} ms, TPOT p50 {metrics[s.TPOT_P50]:.2f} ms")
        if s.TOKEN_ENERGY in metrics:
            parts.append(f"{metrics[s.TOKEN_ENERGY]:.5f} J/output token")
    if s.ENERGY in metrics:
        dynamic = f"{metrics[s.DYNAMIC_ENERGY]:.4f}" if s.DYNAMIC_ENERGY in metrics else "n/a, no idle baseline"
        parts.append(f"{metrics[s.ENERGY]:.4f} J/sample ({tags.get('ela.method.energy')}, dynamic {dynamic})")
    else:
        parts.append(f"no energy: {tags.get('ela.method.energy', 'no meter')}")
    verdict = tags.get("ela.verdict", "ok")
    parts.append(f"verdict {verdict}" + (f" ({tags.get('ela.verdict_reasons')})" if verdict != "ok" else ""))
    if s.EMISSIONS_G in metrics:
        parts.append(f"{metrics[s.EMISSIONS_G]:.4f} gCO2e job")
    return f"[ela] {name} FINISHED " + " | ".join(parts) + f" | run {run_id[:8]}"


def runs_table(runs: list[Any], columns: tuple = TABLE) -> pd.DataFrame:
    """One row per MLflow run: name, status, the metrics in columns, and the error of failed jobs."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.info.run_name, "status": run.info.status}
        for key, header, _ in columns:
            row[header] = run.data.metrics.get(key)
        row["verdict"] = run.data.tags.get("ela.verdict", "")
        row["error"] = run.data.tags.get("ela.error", "")
        rows.append(row)
    return pd.DataFrame(rows)


def formatted(df: pd.DataFrame, columns: tuple = TABLE) -> pd.DataFrame:
    """Metric columns as text in their formats, '-' where a metric does not apply; errors dropped if none."""
    shown = df.dropna(axis=1, how="all")  # metrics no job has (GPU energy on a CPU sweep) are not shown
    for _, header, fmt in columns:
        if header in shown:
            shown[header] = [("-" if pd.isna(v) else fmt.format(v)) for v in shown[header]]
    if "error" not in shown or not shown["error"].astype(bool).any():  # no error, or no job at all
        return shown.drop(columns="error", errors="ignore")
    shown["error"] = shown["error"].str.slice(0, 100)
    return shown


def format_table(df: pd.DataFrame) -> str:
    """The table as aligned text."""
    return formatted(df).to_string(index=False)


SHARED_VIEW_TAG = "mlflow.sharedViewState."  # the experiment tag MLflow's runs page reads a ?viewStateShareKey from
VIEW_PARAMS = ("model.name", "precision.name", "batch", "engine.name", "seed")  # shown if no param varies


def view_key(sweep_id: str) -> str:
    """The share key of a sweep's saved view (one experiment tag per sweep, so old links keep working)."""
    return f"ela-{sweep_id}"


def saved_view(runs: list[Any], sweep_id: str) -> str:
    """The runs page's view of a sweep, as MLflow stores a shared view (deflate + base64 JSON).

    Its jobs listed flat, lowest energy per sample first, with the params the sweep varied, the table's
    metrics and the verdict as columns: MLflow keeps chosen columns in the browser only, so without this a
    reader starts from a list that shows no figure.
    """
    import base64
    import json
    import zlib

    values = {k: {r.data.params.get(k) for r in runs} for r in runs for k in r.data.params}
    varied = {k for k, v in values.items() if len(v) > 1}
    # A config group's choice shows as its name (precision.name), not as every field it sets.
    swept = sorted(k for k in varied if k.endswith(".name") or f"{k.rsplit('.', 1)[0]}.name" not in varied)
    swept = swept or [k for k in VIEW_PARAMS if k in values]
    metrics = [f"metrics.`{m}`" for m in TABLE_METRICS]
    columns = ["attributes.`Dataset`", *(f"params.`{k}`" for k in swept), *metrics, "tags.`ela.verdict`"]
    state = {
        "searchFilter": f"tags.`ela.sweep_id` = '{sweep_id}'",  # the jobs, not their parent: listed flat
        "orderByKey": f"metrics.`{s.ENERGY}`",
        "orderByAsc": True,
        "selectedColumns": columns,
        "columnOrder": columns,  # what a job is (its swept params) before its figures, as in the sweep's table
        "columnWidths": dict.fromkeys(metrics, 110),
    }
    packed = zlib.compress(json.dumps(state, separators=(",", ":")).encode())
    return "deflate;" + base64.b64encode(packed).decode("ascii")


def runs_fragment(experiment_id: str, share_key: str | None = None) -> str:
    """The runs page in MLflow's classic view (its UI otherwise starts in the GenAI one), as a URL fragment.

    With a saved view's share key (see `saved_view`): the sweep's jobs as that view lists them.
    """
    from urllib.parse import urlencode

    query = {"workflowType": "machine_learning"} | ({"viewStateShareKey": share_key} if share_key else {})
    return f"#/experiments/{experiment_id}/runs?{urlencode(query)}"


def runs_page(uri: str, experiment_id: str, share_key: str | None = None) -> str:
    """How to open the runs page: a link on a tracking server, else the `mlflow ui` command and the link."""
    page = runs_fragment(experiment_id, share_key)
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}   then open http://127.0.0.1:5000/{page}"


def best_metrics(runs: list[Any]) -> dict[str, float]:
    """The sweep's best figures over its FINISHED jobs, for the parent run's own metrics."""
    done = [r for r in runs if r.info.status == "FINISHED"]
    out = {}
    for metric in (s.ENERGY, s.COST, s.P90):
        values = [r.data.metrics[metric] for r in done if metric in r.data.metrics]
        if values:
            out[f"best_{metric}"] = min(values)
    return out


def sweep_description(name: str, runs: list[Any], experiment_id: str, summary: str, share_key: str) -> str:
    """The parent run's Markdown description: what ran, the table of jobs, and where to look next."""
    table = markdown(formatted(runs_table(runs)))
    if len(table) > 6000:  # the tag holds 8000 characters: a long sweep's table stays in summary.csv
        table = f"({len(runs)} jobs: their table is the artifact `summary.csv`)"
    ids = ",".join(f'"{r.info.run_id}"' for r in runs)
    compare = f'#/compare-runs?runs=[{ids}]&experiments=["{experiment_id}"]'
    jobs = runs_fragment(experiment_id, share_key)
    return (
        f"**ela sweep `{name}`**: {summary}. Cost is the energy windows' time per sample, p50/p90 the batch "
        "latency over synchronised passes, J/sample the window energy per sample (how it was measured: each "
        "run's `ela.method.*` tags; its measurement quality: `ela.verdict`).\n\n"
        f"{table}\n\n[List these jobs with their figures]({jobs}) · [Compare these runs]({compare}) · "
        f"analyse the sweep: `python -m ela.analyze sweep={name}` "
        "(the report is logged here under `analysis/`)."
    )


# `python -m ela.tracking.report`: a sweep's table in Markdown (for notes and benchmarks/README.md).
MARKDOWN_METRICS = (
    s.ACCURACY, s.AGREE_FP32, s.AGREE_EAGER, "engine_setup_s", s.COST, f"{s.COST}_cv", s.P50, s.P90,
    s.STALLED_SHARE, s.ENERGY, s.DYNAMIC_ENERGY, s.IDLE_POWER, s.AVG_POWER, "energy_window_s", "peak_memory_mb",
)  # fmt: skip


def markdown(df: pd.DataFrame) -> str:
    """A formatted table as Markdown (no tabulate needed)."""
    lines = ["| " + " | ".join(df.columns) + " |", "|---" * len(df.columns) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def placement(runs: list[Any]) -> str:
    """Each job's process, GPU and time span (s from the first job's start): what ran at once."""
    t0 = min(r.info.start_time for r in runs)
    rows = []
    for r in sorted(runs, key=lambda r: r.info.start_time):
        t, m = r.data.tags, r.data.metrics
        rows.append(
            {
                "run": r.info.run_name,
                "status": r.info.status,
                "pid": t.get("ela.pid", "-"),
                "GPU (NVML index, UUID)": f"{t.get('gpu.nvml_index', '-')}, {t.get('gpu.uuid', '-')[:12]}",
                "start s": f"{(r.info.start_time - t0) / 1000:.1f}",
                "end s": f"{(r.info.end_time - t0) / 1000:.1f}" if r.info.end_time else "-",
                "waited s": f"{m.get('device_wait_s', float('nan')):.1f}",
                "J/sample": f"{m.get(s.ENERGY, float('nan')):.4f}",
                "error": t.get("ela.error", "")[:90],
            }
        )
    return markdown(pd.DataFrame(rows))


def main(argv: list[str] | None = None) -> None:
    """Print the latest (or a given) sweep of an MLflow store as a Markdown table."""
    import argparse
    from pathlib import Path

    from ela.tracking.store import Tracker, tracking_uri

    ap = argparse.ArgumentParser(prog="python -m ela.tracking.report", description=main.__doc__)
    ap.add_argument("--uri", default=None, help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    ap.add_argument("--experiment", default="ela")
    ap.add_argument("--sweep", default=None, help="parent run id (default: the latest sweep)")
    ap.add_argument("--placement", action="store_true", help="where and when each job ran, instead")
    a = ap.parse_args(argv)
    tracker = Tracker(tracking_uri(a.uri, Path.cwd()), a.experiment, create=False)
    sweep = a.sweep
    if sweep is None:
        from ela.analysis.load import find_sweep

        sweep = find_sweep(tracker, "latest").info.run_id
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
        print(placement(runs))
        return
    columns = tuple((m, COLUMNS[m].header, COLUMNS[m].fmt) for m in MARKDOWN_METRICS)
    table = formatted(runs_table(runs, columns), columns)
    table.insert(
        1,
        "engine, attention",
        [f"{r.data.tags.get('ela.engine')}, {r.data.tags.get('ela.attn_implementation')}" for r in runs],
    )
    print(markdown(table))


if __name__ == "__main__":
    main()
