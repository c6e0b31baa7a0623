"""The one module that talks to NVML: the GPU's identity and state, its energy counter, the host's GPUs.

NVML calls cost ~4 ms each on the lent H200, so nothing here is ever called inside a timed batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ela import ElaError

if TYPE_CHECKING:  # torch is imported where CUDA is asked about: the sampler process reads NVML only
    import torch


def _nvml():
    import pynvml

    pynvml.nvmlInit()  # idempotent; cheap after the first call
    return pynvml


@dataclass(frozen=True)
class GpuInfo:
    """The GPU a job runs on, as NVML names it (mapped from the CUDA device by UUID)."""

    name: str
    uuid: str
    nvml_index: int
    driver: str
    cuda_driver: str
    power_limit_w: float
    handle: object

    def tags(self) -> dict[str, str]:
        """MLflow tags naming the card."""
        nvml = _nvml()
        try:
            persistence = "on" if nvml.nvmlDeviceGetPersistenceMode(self.handle) else "off"
        except nvml.NVMLError:
            persistence = "unknown"
        return {
            "gpu.name": self.name,
            "gpu.uuid": self.uuid,
            "gpu.nvml_index": str(self.nvml_index),
            "gpu.driver": self.driver,
            "gpu.cuda_driver": self.cuda_driver,
            "gpu.power_limit_w": f"{self.power_limit_w:.0f}",
            "gpu.persistence_mode": persistence,
        }


def cuda_uuid(index: int) -> str:
    """NVML-style UUID ("GPU-...") of a CUDA device."""
    import torch

    uuid = str(torch.cuda.get_device_properties(index).uuid)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def gpu_info(device: torch.device) -> GpuInfo:
    """Find the NVML handle of the CUDA device by UUID (robust to CUDA_VISIBLE_DEVICES ordering)."""
    import torch

    nvml = _nvml()
    uuid = cuda_uuid(device.index if device.index is not None else torch.cuda.current_device())
    handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
    return GpuInfo(
        name=nvml.nvmlDeviceGetName(handle),
        uuid=uuid,
        nvml_index=nvml.nvmlDeviceGetIndex(handle),
        driver=nvml.nvmlSystemGetDriverVersion(),
        cuda_driver=str(nvml.nvmlSystemGetCudaDriverVersion_v2()),
        power_limit_w=nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
        handle=handle,
    )


def card_state(gpu: GpuInfo) -> dict[str, float]:
    """Clocks, temperature and power limit right now (read between windows, never inside one)."""
    nvml = _nvml()
    return {
        "sm_clock_mhz": float(nvml.nvmlDeviceGetClockInfo(gpu.handle, nvml.NVML_CLOCK_SM)),
        "mem_clock_mhz": float(nvml.nvmlDeviceGetClockInfo(gpu.handle, nvml.NVML_CLOCK_MEM)),
        "temp_c": float(nvml.nvmlDeviceGetTemperature(gpu.handle, nvml.NVML_TEMPERATURE_GPU)),
        "power_limit_w": nvml.nvmlDeviceGetEnforcedPowerLimit(gpu.handle) / 1000.0,
    }


class NvmlCounter:
    """NVML's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ, Volta+) of one GPU."""

    method = "nvml-counter"

    def __init__(self, handle: object) -> None:
        self._nvml, self._handle = _nvml(), handle

    def __reduce__(self):
        # NVML handles don't cross processes; the UUID does (the trace samples in a process of its own).
        return _counter_of, (self._nvml.nvmlDeviceGetUUID(self._handle),)

    def read_j(self) -> float:
        """Cumulative energy in joules."""
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0

    def read_power_w(self) -> float:
        """NVML's current power reading (for settling and traces, never for window energy)."""
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0


def _counter_of(uuid: str) -> NvmlCounter:
    """The energy counter of the GPU with this UUID, in this process."""
    return NvmlCounter(_nvml().nvmlDeviceGetHandleByUUID(uuid))


def host_uuids() -> list[str]:
    """UUIDs of every GPU on this host, in NVML (= PCI bus) order, without starting CUDA."""
    try:
        nvml = _nvml()
        return [nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception as err:  # noqa: BLE001 - no driver, no library: the same answer for the user
        raise ElaError(f"gpus= needs CUDA GPUs, and NVML finds none here ({type(err).__name__}: {err})") from err
