"""Measurement-quality verdicts and what the analysis does with them (pure functions, hand-made figures)."""

import pandas as pd

from ela.analysis.recommend import Constraints, recommend
from ela.measure.quality import CI_CHECKS, verdict, worst

CLEAN = {
    "cost_ms_per_sample_cv": 0.01,
    "energy_j_per_sample_cv": 0.02,
    "stalled_batch_share": 0.0,
    "energy_window_ticks_min": 50,
    "host_other_cpu_share": 0.05,
    "latency_cost_ratio": 1.1,
}


def test_a_clean_job_is_ok_and_figures_it_lacks_are_not_judged():
    assert verdict(CLEAN) == ("ok", [])
    assert verdict({"stalled_batch_share": 0.0}) == ("ok", [])  # e.g. a CPU job: no counter ticks


def test_each_figure_past_its_threshold_gives_its_reason():
    level, reasons = verdict({**CLEAN, "cost_ms_per_sample_cv": 0.08, "stalled_batch_share": 0.02})
    assert level == "noisy" and len(reasons) == 2
    assert "cost per sample varies 8.0% across energy windows (noisy)" in reasons
    level, reasons = verdict({**CLEAN, "energy_window_ticks_min": 4})
    assert level == "unreliable" and reasons == ["a window spans only 4 energy-counter ticks (unreliable)"]
    assert verdict({**CLEAN, "latency_cost_ratio": 2.3})[0] == "noisy"  # the bf16-b8: stalls in the pass
    assert verdict({**CLEAN, "latency_cost_ratio": 0.4})[0] == "unreliable"  # disturbed windows
    assert verdict({**CLEAN, "host_other_cpu_share": 0.6})[0] == "unreliable"


def test_ci_width_relative_to_the_mean():
    assert verdict({"cost_ms_per_sample_ci_rel": 0.05}, CI_CHECKS)[0] == "ok"
    assert verdict({"energy_j_per_sample_ci_rel": 0.3}, CI_CHECKS)[0] == "unreliable"
    assert worst(["ok", "unreliable", "noisy"]) == "unreliable" and worst([]) == "ok"


def test_a_recommendation_on_unreliable_figures_says_so():
    configs = pd.DataFrame(
        {
            "config": ["fp32-b8", "bf16-b8"],
            "cost_ms_per_sample": [1.0, 0.5],
            "batch_latency_ms_p90": [9.0, 5.0],
            "energy_j_per_sample": [0.2, 0.1],
            "accuracy": [0.9, 0.9],
            "quality_ok": [True, True],
            "front_cost_energy_quality": ["dominated", "front"],
            "verdict": ["ok", "unreliable"],
            "verdict_reasons": ["", "bf16-b8-s0: 6.0% of timed batches stalled (unreliable)"],
        }
    )
    recs = recommend(configs, Constraints(max_latency_ms=6.0))
    assert recs["knee"].startswith("bf16-b8") and "built on UNRELIABLE figures: bf16-b8-s0: 6.0%" in recs["knee"]
    assert "max_latency_ms (p90)=6.0" in recs["best"] and "UNRELIABLE" in recs["best"]
    assert recommend(configs, Constraints(max_latency_ms=4.0))["best"].startswith("no configuration meets")
