"""Whole-job energy and emissions from CodeCarbon's offline tracker, labelled by how each was obtained."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from ela.config import CodeCarbonConfig
from ela.meters import MeasurementError


@dataclass(frozen=True)
class CarbonRecord:
    """CodeCarbon's totals for one job (kWh, g CO2e) and the method behind each energy figure."""

    energy_kwh: float
    cpu_energy_kwh: float
    ram_energy_kwh: float
    gpu_energy_kwh: float
    emissions_g: float
    duration_s: float
    methods: dict[str, str]  # "cpu" / "ram" / "gpu" -> e.g. "codecarbon-model(cpu_load)"
    raw: dict[str, Any]  # CodeCarbon's EmissionsData, as it gave it


class CarbonTracker:
    """One fresh OfflineEmissionsTracker per job, every argument explicit (never the online tracker)."""

    def __init__(self, cfg: CodeCarbonConfig, gpu_ids: list[int], output_dir: str, project: str) -> None:
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._expects_gpu = bool(gpu_ids)
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=cfg.country_iso_code,
            region=cfg.region,
            # NVML indices, not UUIDs: CodeCarbon 3.3.2 mangles "GPU-..." with lstrip("MIG-") and then
            # silently tracks no GPU (0 J), seen on an H200.
            gpu_ids=gpu_ids or None,
            tracking_mode="machine",
            measure_power_secs=cfg.measure_power_secs,
            save_to_file=cfg.save_to_file,
            output_dir=output_dir,
            save_to_api=False,
            save_to_logger=False,
            log_level="error",
            project_name=project,
            allow_multiple_runs=True,  # parallel jobs on one host each run their own tracker
        )
        # CodeCarbon swallows errors in its constructor: check it really built its hardware list.
        if not hasattr(self._tracker, "_hardware"):
            raise MeasurementError("CodeCarbon's OfflineEmissionsTracker failed to initialise")

    def start(self) -> None:
        self._tracker.start()
        self._running = True

    def close(self) -> None:
        """Stop the sampler thread if the job ended before `stop` (a crash); idempotent."""
        if getattr(self, "_running", False):
            self._running = False
            self._tracker.stop()

    def stop(self) -> CarbonRecord:
        """Stop once and return the record; a None result (CodeCarbon swallowed an error) raises."""
        self._running = False
        self._tracker.stop()
        data = getattr(self._tracker, "final_emissions_data", None)
        if data is None:
            raise MeasurementError("CodeCarbon returned no emissions data for this job")
        if self._expects_gpu and not data.gpu_energy:
            raise MeasurementError(
                "CodeCarbon reported 0 J for the GPU this job used, so its totals and emissions would leave "
                "the GPU out; not logging them"
            )
        return CarbonRecord(
            energy_kwh=data.energy_consumed,
            cpu_energy_kwh=data.cpu_energy,
            ram_energy_kwh=data.ram_energy,
            gpu_energy_kwh=data.gpu_energy,
            emissions_g=data.emissions * 1000.0,  # CodeCarbon reports kg CO2e
            duration_s=data.duration,
            methods=self._methods(data.gpu_count),
            raw=dataclasses.asdict(data),
        )

    def _methods(self, gpu_count: int) -> dict[str, str]:
        cpu_mode = "unknown"
        for hw in getattr(self._tracker, "_hardware", []):
            if type(hw).__name__ == "CPU":
                cpu_mode = getattr(hw, "_mode", "unknown")
        return {
            "cpu": "codecarbon-rapl" if cpu_mode == "intel_rapl" else f"codecarbon-model({cpu_mode})",
            "ram": "codecarbon-model(ram)",
            "gpu": "codecarbon-nvml" if gpu_count else "none",
        }
