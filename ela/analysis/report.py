"""Output of `ela.analyze`: terminal summary, CSV tables, plots, and a Markdown + self-contained HTML report."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from ela import schema as s
from ela.analysis import plots
from ela.analysis.pipeline import Analysis, unfinished
from ela.columns import COLUMNS

# The summary table: metric columns from ela.schema (header, format); "±CI" where the column has a CI.
CI_COLUMNS = (s.ACCURACY, s.COST, s.P90, s.ENERGY, s.DYNAMIC_ENERGY)
SUMMARY_METRICS = (
    s.ACCURACY,
    s.COST,
    s.P50,
    s.P90,
    s.ENERGY,
    s.DYNAMIC_ENERGY,
    s.EMISSIONS,
    s.SPEEDUP,
    s.ENERGY_SAVING,
    s.TTFT_P90,
    s.TPOT_P50,
    s.TOKENS_PER_S,
    s.TOKEN_ENERGY,
    s.GEN_AGREE_FP32,
)
SUMMARY_OTHER = (
    ("quality_ok", "quality ok", "{}"),
    ("front_cost_energy_quality", "cost-energy front", "{}"),
    ("verdict", "verdict", "{}"),
    ("ci_basis", "CI from", "{}"),
)


def summary_columns() -> list[tuple[str, str, str]]:
    """(column, header, format) of the summary table."""
    cols = [("n_seeds", "seeds", "{:.0f}")]
    for m in SUMMARY_METRICS:
        col = COLUMNS[m]
        cols.append((m, f"{col.header} ±CI" if m in CI_COLUMNS else col.header, col.fmt))
    return [*cols, *SUMMARY_OTHER]


def summary_frame(a: Analysis) -> pd.DataFrame:
    """The per-configuration table shown in the terminal and the report."""
    rows = []
    for _, r in a.configs.sort_values("config").iterrows():
        row = {"config": r["config"]}
        for col, header, fmt in summary_columns():
            if col not in r or pd.isna(r[col]):
                row[header] = "-"
                continue
            text = fmt.format(r[col])
            if col == s.SPEEDUP and r.get(s.SPEEDUP_VS_CI) == "within CI":
                text += " (within CI)"  # the cost CIs overlap fp32's: no direction is claimed
            ci = r.get(f"{col}_ci")
            row[header] = f"{text} ±{fmt.format(ci)}" if "±" in header and pd.notna(ci) else text
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.loc[:, (table != "-").any()]  # drop what no configuration has (e.g. energy on CPU)


NOT_FINISHED = "Jobs that did not finish (failed or killed)"


def job_counts(a: Analysis) -> str:
    """'10 finished jobs, 0 failed, 2 killed' (see `unfinished`)."""
    return f"{len(a.runs)} finished jobs, {unfinished(a.failed)}"


def _unfinished_lines(a: Analysis) -> list[str]:
    """'<run> KILLED: <why>' for every job that did not finish."""
    return [f"{r['tags.mlflow.runName']} {r['status']}: {r.get('tags.ela.error', '')}" for _, r in a.failed.iterrows()]


def summary_text(a: Analysis) -> str:
    """What the terminal shows: the table, the recommendations, the jobs that did not finish, the notes."""
    lines = [
        f"[ela] sweep {a.parent.info.run_name} ({a.parent.info.run_id[:8]}): {job_counts(a)}, "
        f"{len(a.configs)} configurations",
        summary_frame(a).to_string(index=False),
        "",
    ]
    lines += [f"recommended ({k}): {v}" for k, v in a.recommendations.items()]
    if len(a.failed):
        lines.append(NOT_FINISHED.lower() + ":")
        lines += [f"  {line}" for line in _unfinished_lines(a)]
    if len(a.running):
        lines.append("running jobs (not analysed): " + ", ".join(a.running["tags.mlflow.runName"]))
    noisy = a.configs[a.configs["verdict"] != "ok"]
    if len(noisy):
        lines.append("measurement quality:")
        lines += [f"  {r['config']} {r['verdict']}: {r['verdict_reasons']}" for _, r in noisy.iterrows()]
    lines += [f"note: {n}" for n in a.notes]
    return "\n".join(lines)


def figures(a: Analysis) -> dict[str, bytes]:
    """Every plot this sweep supports, as PNG bytes by file name."""
    c, threshold = a.configs, a.quality_threshold
    energy = f"energy per sample [J] ({_methods(a)})"
    out = {"cost_vs_p90_latency.png": plots.cost_latency_png(c)}
    if s.ACCURACY in c:
        out["accuracy_by_precision.png"] = plots.bars_png(c, s.ACCURACY, "accuracy", "Accuracy by precision", threshold)
    if s.ENERGY in c:
        out["energy_by_precision.png"] = plots.bars_png(c, s.ENERGY, energy, "Energy by precision")
        out["pareto_cost_energy.png"] = plots.pareto_png(
            c, s.COST, s.ENERGY, "front_cost_energy", "cost per sample, energy windows [ms]", energy,
            "Cost-energy trade-off (95% CIs; front in red)",
        )  # fmt: skip
        out["pareto_p90_energy.png"] = plots.pareto_png(
            c, s.P90, s.ENERGY, "front_p90_energy", "p90 batch latency, synchronised passes [ms]", energy,
            "Latency-energy trade-off (95% CIs; front in red)",
        )  # fmt: skip
        out["accuracy_vs_energy.png"] = plots.accuracy_energy_png(c, threshold, energy)
    if s.EMISSIONS in c:
        out["pareto_cost_emissions.png"] = plots.pareto_png(
            c, s.COST, s.EMISSIONS, "front_cost_emissions", "cost per sample, energy windows [ms]",
            "emissions per sample [mg CO2e]", "Cost-emissions trade-off (95% CIs; front in red)",
        )  # fmt: skip
    if s.TOKEN_ENERGY in c:  # generation
        out["pareto_tpot_token_energy.png"] = plots.pareto_png(
            c, s.TPOT_P50, s.TOKEN_ENERGY, "front_tpot_token_energy", "time per output token, p50 [ms]",
            f"energy per output token [J] ({_methods(a)})", "Decode speed-energy trade-off (front in red)",
        )  # fmt: skip
        out["pareto_ttft_request_energy.png"] = plots.pareto_png(
            c, s.TTFT_P90, s.ENERGY, "front_ttft_request_energy", "time to first token, p90 [ms]",
            f"energy per request [J] ({_methods(a)})", "Responsiveness-energy trade-off (95% CIs; front in red)",
        )  # fmt: skip
    if not a.difficulty.empty:
        out["difficulty_by_length.png"] = plots.difficulty_png(a.difficulty, "length_quintile", "token-length quintile")
        if (a.difficulty["binning"] == "fp32_confidence_quintile").any():
            out["difficulty_by_fp32_confidence.png"] = plots.difficulty_png(
                a.difficulty, "fp32_confidence_quintile", "fp32-confidence quintile"
            )
    return out


SCOPES = {"gpu": "GPU, NVML", "cpu-packages": "CPU, RAPL", "cpu+ram": "CPU+RAM, modelled", "fake": "fake meter"}


def _methods(a: Analysis) -> str:
    """How the sweep's energy was obtained, short enough for an axis label (the report has the full tags)."""
    col = "tags.ela.energy_scope"
    scopes = sorted(a.runs[col].dropna().astype(str).unique()) if col in a.runs else []
    return ", ".join(SCOPES.get(s, s) for s in scopes) or "unknown"


def write_outputs(a: Analysis, out: Path) -> list[Path]:
    """Write CSV tables, plots, report.md and report.html into out; return the files written."""
    (out / "plots").mkdir(parents=True, exist_ok=True)
    written = []
    tables = {
        "configs.csv": a.configs,
        "runs.csv": a.runs,
        "failed.csv": pd.concat([a.failed, a.running]),
        "difficulty.csv": a.difficulty,
    }
    for name, df in tables.items():
        df.to_csv(out / name, index=False)
        written.append(out / name)
    figs = figures(a)
    for name, png in figs.items():
        (out / "plots" / name).write_bytes(png)
        written.append(out / "plots" / name)
    summary = summary_frame(a)
    (out / "report.md").write_text(_markdown(a, summary, figs))
    (out / "report.html").write_text(_html(a, summary, figs))
    return [*written, out / "report.md", out / "report.html"]


def provenance(a: Analysis) -> list[str]:
    """What was measured where and when: host, device, driver, versions, ela commit, dates, energy, verdicts."""
    r = a.runs

    def values(tag: str) -> str:
        col = f"tags.{tag}"
        return ", ".join(sorted(r[col].dropna().astype(str).unique())) if col in r else "-"

    device = values("gpu.name") if "tags.gpu.name" in r else f"CPU ({values('host.cpu')})"
    start, end = pd.to_datetime(r["start_time"].min(), unit="ms"), pd.to_datetime(r["start_time"].max(), unit="ms")
    verdicts = a.configs["verdict"].value_counts()
    return [
        f"Host {values('host.name')}; device {device}"
        + (f", driver {values('gpu.driver')}" if "tags.gpu.driver" in r else ""),
        f"torch {values('version.torch')}, transformers {values('version.transformers')}, "
        f"codecarbon {values('version.codecarbon')}, mlflow {values('version.mlflow-skinny')}; "
        f"ela {values('ela.version')} at commit {values('ela.git_commit')}",
        f"Jobs started {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; energy: {values('ela.method.energy')}",
        "Measurement verdicts (configurations): " + ", ".join(f"{n} {v}" for v, n in verdicts.items()),
    ]


def _markdown(a: Analysis, summary: pd.DataFrame, figs: dict[str, bytes]) -> str:
    parts = [
        f"# ela report: sweep {a.parent.info.run_name}",
        f"Parent run `{a.parent.info.run_id}`; {job_counts(a)}.",
        "\n".join(f"- {line}" for line in provenance(a)),
        "## Configurations",
        summary.to_markdown(index=False) if _has_tabulate() else "```\n" + summary.to_string(index=False) + "\n```",
        "## Recommendations",
        *[f"- **{k}**: {v}" for k, v in a.recommendations.items()],
        "## Notes",
        *[f"- {n}" for n in a.notes],
    ]
    if len(a.failed):
        parts += [
            f"## {NOT_FINISHED}",
            *[f"- {line}" for line in _unfinished_lines(a)],
        ]
    parts += ["## Plots", *[f"![{n}](plots/{n})" for n in figs]]
    return "\n\n".join(parts) + "\n"


def _html(a: Analysis, summary: pd.DataFrame, figs: dict[str, bytes]) -> str:
    imgs = "".join(
        f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'
        f"<figcaption>{n}</figcaption></figure>"
        for n, png in figs.items()
    )
    recs = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in a.recommendations.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in a.notes)
    failed = "".join(f"<li>{html.escape(line)}</li>" for line in _unfinished_lines(a))
    failed = f"<h2>{NOT_FINISHED}</h2><ul>{failed}</ul>" if failed else ""
    title = f"ela report: sweep {html.escape(a.parent.info.run_name)}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}
figure{{display:inline-block;margin:8px}}img{{max-width:520px}}</style></head>
<body><h1>{title}</h1>
<p>Parent run <code>{a.parent.info.run_id}</code>; {job_counts(a)}.</p>
<ul>{"".join(f"<li>{html.escape(line)}</li>" for line in provenance(a))}</ul>
<h2>Configurations</h2>{summary.to_html(index=False, border=0)}
<h2>Recommendations</h2><ul>{recs}</ul><h2>Notes</h2><ul>{notes}</ul>
{failed}<h2>Plots</h2>{imgs}</body></html>
"""


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
