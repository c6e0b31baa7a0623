"""Figures (matplotlib/seaborn, Agg backend): PNG bytes ready to log as artifacts."""

from __future__ import annotations

import pandas as pd

from ela import schema as s
from ela.figures import plt
from ela.figures import png as _png


def _errorbar_scatter(ax, df: pd.DataFrame, x: str, y: str, highlight: pd.Series | None = None) -> None:
    """Points with 95% CI error bars (where there are CIs), labelled by config; front points filled."""
    xerr, yerr = df.get(f"{x}_ci"), df.get(f"{y}_ci")
    if (xerr is not None and xerr.notna().any()) or (yerr is not None and yerr.notna().any()):
        ax.errorbar(df[x], df[y], xerr=xerr, yerr=yerr, fmt="none", ecolor="grey", elinewidth=0.8, capsize=2)
    on_front = highlight if highlight is not None else pd.Series(False, index=df.index)
    ax.scatter(df.loc[~on_front, x], df.loc[~on_front, y], s=36, facecolors="white", edgecolors="black", zorder=3)
    ax.scatter(df.loc[on_front, x], df.loc[on_front, y], s=48, color="tab:red", zorder=4, label="Pareto front")
    if on_front.any():
        front = df[on_front].sort_values(x)
        ax.plot(front[x], front[y], color="tab:red", lw=1, zorder=2)
    for _, r in df.iterrows():
        ax.annotate(r["config"], (r[x], r[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)


def pareto_png(configs: pd.DataFrame, x: str, y: str, status: str, xlabel: str, ylabel: str, title: str) -> bytes:
    """A two-objective front: every configuration with CIs, the front highlighted."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    df = configs.dropna(subset=[x, y])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    _errorbar_scatter(ax, df, x, y, df[status] == "front" if status in df else None)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def bars_png(configs: pd.DataFrame, y: str, ylabel: str, title: str, threshold: float | None = None) -> bytes:
    """A metric per configuration, coloured by precision, with its 95% CI where it has one."""
    df = configs.dropna(subset=[y]).sort_values("config")
    precisions = list(dict.fromkeys(df["params.precision.name"]))
    colors = dict(zip(precisions, plt.cm.tab10.colors, strict=False))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(df) + 2), 4.2), dpi=120)
    ci = df.get(f"{y}_ci")
    ax.bar(df["config"], df[y], color=[colors[p] for p in df["params.precision.name"]], edgecolor="black", lw=0.5)
    if ci is not None and ci.notna().any():  # only where there is a CI: no stray zero-width ticks
        has = ci.notna() & (ci > 0)
        ax.errorbar(df.loc[has, "config"], df.loc[has, y], yerr=ci[has], fmt="none", ecolor="black", capsize=3)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"quality threshold {threshold:.4f}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if y == s.ACCURACY:  # differences of a few tenths of a percent must be visible
        lo = min(df[y].min(), threshold or 1.0)
        ax.set_ylim(max(0.0, lo - 0.02), min(1.0, df[y].max() + 0.01))
    ax.set(xlabel="configuration", ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    plt.setp(ax.get_xticklabels(), ha="right")
    return _png(fig)


def accuracy_energy_png(configs: pd.DataFrame, threshold: float | None, xlabel: str) -> bytes:
    """Accuracy against energy per sample, with the quality threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    df = configs.dropna(subset=[s.ENERGY, s.ACCURACY])
    status = "front_energy_accuracy"
    _errorbar_scatter(ax, df, s.ENERGY, s.ACCURACY, df[status] == "front" if status in df else None)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"quality threshold {threshold:.4f}")
    ax.set(xlabel=xlabel, ylabel=s.ACCURACY, title="Accuracy vs energy")
    ax.legend(fontsize=8)
    return _png(fig)


def cost_latency_png(configs: pd.DataFrame) -> bytes:
    """The two time figures side by side: cost per sample (windows) against p90 batch latency (synced passes)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    df = configs.dropna(subset=[s.COST, s.P90])
    _errorbar_scatter(ax, df, s.COST, s.P90)
    ax.set(
        xlabel="cost per sample, energy windows [ms]",
        ylabel="p90 batch latency, synchronised passes [ms]",
        title="What a sample costs vs what a request waits",
    )
    return _png(fig)


def difficulty_png(difficulty: pd.DataFrame, binning: str, xlabel: str) -> bytes:
    """Accuracy per difficulty quintile, one series per configuration (dodged, so none hides another)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    df = difficulty[difficulty["binning"] == binning].copy()
    order = list(dict.fromkeys(df.sort_values("bin")["range"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=120)
    dodge = 0.4 if df["config"].nunique() > 1 else False  # seaborn divides by (configurations - 1)
    sns.pointplot(data=df, x="range", y="accuracy", hue="config", order=order, dodge=dodge, markers="o", ax=ax)
    ax.set(xlabel=xlabel, ylabel="accuracy", title=f"Accuracy by {xlabel}")
    ax.tick_params(axis="x", rotation=20, labelsize=7)
    ax.legend(title="configuration", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)
