"""Figures (matplotlib/seaborn, Agg backend): PNG bytes ready to log as artifacts."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def power_trace_png(trace: pd.DataFrame, title: str) -> bytes:
    """Power over the job, one shaded band per phase, so a reader sees what each window covered."""
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    power = trace["power_w"]
    if power.isna().all():  # counters without a power reading: derive it from the energy samples
        power = trace["energy_j"].diff() / trace["t_s"].diff()
    ax.plot(trace["t_s"], power, lw=1.0, color="black")
    colors = plt.cm.tab10.colors
    phases = trace["phase"].ne(trace["phase"].shift()).cumsum()
    for i, (_, seg) in enumerate(trace.groupby(phases)):
        ax.axvspan(seg["t_s"].iloc[0], seg["t_s"].iloc[-1], color=colors[i % 10], alpha=0.15, lw=0)
        ax.text(
            seg["t_s"].iloc[0],
            1.0,
            seg["phase"].iloc[0],
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
        )
    ax.set(xlabel="time since job start [s]", ylabel="GPU power [W]", title=title)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
