"""The measured loops: warm-up, a synchronised latency pass, and energy windows over whole passes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ela.data import Batches
from ela.meters import Window, WindowMeter, settle

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def make_forward(model: torch.nn.Module, autocast: Callable[[], contextlib.AbstractContextManager]) -> Forward:
    """model(**inputs).logits under inference mode and the precision's autocast."""

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode(), autocast():
            return model(**inputs).logits

    return forward


def predict(forward: Forward, batches: Batches) -> torch.Tensor:
    """Untimed pass: float32 logits of every sample, on the CPU."""
    return torch.cat([forward(b).float().cpu() for b in batches.inputs])


def warmup(forward: Forward, batches: Batches, n: int, sync: Callable[[], None]) -> None:
    """Run n batches (cycling through the split) so lazy init and autotuning are not timed."""
    for i in range(n):
        forward(batches.inputs[i % len(batches.inputs)])
    sync()


@dataclass(frozen=True)
class LatencyPass:
    batch_ms: list[float]  # wall time of each batch, device synchronised before and after
    logits: torch.Tensor  # float32, CPU, one row per sample, in order


def latency_pass(forward: Forward, batches: Batches, sync: Callable[[], None], progress=None) -> LatencyPass:
    """One pass with the device synchronised around every batch; logits copied out after the clock stops."""
    batch_ms, logits = [], []
    for inputs in batches.inputs:
        sync()
        t0 = time.perf_counter()
        out = forward(inputs)
        sync()
        batch_ms.append((time.perf_counter() - t0) * 1000.0)
        logits.append(out.float().cpu())
        if progress is not None:
            progress.update(1)
    return LatencyPass(batch_ms=batch_ms, logits=torch.cat(logits))


@dataclass(frozen=True)
class EnergyWindow:
    window: Window | None  # None when no energy meter is available (CPU): time only
    duration_s: float
    passes: int
    samples: int


def energy_window(
    forward: Forward, batches: Batches, sync: Callable[[], None], meter: WindowMeter | None, min_window_s: float
) -> EnergyWindow:
    """Whole passes over the split until the window lasts >= min_window_s.

    Nothing is synchronised or read inside: the clock check between passes sees only launched work,
    and the GPU lags the CPU, so the synchronised window is at least as long as the check says.
    """
    if meter is not None:
        meter.begin_window("energy")
    sync()
    t0 = time.perf_counter()
    passes = 0
    while True:
        for inputs in batches.inputs:
            forward(inputs)
        passes += 1
        if time.perf_counter() - t0 >= min_window_s:
            break
    window = meter.end_window("energy") if meter is not None else None
    sync()
    duration = window.duration_s if window is not None else time.perf_counter() - t0
    return EnergyWindow(window=window, duration_s=duration, passes=passes, samples=passes * batches.num_samples)


@dataclass(frozen=True)
class Idle:
    power_w: float  # counter difference over the idle window
    settle_s: float  # how long power took to stop falling before that


def idle_power(meter: WindowMeter, max_settle_s: float, window_s: float) -> Idle:
    """Idle power with the model loaded: wait until power stops falling, then a window over a sleep."""
    meter.sync()  # idle means nothing is queued on the device
    read_power = getattr(meter.counter, "read_power_w", None)
    waited = settle(read_power, max_settle_s) if read_power and max_settle_s > 0 else 0.0
    meter.begin_window("idle")
    time.sleep(window_s)
    return Idle(power_w=meter.end_window("idle").avg_power_w, settle_s=waited)
