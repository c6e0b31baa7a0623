"""The measured loops: warm-up, synchronised latency passes, and energy windows over whole passes.

Every loop takes its clock as an argument (tests inject one) and checks for a stop request between
units of work (`ela.interrupt`), never inside a timed batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ela import interrupt
from ela.measure.meters import Meter, Window, settle
from ela.runtime.data import Batches
from ela.runtime.device import Autocast

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
Clock = Callable[[], float]


def make_forward(model: torch.nn.Module, autocast: Autocast) -> Forward:
    """model(**inputs).logits under inference mode and the precision's autocast."""

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode(), autocast():
            return model(**inputs).logits

    return forward


def predict(forward: Forward, batches: Batches) -> torch.Tensor:
    """Untimed pass: float32 logits of every sample, on the CPU."""
    out = []
    for b in batches.inputs:
        out.append(forward(b).float().cpu())
        interrupt.check()
    return torch.cat(out)


def warmup(forward: Forward, batches: Batches, n: int, sync: Callable[[], None]) -> float:
    """One whole pass (every batch shape once), then n more batches, so nothing runs for the first time timed.

    Eager batches are padded to their own longest sequence, so a pass holds dozens of shapes; a shape's
    first call pays for kernel selection and allocations, which would otherwise land in the first timed pass.
    Returns the whole pass's wall time (first calls included: an upper bound on a timed pass).
    """
    t0 = time.perf_counter()
    for inputs in batches.inputs:
        forward(inputs)
        interrupt.check()
    sync()
    pass_s = time.perf_counter() - t0
    for i in range(n):
        forward(batches.inputs[i % len(batches.inputs)])
    sync()
    return pass_s


@dataclass(frozen=True)
class LatencyPasses:
    """Synchronised passes over the split, repeated until they covered a minimum time."""

    batch_ms: list[list[float]]  # [pass][batch]: wall time of each batch, device synchronised around it
    logits: torch.Tensor  # float32, CPU, one row per sample, in batch order, from the first pass
    duration_s: float  # wall time of all passes together

    @property
    def passes(self) -> int:
        """How many whole passes were timed."""
        return len(self.batch_ms)


def latency_passes(
    forward: Forward,
    batches: Batches,
    sync: Callable[[], None],
    min_s: float,
    clock: Clock = time.perf_counter,
    on_pass: Callable[[float], None] | None = None,
) -> LatencyPasses:
    """Whole passes with the device synchronised around every batch, until they cover >= min_s.

    One pass of a second or two is what a single stall can double; passes over the same window
    length as the energy windows give percentiles that a stall moves by one sample, not by the mean.
    Logits of the first pass are copied out after its clock stops (predictions and accuracy).
    """
    runs: list[list[float]] = []
    logits: list[torch.Tensor] = []
    t_start = clock()
    while not runs or clock() - t_start < min_s:
        times = []
        for inputs in batches.inputs:
            sync()
            t0 = clock()
            out = forward(inputs)
            sync()
            times.append((clock() - t0) * 1000.0)
            if not runs:
                logits.append(out.float().cpu())
            interrupt.check()
        runs.append(times)
        if on_pass is not None:
            on_pass((clock() - t_start) / min_s)
    return LatencyPasses(batch_ms=runs, logits=torch.cat(logits), duration_s=clock() - t_start)


@dataclass(frozen=True)
class GenerationPasses:
    """Timed generations over the split (device synchronised at every step), repeated to a minimum time."""

    batch_ms: list[list[float]]  # [pass][batch]: whole generation of each batch (what its requests waited)
    ttft_ms: list[list[float]]  # [pass][batch]: prompt in to first output token (prefill + first step)
    step_ms: list[list[list[float]]]  # [pass][batch][step]: time from the first token to each later one
    tokens: list[torch.Tensor]  # the first pass's new token ids per batch, on the CPU
    choice: torch.Tensor | None  # first-step scores of the kept token ids (label words), one row per sample
    duration_s: float

    @property
    def passes(self) -> int:
        """How many whole passes were timed."""
        return len(self.batch_ms)


def generation_passes(
    generate: Callable,
    batches: Batches,
    sync: Callable[[], None],
    min_s: float,
    keep: list[int] | None = None,
    clock: Clock = time.perf_counter,
    on_pass: Callable[[float], None] | None = None,
    events: bool = False,
) -> GenerationPasses:
    """Whole passes of timed generations, until they cover >= min_s (as `latency_passes` for classifiers).

    generate(inputs, step_clock) runs one batch; the StepClock stamps each step (device synchronised, or
    with `events` a CUDA event per step), so TTFT and every token's time come from the same generation.
    """
    from ela.runtime.generation import StepClock

    total: list[list[float]] = []
    ttft: list[list[float]] = []
    steps: list[list[list[float]]] = []
    tokens: list[torch.Tensor] = []
    choice: list[torch.Tensor] = []
    t_start = clock()
    while not total or clock() - t_start < min_s:
        row_total, row_ttft, row_steps = [], [], []
        for inputs in batches.inputs:
            step_clock = StepClock(sync, clock, keep if not total else None, events)
            sync()
            t0 = step_clock.begin()
            out = generate(inputs, step_clock)
            sync()
            t_end = clock()
            stamps = step_clock.resolve()
            row_total.append((t_end - t0) * 1000.0)
            row_ttft.append((stamps[0] - t0) * 1000.0)
            row_steps.append([(s - stamps[0]) * 1000.0 for s in stamps])
            if not total:
                tokens.append(out.cpu())
                if step_clock.first is not None:
                    choice.append(step_clock.first.float().cpu())
            interrupt.check()
        total.append(row_total)
        ttft.append(row_ttft)
        steps.append(row_steps)
        if on_pass is not None:
            on_pass((clock() - t_start) / min_s)
    return GenerationPasses(
        batch_ms=total,
        ttft_ms=ttft,
        step_ms=steps,
        tokens=tokens,
        choice=torch.cat(choice) if choice else None,
        duration_s=clock() - t_start,
    )


@dataclass(frozen=True)
class EnergyWindow:
    """One window of whole passes with no synchronisation inside: throughput, and energy where metered."""

    window: Window | None  # None when no energy meter is available: time only
    duration_s: float
    passes: int
    samples: int


def energy_window(
    forward: Forward,
    batches: Batches,
    sync: Callable[[], None],
    meter: Meter | None,
    min_window_s: float,
    clock: Clock = time.perf_counter,
    on_pass: Callable[[float], None] | None = None,
) -> EnergyWindow:
    """Whole passes over the split until the window lasts >= min_window_s.

    Nothing is synchronised or read inside: the clock check between passes sees only launched work,
    and the GPU lags the CPU, so the synchronised window is at least as long as the check says.
    """
    if meter is not None:
        meter.begin_window("energy")
    sync()
    t0 = clock()
    passes = 0
    while True:
        for inputs in batches.inputs:
            forward(inputs)
        passes += 1
        if clock() - t0 >= min_window_s:
            break
        interrupt.check()
        if on_pass is not None:  # a flag check and a line redrawn between passes: no device work
            on_pass((clock() - t0) / min_window_s)
    window = meter.end_window("energy") if meter is not None else None
    sync()
    duration = window.duration_s if window is not None else clock() - t0
    return EnergyWindow(window=window, duration_s=duration, passes=passes, samples=passes * batches.num_samples)


@dataclass(frozen=True)
class Idle:
    """The device's power with the model loaded and nothing running."""

    power_w: float  # meter difference over the idle window
    settle_s: float  # how long power took to stop falling before that


def idle_power(meter: Meter, max_settle_s: float, window_s: float, sleep: Callable[[float], None] = time.sleep) -> Idle:
    """Idle power with the model loaded: wait until power stops falling, then a window over a sleep."""
    meter.sync()  # idle means nothing is queued on the device
    read_power = getattr(meter.counter, "read_power_w", None)
    waited = settle(read_power, max_settle_s) if read_power and max_settle_s > 0 else 0.0
    interrupt.check()
    meter.begin_window("idle")
    sleep(window_s)
    return Idle(power_w=meter.end_window("idle").avg_power_w, settle_s=waited)
