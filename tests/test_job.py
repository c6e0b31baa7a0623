"""One job in this process, as every launcher runs it: bad input is refused before work, and a real
job on the full SST-2 dev split reproduces the model's recorded accuracy."""

import pytest
from conftest import FAST, LOCAL, compose_job, measure

from ela import ElaError


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["batch=-1"], "invalid value batch=-1"),
        (["model.path=/no/such/checkpoint"], "model.path='/no/such/checkpoint' does not exist"),
        (["dataset.text_column=text"], "no column(s) ['text']"),
        (["dataset.label_names=[neg,pos]"], "not among the model's labels"),
        (["model.attn_implementation=padded_triton"], "padded_triton runs a CUDA kernel; this job runs on cpu"),
        (["precision=tf32"], "needs TF32 tensor cores"),
        (["engine=cudagraph"], "engine=cudagraph captures CUDA graphs and needs a CUDA GPU"),
        (["codecarbon.country_iso_code=XXX"], "'XXX' is not a country in CodeCarbon's offline data"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path, overrides, message):
    with pytest.raises(ElaError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        measure(tmp_path, *FAST, *overrides)


@pytest.mark.parametrize(
    "overrides, message", [(["precision=fp64"], "Could not find 'precision/fp64'"), (["model=gpt5"], "model/gpt5")]
)
def test_unknown_group_options_are_hydras_errors(overrides, message):
    with pytest.raises(Exception, match=message):
        compose_job(*FAST, *overrides)


def test_full_dev_split_matches_the_models_recorded_accuracy(tmp_path):
    # ../shared/models/minilm-l6-sst2/README.md: fp32 dev accuracy 0.8991 (784/872), max_length 64, batch 64.
    out = measure(tmp_path, *LOCAL, "batch=64", "measure.idle_window_s=0.5", "measure.repeats=2")
    m, t = out.metrics, out.tags
    assert m["num_samples"] == 872 and m["accuracy"] == pytest.approx(784 / 872)
    # CPU: energy per sample from RAPL where readable, else CodeCarbon's model over each window, said so.
    assert t["ela.method.energy"].startswith(("rapl(", "codecarbon-"))
    assert t["ela.energy_scope"] in ("cpu-packages", "cpu+ram")
    if t["ela.energy_scope"] == "cpu+ram":
        assert "modelled" in t["ela.method.energy_note"]
    assert m["energy_j_per_sample"] > 0 and m["idle_power_w"] > 0
    assert not [k for k in m if k.startswith("gpu_")]  # no GPU figures invented
    assert m["cost_ms_per_sample"] > 0 and m["batch_latency_ms_p50"] <= m["batch_latency_ms_p90"]
    assert t["ela.verdict"] in ("ok", "noisy", "unreliable")
    assert {"predictions.csv", "batch_latency_ms.csv", "energy_windows.csv", "codecarbon.json"} <= set(out.files)


def test_a_limit_above_the_split_is_a_warning(tmp_path):
    out = measure(tmp_path, *FAST, "dataset.limit=100000", "codecarbon.enabled=false")
    assert out.metrics["num_samples"] == 872 and out.tags["ela.dataset_rows"] == "872"
    assert "dataset.limit=100000 exceeds the 872 rows" in out.tags["ela.warning"]


def test_no_idle_baseline_gives_gross_energy_only(tmp_path):
    # measure.idle_window_s=0: no idle reading, so no dynamic (above-idle) figure is made up; the line says so.
    from ela.tracking.report import summary_line

    out = measure(tmp_path, *FAST, "measure.idle_window_s=0", "codecarbon.enabled=false")
    m = out.metrics
    assert m["energy_j_per_sample"] > 0 and "idle_power_w" not in m and "dynamic_energy_j_per_sample" not in m
    assert "dynamic n/a, no idle baseline" in summary_line("x", "FINISHED", m, out.tags, "0" * 32)


def test_a_long_job_says_how_long_after_its_warm_up(tmp_path, monkeypatch, caplog):
    # The threshold (10 min) lowered to 0 s: every job is "long"; the estimate is the warm-up pass x passes left.
    import ela.job.phases

    monkeypatch.setattr(ela.job.phases, "LONG_JOB_S", 0.0)
    with caplog.at_level("WARNING", logger="ela.job.phases"):
        measure(tmp_path, *FAST, "codecarbon.enabled=false")
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "ela.job.phases"]
    assert "a pass over its 24 samples took" in msg and "1 energy window(s) need about" in msg
    assert "dataset.limit=" in msg
