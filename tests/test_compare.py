"""Configuration identity: labels from what varies, fp32 references on every other varying param, drift."""

import pandas as pd
import pytest

from ela.analysis.compare import drift, labels, relative_to_fp32

H = "tags.ela.config_hash"


def grid() -> pd.DataFrame:
    rows = []
    for attn in ("sdpa", "padded_triton"):
        for precision, weights in (("fp32", "float32"), ("bf16", "float32")):
            rows.append(
                {
                    H: f"{precision}-{attn}",
                    "params.precision.name": precision,
                    "params.precision.weights_dtype": weights,
                    "params.precision.autocast_dtype": None if precision == "fp32" else "bfloat16",
                    "params.batch": 64,
                    "params.engine.name": "compile",
                    "params.engine.compile_mode": "reduce-overhead",
                    "params.model.attn_implementation": attn,
                    "params.seed": 0,
                    "params.tracking.experiment": "ela",
                    "cost_ms_per_sample": {"sdpa": 2.0, "padded_triton": 1.0}[attn] * (2 if precision == "fp32" else 1),
                    "energy_j_per_sample": 0.02,
                }
            )
    return pd.DataFrame(rows)


def test_labels_name_the_axis_that_tells_configs_apart_and_nothing_implied():
    got = list(labels(grid()))
    assert got == [
        "fp32-b64-compile-attn_implementation=sdpa",
        "bf16-b64-compile-attn_implementation=sdpa",
        "fp32-b64-compile-attn_implementation=padded_triton",
        "bf16-b64-compile-attn_implementation=padded_triton",
    ]  # precision.autocast_dtype varies too, but precision.name already says it


def test_fp32_reference_matches_every_other_varying_param():
    c = relative_to_fp32(grid(), "cost_ms_per_sample", "energy_j_per_sample")
    assert c["speedup_vs_fp32"].tolist() == pytest.approx([1.0, 2.0, 1.0, 2.0])  # each against its own attention
    assert c["speedup_vs_fp32"].map(type).eq(float).all()  # a number per row, never a Series


def test_eager_labels_stay_short():
    g = grid().assign(**{"params.engine.name": "eager", "params.model.attn_implementation": "sdpa"})
    g = g.drop_duplicates(H).iloc[:2]
    assert list(labels(g)) == ["fp32-b64", "bf16-b64"]


def test_drift_from_first_to_last_repetition_in_sweep_order():
    runs = pd.DataFrame(
        {
            H: ["a", "b", "a", "b", "a", "b"],
            "tags.ela.sweep_position": ["0", "1", "2", "3", "4", "5"],
            "start_time": [5, 4, 3, 2, 1, 0],  # clocks can disagree: the sweep position decides
            "cost_ms_per_sample": [1.0, 2.0, 1.1, 2.0, 1.2, 2.0],
        }
    )
    d = drift(runs, ["cost_ms_per_sample"]).set_index(H)
    assert d.loc["a", "drift_cost_ms_per_sample"] == pytest.approx(0.2)
    assert d.loc["b", "drift_cost_ms_per_sample"] == pytest.approx(0.0)


def test_interleave_puts_the_repetition_outermost_and_shuffles_reproducibly():
    import sys

    sys.path.insert(0, str(__import__("conftest").REPO))
    from hydra_plugins.ela_sweeper.interleaved_sweeper import interleave

    jobs = [[f"precision={p}", f"batch={b}", f"seed={s}"] for p in ("fp32", "bf16") for b in (1, 8) for s in (0, 1, 2)]
    ordered = interleave(jobs, "seed", shuffle=False, seed=0)
    assert [j[2] for j in ordered] == ["seed=0"] * 4 + ["seed=1"] * 4 + ["seed=2"] * 4
    assert ordered[:4] == [j for j in jobs if j[2] == "seed=0"]  # grid order kept within a repetition
    shuffled = interleave(jobs, "seed", shuffle=True, seed=7)
    assert shuffled == interleave(jobs, "seed", shuffle=True, seed=7)  # a fixed seed: the same order again
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, jobs)) and shuffled != ordered
    assert [j[2] for j in shuffled] == [j[2] for j in ordered]
    assert interleave([["batch=1"], ["batch=8"]], "seed", False, 0) == [["batch=1"], ["batch=8"]]


def test_a_null_or_int_param_reads_as_typed_on_the_command_line():
    # engine.packing=null,128: MLflow hands back None and 128, which pandas keeps as NaN and 128.0
    g = grid().iloc[:2].assign(**{"params.engine.packing": [float("nan"), 128.0]}, **{"params.precision.name": "bf16"})
    assert list(labels(g)) == ["bf16-b64-compile-packing=null", "bf16-b64-compile-packing=128"]


def test_a_speed_up_inside_the_noise_claims_no_direction():
    g = grid().assign(
        cost_ms_per_sample_lo=[3.0, 1.0, 1.5, 1.7], cost_ms_per_sample_hi=[5.0, 2.9, 2.5, 2.3]
    )  # fp32-sdpa [3, 5] vs bf16-sdpa [1, 2.9]: apart; fp32-triton [1.5, 2.5] vs bf16-triton [1.7, 2.3]: overlap
    c = relative_to_fp32(g, "cost_ms_per_sample", "energy_j_per_sample")
    assert c["speedup_vs_fp32_vs_ci"].tolist() == ["", "faster", "", "within CI"]
