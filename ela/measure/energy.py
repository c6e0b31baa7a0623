"""Which energy meter a job uses, and how its figures are labelled: never a silent substitute."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ela import ElaError
from ela.measure.carbon import CodeCarbonMeter
from ela.measure.meters import FakeCounter, Meter, RaplCounter, WindowMeter, rapl_zones
from ela.measure.nvml import GpuInfo, NvmlCounter, gpu_info
from ela.runtime.device import synchronizer

if TYPE_CHECKING:
    from ela.config import JobConfig

KINDS = ("auto", "nvml", "rapl", "codecarbon", "fake", "none")  # measure.energy_meter
SCOPE = {"nvml": "gpu", "rapl": "cpu-packages", "codecarbon": "cpu+ram", "fake": "fake"}  # tag ela.energy_scope
RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class MeterChoice:
    """The energy meter a job uses, how its figures are obtained, and why it is the one."""

    meter: Meter | None
    kind: str  # nvml | rapl | codecarbon | fake | none
    method: str  # tag: nvml-counter, rapl(package-0), codecarbon-model(cpu_load)+codecarbon-model(ram), ...
    note: str = ""  # why auto chose it, where that is worth saying (e.g. no readable RAPL)
    gpu: GpuInfo | None = None


def make_meter(job: JobConfig, device: torch.device) -> MeterChoice:
    """The energy meter this job asked for; never a silent substitute."""
    kind, note = job.measure.energy_meter, ""
    if kind == "auto":
        if device.type == "cuda":
            kind = "nvml"
        else:
            zones = rapl_zones(RAPL_ROOT)
            kind = "rapl" if not isinstance(zones, str) else ("codecarbon" if job.codecarbon.enabled else "none")
            note = f"auto: {zones}" if isinstance(zones, str) else ""
    sync = synchronizer(device)
    if kind == "fake":
        return MeterChoice(WindowMeter(FakeCounter(job.measure.fake_power_w), sync), kind, FakeCounter.method)
    if kind == "none":
        reason = "measure.energy_meter=none" if job.measure.energy_meter == "none" else f"{note}; CodeCarbon disabled"
        return MeterChoice(None, kind, "none", reason)
    if kind == "rapl":
        counter = RaplCounter(RAPL_ROOT)  # raises MeasurementError saying why it can't be read
        return MeterChoice(WindowMeter(counter, sync), kind, counter.method, note)
    if kind == "codecarbon":
        meter = CodeCarbonMeter(job.codecarbon, sync)
        return MeterChoice(meter, kind, meter.method, note + ("; " if note else "") + "CPU and RAM energy modelled")
    try:
        info = gpu_info(device)
        counter = NvmlCounter(info.handle)
        counter.read_j()
    except Exception as err:  # no NVML, or a GPU without the energy counter (pre-Volta)
        raise ElaError(
            f"cannot read NVML's energy counter ({type(err).__name__}: {err}); install nvidia-ml-py on a "
            "Volta+ GPU, or pass measure.energy_meter=none to run without GPU energy"
        ) from err
    return MeterChoice(WindowMeter(counter, sync), kind, counter.method, gpu=info)
