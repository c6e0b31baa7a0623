"""The steps every task's job shares, each named and timed: precision, idle power, energy windows, state.

A stop request is honoured between steps; the progress line and the power trace get each step's name,
and each step's wall time adds to its schema phase (`phase_*_s`).
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from ela import interrupt
from ela.config import JobConfig
from ela.job.results import Loaded, Raw
from ela.measure import host
from ela.measure.energy import MeterChoice
from ela.measure.gpu_pool import other_holders
from ela.measure.loops import EnergyWindow, Forward, energy_window, idle_power
from ela.measure.meters import tick_period_s
from ela.measure.nvml import card_state
from ela.measure.trace import PowerTrace
from ela.runtime import fp8, kept
from ela.runtime.device import DTYPE, autocast, set_tf32, synchronizer, tf32_state
from ela.runtime.models import apply_precision

T = TypeVar("T")
log = logging.getLogger(__name__)
LONG_JOB_S = 600.0  # a job whose timed passes and windows will take longer than this says so after its warm-up


def phase_of(step: str) -> str:
    """The schema phase a named step belongs to ("window 2/3" and "prefill 1/3" are energy windows)."""
    for prefix, phase in _PHASE_OF.items():
        if step.startswith(prefix):
            return phase
    return "windows"


_PHASE_OF = {"load": "load", "fp32 reference": "references", "eager reference": "references",
             "engine setup": "engine_setup", "idle power": "idle", "warm-up": "warmup",
             "latency passes": "timed_passes", "timed generations": "timed_passes", "score": "score"}  # fmt: skip


class Phases:
    """What every task's measured order shares: named steps, precision, idle power, windows, the card's state."""

    def __init__(
        self,
        job: JobConfig,
        device: torch.device,
        choice: MeterChoice,
        trace: PowerTrace | None,
        progress,
        after_load: Callable[[], None] | None = None,
    ):
        self.job, self.device, self.choice, self.trace, self.progress = job, device, choice, trace, progress
        self.after_load = after_load  # called once as the load phase ends, inside it (a sampler's start awaited)
        self.sync, self.meter, self.gpu = synchronizer(device), choice.meter, choice.gpu
        self.tick = progress.tick if progress is not None else None
        self.idle = self.tick_s = None
        self.state_start: dict[str, float] = {}
        self.others, self.load = 0, None
        self.phase_s: dict[str, float] = {}
        self.linears = ""  # precision=fp8: which linear layers multiply in float8 (tag ela.fp8_linears)
        self.gelu_epilogue = ""  # model.fuse_gelu: which intermediate layers were fused (tag ela.gelu_epilogue)
        self.references: dict[str, str] = {}  # reference kind -> run here or kept (tag ela.reference_reuse)
        # What the job found allocated (engines kept by earlier jobs): its peak memory is counted above it.
        self.mem_base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        self._open: tuple[str, float] | None = None

    def step(self, name: str) -> None:
        """A stop request ends the job here, between phases; the progress line and the trace get the name."""
        interrupt.check()
        if self.after_load is not None and self._open is not None and self._open[0] == "load":
            wait, self.after_load = self.after_load, None
            wait()  # before the clock is read: what it waits for overlapped the load, and counts as load
            interrupt.check()  # a stop request that came during the wait ends the job here, not in the next phase
        now = time.perf_counter()
        if self._open is not None:  # the phase that ends here
            self.phase_s[self._open[0]] = self.phase_s.get(self._open[0], 0.0) + now - self._open[1]
        self._open = (phase_of(name), now)
        if self.progress is not None:
            self.progress.phase(name)
        if self.trace is not None:
            self.trace.mark(name)

    def so_far(self) -> dict[str, float]:
        """Wall seconds per phase up to now, the open phase included (a stopped job's `phase_*_s`)."""
        out = dict(self.phase_s)
        if self._open is not None:
            out[self._open[0]] = out.get(self._open[0], 0.0) + time.perf_counter() - self._open[1]
        return out

    def reference(self, kind: str, batches, compute: Callable[[], T]) -> T:
        """The untimed `kind` reference pass (`fp32` or `eager`) as its own step: run here, or an earlier job's."""
        self.step(f"{kind} reference (untimed)")
        value, self.references[kind] = kept.reference(self.job, kind, self.device, batches, compute)
        return value

    def amp(self):
        """The precision's autocast context (a no-op without autocast)."""
        return autocast(self.job.precision, self.device)

    def apply_precision(self, model: torch.nn.Module) -> torch.nn.Module:
        """Cast the weights (pure half precision), convert float8 linear layers, set TF32: after the fp32 reference."""
        model = apply_precision(model, DTYPE[self.job.precision.weights_dtype], self.device)
        if self.job.precision.linear is not None:  # after the cast: float8 weights are quantised from bf16's
            self.linears = fp8.convert(model)
        set_tf32(self.job.precision.tf32)
        return model

    def measure_idle(self) -> None:
        """Idle power with the model loaded (unless measure.idle_window_s=0), and how often the counter moves."""
        if self.meter is None:
            return
        self.step("idle power")
        me = self.job.measure
        if me.idle_window_s > 0:  # 0: no baseline, so no dynamic (above-idle) figures, rather than a guessed one
            self.idle = idle_power(self.meter, me.idle_max_settle_s, me.idle_window_s)
        if self.meter.counter is not None:
            self.tick_s = tick_period_s(self.meter.counter, max_s=0.6)

    def expect(self, pass_s: float, samples: int) -> None:
        """After the warm-up: if the timed passes and energy windows will take long, say so once, with the fix."""
        me = self.job.measure
        passes = max(1, math.ceil(me.min_window_s / max(pass_s, 1e-9)))  # whole passes per timing or window
        left = pass_s * passes * (1 + me.repeats)
        if left > LONG_JOB_S:
            log.warning(
                "%s: a pass over its %d samples took %.0f s in the warm-up, so its timed passes and %d energy "
                "window(s) need about %.0f min more; dataset.limit= (fewer samples) or a larger batch shortens it",
                self.job.run_name, samples, pass_s, me.repeats, left / 60,
            )  # fmt: skip

    def windows(self, runs: dict[str, Forward], batches) -> dict[str, list[EnergyWindow]]:
        """measure.repeats energy windows of each named workload, the card's state and host load around them."""
        me, out = self.job.measure, {name: [] for name in runs}
        self.state_start, self.others = card_state(self.gpu) if self.gpu else {}, other_holders()
        with host.Watch() as watch:
            for i in range(me.repeats):  # workloads alternate, so drift during the job moves them alike
                for name, forward in runs.items():
                    self.step(f"{name} {i + 1}/{me.repeats}")
                    out[name].append(
                        energy_window(forward, batches, self.sync, self.meter, me.min_window_s, on_pass=self.tick)
                    )
        self.load = watch.load
        return out

    def raw(self, loaded: Loaded, **measured) -> Raw:
        """Everything measured, with what every task records about the device and host."""
        self.step("score")
        device = self.device
        if device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(device) - self.mem_base) / 2**20
        else:
            peak = _peak_rss_mb()
        return Raw(
            loaded=loaded,
            meter=self.choice,
            device_type=device.type,
            idle=self.idle,
            tick_s=self.tick_s,
            state_start=self.state_start,
            state_end=card_state(self.gpu) if self.gpu else {},
            host=self.load,
            other_ela_jobs=self.others,
            tf32=tf32_state(),
            peak_mb=peak,
            linears=self.linears,
            gelu_epilogue=self.gelu_epilogue,
            reference_reuse=", ".join(f"{k}: {v}" for k, v in self.references.items()) or "none",
            phase_s={k: v for k, v in self.phase_s.items() if k != "score"},
            **measured,
        )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
