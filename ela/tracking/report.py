"""Human-readable output: one line per finished job and a table per sweep."""

from __future__ import annotations

from typing import Any

import pandas as pd

# Columns of the end-of-sweep table: (MLflow metric, header, format). Cost is the energy windows' time
# per sample (pairs with J/sample); p50/p90 are the batch latency a request waits, over synced passes.
TABLE = (
    ("accuracy", "acc", "{:.4f}"),
    ("cost_ms_per_sample", "cost ms/sample", "{:.3f}"),
    ("batch_latency_ms_p50", "p50 ms/batch", "{:.2f}"),
    ("batch_latency_ms_p90", "p90 ms/batch", "{:.2f}"),
    ("energy_j_per_sample", "J/sample", "{:.4f}"),
    ("dynamic_energy_j_per_sample", "dyn J/sample", "{:.4f}"),
    ("avg_power_w", "W", "{:.0f}"),
    ("agreement_with_fp32", "agree fp32", "{:.4f}"),
    ("emissions_g", "gCO2e (job)", "{:.4f}"),
)


def summary_line(name: str, status: str, metrics: dict[str, float], tags: dict[str, str], run_id: str) -> str:
    """`[ela] fp16-b8-s0 FINISHED acc 0.8991 | cost 0.93 ms/sample | batch p50 7.6 / p90 9.1 ms | ... | run 1a2b`."""
    if status != "FINISHED":
        return f"[ela] {name} {status}: {tags.get('ela.error', '')} | run {run_id[:8]}"
    parts = [
        f"acc {metrics['accuracy']:.4f}",
        f"cost {metrics['cost_ms_per_sample']:.3f} ms/sample",
        f"batch p50 {metrics['batch_latency_ms_p50']:.2f} / p90 {metrics['batch_latency_ms_p90']:.2f} ms",
    ]
    if "energy_j_per_sample" in metrics:
        parts.append(
            f"{metrics['energy_j_per_sample']:.4f} J/sample ({tags.get('ela.method.energy')}, "
            f"dynamic {metrics['dynamic_energy_j_per_sample']:.4f})"
        )
    else:
        parts.append(f"no energy: {tags.get('ela.method.energy', 'no meter')}")
    verdict = tags.get("ela.verdict", "ok")
    parts.append(f"verdict {verdict}" + (f" ({tags.get('ela.verdict_reasons')})" if verdict != "ok" else ""))
    if "emissions_g" in metrics:
        parts.append(f"{metrics['emissions_g']:.4f} gCO2e job")
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
    if "error" in shown and not shown["error"].astype(bool).any():
        return shown.drop(columns="error")
    shown["error"] = shown["error"].str.slice(0, 100)
    return shown


def format_table(df: pd.DataFrame) -> str:
    """The table as aligned text."""
    return formatted(df).to_string(index=False)
