"""matplotlib with the Agg backend (no display needed) and one PNG writer, for the trace and the analysis."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "png"]


def png(fig) -> bytes:
    """The figure as PNG bytes (tight layout); the figure is closed."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
