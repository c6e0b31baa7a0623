"""How each metric shows in ela's tables (the sweep table, the analysis report): its header and format.

Names come from ela.schema, the one source of metric names; this module only says how to print them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ela.schema import (
    ACCURACY,
    AGREE_EAGER,
    AGREE_FP32,
    AVG_POWER,
    COST,
    DYNAMIC_ENERGY,
    EMISSIONS,
    EMISSIONS_G,
    ENERGY,
    ENERGY_SAVING,
    GEN_AGREE_FP32,
    IDLE_POWER,
    P50,
    P90,
    P99,
    SPEEDUP,
    STALLED_SHARE,
    THROUGHPUT,
    TOKEN_ENERGY,
    TOKENS_PER_S,
    TPOT_P50,
    TTFT_P90,
)


@dataclass(frozen=True)
class Column:
    """How a metric shows in a table: header and format."""

    header: str
    fmt: str


COLUMNS = {
    ACCURACY: Column("acc", "{:.4f}"),
    COST: Column("cost ms/sample", "{:.3f}"),
    P50: Column("p50 ms/batch", "{:.2f}"),
    P90: Column("p90 ms/batch", "{:.2f}"),
    P99: Column("p99 ms/batch", "{:.2f}"),
    STALLED_SHARE: Column("stalled", "{:.1%}"),
    THROUGHPUT: Column("samples/s", "{:.0f}"),
    ENERGY: Column("J/sample", "{:.4f}"),
    DYNAMIC_ENERGY: Column("dyn J/sample", "{:.4f}"),
    AVG_POWER: Column("W", "{:.0f}"),
    IDLE_POWER: Column("idle W", "{:.0f}"),
    AGREE_FP32: Column("agree fp32", "{:.4f}"),
    AGREE_EAGER: Column("agree eager", "{:.4f}"),
    EMISSIONS_G: Column("gCO2e (job)", "{:.4f}"),
    EMISSIONS: Column("mgCO2e/sample", "{:.4f}"),
    "engine_setup_s": Column("setup s", "{:.1f}"),
    "energy_window_s": Column("window s", "{:.1f}"),
    "peak_memory_mb": Column("peak MiB", "{:.0f}"),
    f"{COST}_cv": Column("cost CV", "{:.1%}"),
    SPEEDUP: Column("speed-up vs fp32 (cost)", "{:.2f}x"),
    TTFT_P90: Column("TTFT p90 ms", "{:.1f}"),
    TPOT_P50: Column("TPOT p50 ms", "{:.2f}"),
    TOKENS_PER_S: Column("tokens/s", "{:.0f}"),
    TOKEN_ENERGY: Column("J/token", "{:.4f}"),
    GEN_AGREE_FP32: Column("same output as fp32", "{:.3f}"),
    ENERGY_SAVING: Column("energy saving vs fp32", "{:.1%}"),
}
