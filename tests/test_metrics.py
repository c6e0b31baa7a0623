"""Metric arithmetic on hand-made windows and passes, checked against hand-computed numbers."""

import pytest
import torch

from ela.measure.loops import EnergyWindow
from ela.measure.meters import Window
from ela.measure.metrics import accuracy_metrics, latency_metrics, window_metrics


def _w(duration_s, energy_j, samples, passes=1):
    return EnergyWindow(Window(duration_s, energy_j, "replay-counter"), duration_s, passes, samples)


def test_window_metrics_mean_sd_cv_and_dynamic_energy():
    windows = [_w(5.0, 1000.0, 1000), _w(5.0, 1100.0, 1000), _w(5.0, 900.0, 1000)]
    m, warnings = window_metrics(windows, idle_power_w=100.0)
    assert warnings == []
    assert m["energy_windows"] == 3 and m["energy_window_s"] == 5.0
    assert m["energy_j_per_sample"] == pytest.approx(1.0)
    assert m["energy_j_per_sample_sd"] == pytest.approx(0.1)  # sample SD of 1.0, 1.1, 0.9
    assert m["energy_j_per_sample_cv"] == pytest.approx(0.1)
    assert m["window_energy_j"] == pytest.approx(1000.0) and m["avg_power_w"] == pytest.approx(200.0)
    assert m["dynamic_energy_j"] == pytest.approx(500.0)  # 1000 J - 100 W x 5 s
    assert m["dynamic_energy_j_per_sample"] == pytest.approx(0.5)
    assert m["throughput_samples_per_s"] == pytest.approx(200.0) and m["throughput_samples_per_s_cv"] == 0
    assert m["cost_ms_per_sample"] == pytest.approx(5.0) and m["cost_ms_per_sample_cv"] == 0  # 5 s / 1000 samples


def test_short_windows_are_flagged():
    _, warnings = window_metrics([_w(0.4, 40.0, 10), _w(2.0, 200.0, 50)], idle_power_w=50.0)
    assert len(warnings) == 1 and "window 0 lasted 0.40 s" in warnings[0]


def test_time_only_windows_have_no_energy_metrics():
    m, _ = window_metrics([EnergyWindow(None, 2.0, 4, 400)], idle_power_w=None)
    assert m["throughput_samples_per_s"] == 200.0 and "energy_j_per_sample" not in m
    assert "energy_window_s_cv" not in m  # one window: no spread to report


def test_latency_metrics():
    m, warnings = latency_metrics([[10.0, 20.0, 30.0, 40.0]], num_samples=32, duration_s=0.1)
    assert m["synced_ms_per_sample"] == pytest.approx(100 / 32)
    assert m["batch_latency_ms_mean"] == 25.0 and m["batch_latency_ms_p50"] == 25.0
    assert m["latency_passes"] == 1 and m["stalled_batches"] == 0 and warnings == []


def test_stalls_are_counted_against_each_batchs_best_time_and_warned_above_one_percent():
    # 3 passes over 50 batches; batch lengths differ (a long batch is slow, not stalled); 2 stalls of 10x.
    base = [1.0 + (i % 5) for i in range(50)]  # 1..5 ms: up to 5x apart, none a stall
    passes = [list(base), list(base), list(base)]
    passes[1][7] *= 10
    passes[2][30] *= 10
    m, warnings = latency_metrics(passes, num_samples=400, duration_s=1.0)
    assert m["stalled_batches"] == 2 and m["stalled_batch_share"] == pytest.approx(2 / 150)
    assert len(warnings) == 1 and "2 of 150 timed batches (1.3%) stalled" in warnings[0]
    assert m["batch_latency_ms_p50"] == pytest.approx(3.0)  # the median ignores the two stalls
    one_stall = [list(base)] * 2 + [[*base[:10], base[10] * 10, *base[11:]]]
    m, warnings = latency_metrics(one_stall, num_samples=400, duration_s=1.0)
    assert m["stalled_batches"] == 1 and warnings == []  # 0.7%: counted, under the warning threshold


def test_accuracy_and_agreement():
    logits = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = accuracy_metrics(logits, torch.tensor([0, 1, 1, 1]), reference=torch.tensor([0, 1, 0, 0]))
    assert m["accuracy"] == 0.75 and m["agreement_with_fp32"] == 0.75 and m["num_samples"] == 4
