"""The measured loops on an injected clock: stalls in the synchronised passes move percentiles by one
sample and never the headline cost, and a stop request ends a loop between units of work."""

import pytest
import torch

from ela import interrupt
from ela.measure.loops import energy_window, latency_passes
from ela.measure.meters import FakeCounter, WindowMeter
from ela.measure.metrics import latency_metrics, window_metrics
from ela.measure.quality import verdict
from ela.runtime.data import Batches


class FakeClock:
    """Time advances only when the fake model runs."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def batches(n: int, size: int = 8) -> Batches:
    inputs = [{"input_ids": torch.zeros(size, 4, dtype=torch.long)} for _ in range(n)]
    return Batches(inputs, token_lengths=[4] * (n * size), indices=list(range(n * size)))


def model(clock: FakeClock, stall_calls: set[int], batch_s: float = 0.001, stall_s: float = 0.05):
    """A forward that takes batch_s of fake time, and stall_s on the calls numbered in stall_calls."""
    calls = [0]

    def forward(inputs):
        calls[0] += 1
        clock.t += stall_s if calls[0] in stall_calls else batch_s
        return torch.zeros(len(inputs["input_ids"]), 2)

    return forward


def test_stalls_in_the_synced_passes_do_not_move_the_headline():
    clock, data = FakeClock(), batches(50)
    # Stalls in the first pass only, as one hiccup of the host would do: 3 batches of 50x.
    forward = model(clock, stall_calls={5, 17, 33})
    lat = latency_passes(forward, data, sync=lambda: None, min_s=0.2, clock=clock)
    assert lat.passes == 2 and lat.logits.shape == (400, 2)  # 0.197 s, then 0.05 s more: >= 0.2 s
    windows = [energy_window(forward, data, lambda: None, None, 0.2, clock=clock) for _ in range(3)]
    m, warnings = latency_metrics(lat.batch_ms, data.num_samples, lat.duration_s)
    w, _ = window_metrics(windows, idle_power_w=None)
    assert m["stalled_batches"] == 3 and "stalled" in warnings[0]
    assert m["batch_latency_ms_p50"] == pytest.approx(1.0)  # the request latency most see
    assert w["cost_ms_per_sample"] == pytest.approx(1.0 / 8)  # 1 ms per batch of 8: the headline is clean
    # The old headline, the mean of one synchronised pass, would have said 1.9x:
    first_pass_ms_per_sample = sum(lat.batch_ms[0]) / data.num_samples
    assert first_pass_ms_per_sample / w["cost_ms_per_sample"] == pytest.approx(1 + 3 * 49 / 50, rel=1e-6)
    level, reasons = verdict({**m, **w, "latency_cost_ratio": m["synced_ms_per_sample"] / w["cost_ms_per_sample"]})
    assert level in ("noisy", "unreliable") and any("stalled" in r for r in reasons)


def test_one_pass_is_enough_when_it_covers_the_window():
    clock, data = FakeClock(), batches(10)
    lat = latency_passes(model(clock, set(), batch_s=0.1), data, lambda: None, min_s=0.5, clock=clock)
    assert lat.passes == 1 and lat.duration_s == pytest.approx(1.0)


def test_energy_window_on_a_fake_counter_is_power_times_time():
    clock, data = FakeClock(), batches(10)
    meter = WindowMeter(FakeCounter(100.0, clock=clock), clock=clock)
    w = energy_window(model(clock, set()), data, lambda: None, meter, 0.05, clock=clock)
    assert w.passes == 5 and w.samples == 400
    assert w.window.energy_j == pytest.approx(100.0 * 0.05) and w.duration_s == pytest.approx(0.05)


def test_a_stop_request_ends_the_loop_between_batches(monkeypatch):
    clock, data = FakeClock(), batches(10)
    forward = model(clock, set())
    calls = []

    def stopping(inputs):
        calls.append(1)
        if len(calls) == 3:
            monkeypatch.setattr(interrupt, "_received", 15)  # as the SIGTERM handler would record it
        return forward(inputs)

    with pytest.raises(interrupt.Interrupted, match="SIGTERM"):
        latency_passes(stopping, data, lambda: None, min_s=10, clock=clock)
    assert len(calls) == 3  # stopped right after the batch in flight, not at the end of the pass
