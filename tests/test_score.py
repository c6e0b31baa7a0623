"""score(job, raw): what a job measured, made by hand, into metrics, a verdict, tags and artifacts."""

import pandas as pd
import pytest
import torch
from conftest import FAST, compose_job

from ela.job.results import Loaded, Raw
from ela.job.score import score
from ela.measure.carbon import CarbonRecord
from ela.measure.energy import MeterChoice
from ela.measure.host import HostLoad
from ela.measure.loops import EnergyWindow, Idle, LatencyPasses
from ela.measure.meters import Window
from ela.runtime.data import Batches, EvalSplit


def raw(stall: bool = False, carbon=None) -> Raw:
    inputs = [{"input_ids": torch.zeros(2, 4, dtype=torch.long)} for _ in range(2)]
    batches = Batches(inputs, token_lengths=[4, 3, 4, 2], indices=[0, 1, 2, 3])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    passes = [[10.0, 10.0], [10.0, 40.0 if stall else 10.0], [10.0, 10.0]]
    window = EnergyWindow(Window(duration_s=5.0, energy_j=500.0, method="fake-counter"), 5.0, passes=250, samples=1000)
    loaded = Loaded(
        split=EvalSplit(["a", "b", "c", "d"], [0, 1, 1, 0], "test", rows=100),
        batches=batches,
        targets=torch.tensor([0, 1, 1, 0]),
        label_map={"0": 0, "1": 1},
        model_source="/m",
        newly_initialized=[],
        attn_implementation="sdpa",
    )
    return Raw(
        loaded=loaded,
        meter=MeterChoice(None, "fake", "fake-counter"),
        device_type="cpu",
        reference=torch.tensor([0, 1, 1, 1]),
        eager_ref=None,
        setup_s=0.0,
        idle=Idle(power_w=60.0, settle_s=0.0),
        tick_s=None,
        lat=LatencyPasses(batch_ms=passes, logits=logits, duration_s=0.09),
        windows=[window, window],
        state_start={},
        state_end={},
        host=HostLoad(other_share=0.02, steal_share=0.0, own_cpus=1.0),
        other_ela_jobs=0,
        tf32="matmul=False,cudnn=False",
        peak_mb=100.0,
        trace=pd.DataFrame(
            {"t_s": [0.0, 0.1], "phase": ["load", "load"], "energy_j": [0.0, 10.0], "power_w": [None, None]}
        ),
        carbon=carbon,
    )


def test_metrics_are_the_arithmetic_of_what_was_measured():
    out = score(compose_job(*FAST, "precision=bf16"), raw())
    m = out.metrics
    assert m["accuracy"] == 0.75 and m["agreement_with_fp32"] == 0.5  # one of four wrong; two differ from fp32
    assert m["cost_ms_per_sample"] == pytest.approx(5.0) and m["energy_j_per_sample"] == pytest.approx(0.5)
    assert m["dynamic_energy_j_per_sample"] == pytest.approx((500 - 60 * 5) / 1000)
    assert m["batch_latency_ms_p50"] == 10.0 and m["stalled_batches"] == 0
    assert m["synced_ms_per_sample"] == pytest.approx(60 / 12)  # 60 ms over 3 passes of 4 samples
    assert m["latency_cost_ratio"] == pytest.approx(1.0)
    assert m["padding_fraction"] == pytest.approx(1 - 13 / 16) and m["mean_token_length"] == 3.25
    assert out.tags["ela.verdict"] == "ok" and out.tags["ela.verdict_reasons"] == "none"
    assert out.tags["ela.energy_scope"] == "fake" and "ela.warning" not in out.tags
    assert set(out.files) == {"predictions.csv", "batch_latency_ms.csv", "energy_windows.csv", "power_trace.csv",
                              "power_trace.png"}  # fmt: skip


def test_a_stall_and_a_missing_codecarbon_record_are_said():
    out = score(compose_job(*FAST), raw(stall=True, carbon="CodeCarbon returned no emissions data"))
    assert out.metrics["stalled_batches"] == 1 and out.tags["ela.verdict"] == "unreliable"  # 1 of 6 batches
    assert "stalled" in out.tags["ela.warning"] and "stalled" in out.tags["ela.verdict_reasons"]
    assert out.tags["ela.invalid.codecarbon"] == "CodeCarbon returned no emissions data"
    assert "emissions_g" not in out.metrics


def test_codecarbon_figures_and_their_methods():
    record = CarbonRecord(
        1e-4, 4e-5, 5e-5, 1e-5, 0.05, 30.0, {"cpu": "codecarbon-model(cpu_load)", "ram": "r", "gpu": "g"}, {}
    )
    out = score(compose_job(*FAST), raw(carbon=record))
    assert out.metrics["emissions_g"] == 0.05 and out.metrics["codecarbon_energy_kwh"] == 1e-4
    assert out.tags["ela.method.codecarbon_cpu"] == "codecarbon-model(cpu_load)"
    assert out.tags["ela.method.emissions"] == "codecarbon-offline(USA), whole job"
