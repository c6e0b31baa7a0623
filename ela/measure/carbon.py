"""CodeCarbon: whole-job energy and emissions, CPU/RAM energy over exactly a window, and grid checks.

Everything goes through CodeCarbon's public API (`OfflineEmissionsTracker`, `start`/`stop`,
`start_task`/`stop_task`, `final_emissions_data`, `get_detected_hardware`, `DataSource`) except
one read, `_cpu_mode`: CodeCarbon names how it obtained the CPU figure (RAPL or a model) nowhere
public. The version range is pinned in pyproject.toml and tests/test_carbon.py checks that read.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ela import ElaError
from ela.measure import host
from ela.measure.meters import MeasurementError, Window, checked_window
from ela.measure.sidecar import Sidecar, SidecarError, prepare

if TYPE_CHECKING:  # config imports this module's choices: no import of config at run time
    from ela.config import CodeCarbonConfig

# What CodeCarbon's tracker process imports before it can sample (~0.35 s on the 2-core VM, pandas the most):
# `prepare()` has a process import it ahead of need.
WARM = ("ela.measure.carbon", "codecarbon", "pandas")

KWH_TO_J = 3.6e6


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


def _tracker(cfg: CodeCarbonConfig, gpu_ids: list[int] | None, output_dir: str | None, project: str):
    """A fresh OfflineEmissionsTracker, every argument explicit (never the online tracker)."""
    from codecarbon import OfflineEmissionsTracker

    host.cache_cpu_info()  # CodeCarbon's CPU identification, once per host instead of once per process
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)  # CodeCarbon fails (silently) on a missing folder
    tracker = OfflineEmissionsTracker(
        country_iso_code=cfg.country_iso_code,
        region=cfg.region,
        # NVML indices, not UUIDs: CodeCarbon 3.3.2 mangles "GPU-..." with lstrip("MIG-") and then
        # silently tracks no GPU (0 J), seen on an H200.
        gpu_ids=gpu_ids or None,
        tracking_mode="machine",
        measure_power_secs=cfg.measure_power_secs,
        save_to_file=cfg.save_to_file and output_dir is not None,
        output_dir=output_dir or ".",
        save_to_api=False,
        save_to_logger=False,
        log_level="error",
        project_name=project,
        allow_multiple_runs=True,  # parallel jobs on one host each run their own tracker
    )
    # CodeCarbon swallows errors in its constructor: check through its public API that it found hardware.
    try:
        tracker.get_detected_hardware()
    except Exception as err:  # noqa: BLE001 - whatever it swallowed, the tracker is unusable
        raise MeasurementError(
            f"CodeCarbon's OfflineEmissionsTracker failed to initialise (it hides the cause: {err}); check the "
            "codecarbon.* settings, or pass codecarbon.enabled=false"
        ) from err
    return tracker


def _cpu_mode(tracker: object) -> str:
    """How CodeCarbon obtains CPU energy (`intel_rapl`, `cpu_load`, `constant`, ...): its only private read."""
    for hw in getattr(tracker, "_hardware", []):
        if type(hw).__name__ == "CPU":
            return str(getattr(hw, "_mode", "unknown"))
    return "unknown"


def cpu_method(mode: str) -> str:
    """The tag for CodeCarbon's CPU figure: measured through RAPL, or modelled."""
    return "codecarbon-rapl" if mode == "intel_rapl" else f"codecarbon-model({mode})"


class JobTracker:
    """CodeCarbon's tracker over a whole job, as the sampler process runs it: `start`, then `stop` -> totals.

    Takes the `codecarbon` settings as a dict: ela.config (and with it torch) stays out of that process.
    """

    def __init__(self, cfg: dict[str, Any], gpu_ids: list[int], output_dir: str, project: str) -> None:
        self._tracker = _tracker(SimpleNamespace(**cfg), gpu_ids, output_dir, project)

    def start(self) -> None:
        """Start CodeCarbon's sampling."""
        self._tracker.start()

    def stop(self) -> tuple[dict[str, Any] | None, str]:
        """Stop; CodeCarbon's EmissionsData as a dict (None where it swallowed an error) and its CPU mode."""
        self._tracker.stop()
        data = getattr(self._tracker, "final_emissions_data", None)
        return (dataclasses.asdict(data) if data is not None else None), _cpu_mode(self._tracker)


class CarbonTracker:
    """CodeCarbon over the job from its model load on (reference passes included), for job energy and emissions.

    CodeCarbon samples from threads every second; they run in a process of their own (ela.measure.sidecar) unless
    `process=False`. Its `tracking_mode="machine"` measures the host and its GPUs, not a process, so the totals
    are the same from there.
    """

    def __init__(
        self, cfg: CodeCarbonConfig, gpu_ids: list[int], output_dir: str, project: str, process: bool = True
    ) -> None:
        self._expects_gpu = bool(gpu_ids)
        args = (dataclasses.asdict(cfg), gpu_ids, output_dir, project)
        self._sidecar = Sidecar(JobTracker, *args, process=process, warm=WARM)

    @staticmethod
    def prepare() -> None:
        """Start the next tracker's process now, so its imports run while the job does other things."""
        prepare(WARM)

    def start(self, wait: bool = True) -> None:
        """Start sampling (returns once CodeCarbon runs; `wait=False`: at once, and `started()` waits)."""
        try:
            self._sidecar.start(wait)
        except SidecarError as err:
            self._sidecar.close()
            raise MeasurementError(str(err)) from err

    def started(self) -> None:
        """Wait until CodeCarbon runs (after `start(wait=False)`); a failure to start raises here."""
        try:
            self._sidecar.started()
        except SidecarError as err:
            self._sidecar.close()
            raise MeasurementError(str(err)) from err

    def close(self) -> None:
        """Stop CodeCarbon if the job ended before `stop` (a crash); idempotent."""
        self._sidecar.close()

    def stop(self) -> CarbonRecord:
        """Stop once and return the record; a None result (CodeCarbon swallowed an error) raises."""
        try:
            data, mode = self._sidecar.stop()
        except SidecarError as err:
            raise MeasurementError(str(err)) from err
        if data is None:
            raise MeasurementError("CodeCarbon returned no emissions data for this job")
        if self._expects_gpu and not data["gpu_energy"]:
            raise MeasurementError(
                "CodeCarbon reported 0 J for the GPU this job used, so its totals and emissions would leave "
                "the GPU out; not logging them"
            )
        return CarbonRecord(
            energy_kwh=data["energy_consumed"],
            cpu_energy_kwh=data["cpu_energy"],
            ram_energy_kwh=data["ram_energy"],
            gpu_energy_kwh=data["gpu_energy"],
            emissions_g=data["emissions"] * 1000.0,  # CodeCarbon reports kg CO2e
            duration_s=data["duration"],
            methods={
                "cpu": cpu_method(mode),
                "ram": "codecarbon-model(ram)",
                "gpu": "codecarbon-nvml" if data["gpu_count"] else "none",
            },
            raw=data,
        )


class CodeCarbonMeter:
    """CPU + RAM energy over exactly a window, from CodeCarbon's `start_task` / `stop_task`.

    The CPU-only meter where RAPL can't be read: CodeCarbon models both there, and the method tag says so.
    """

    counter = None  # nothing to sample for a trace

    def __init__(
        self,
        cfg: CodeCarbonConfig,
        sync: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        # Its own tracker, used for tasks only: start_task on the job's running tracker would reset that
        # tracker's start time and so the whole-job totals.
        self._tracker = _tracker(cfg, None, None, "ela-windows")
        self._sync, self._clock = sync, clock
        self._open: dict[str, float] = {}
        self.method = f"{cpu_method(_cpu_mode(self._tracker))}+codecarbon-model(ram)"

    def sync(self) -> None:
        """Wait for all work queued on the device."""
        self._sync()

    def begin_window(self, name: str) -> None:
        """Synchronise, read the clock and start a CodeCarbon task."""
        self._sync()
        self._tracker.start_task(name)
        self._open[name] = self._clock()

    def end_window(self, name: str) -> Window:
        """Synchronise, stop the task and return CPU + RAM energy over the window."""
        self._sync()
        t1 = self._clock()
        data = self._tracker.stop_task(name)
        t0 = self._open.pop(name)
        if data is None:
            raise MeasurementError(f"CodeCarbon returned no data for window {name!r}")
        return checked_window(name, self.method, t1 - t0, (data.cpu_energy + data.ram_energy) * KWH_TO_J)


@functools.cache
def _grid_data() -> tuple[dict[str, Any], Any]:
    from codecarbon.input import DataSource

    source = DataSource()
    return source.get_global_energy_mix_data(), source


def check_grid(country_iso_code: str, region: str | None) -> None:
    """Refuse a country (or region) CodeCarbon has no offline data for: it would silently use a default."""
    mix, source = _grid_data()
    if country_iso_code not in mix:
        raise ElaError(
            f"codecarbon.country_iso_code={country_iso_code!r} is not a country in CodeCarbon's offline data "
            f"(it would silently use a world-average intensity); use an ISO 3166 alpha-3 code such as "
            f"USA, FRA, DEU, GBR, CHN ({len(mix)} are known)"
        )
    if region is None:
        return
    # Regions ela can check in CodeCarbon's public data: US states (emissions) and Canadian provinces
    # (energy mix). Elsewhere CodeCarbon falls back to the national figure without a word.
    loaders = {"USA": source.get_country_emissions_data, "CAN": source.get_country_energy_mix_data}
    if country_iso_code not in loaders:
        raise ElaError(
            f"codecarbon.region={region!r}: ela checks regions for USA and CAN only (CodeCarbon would silently "
            f"use the national figure of {country_iso_code} for an unknown one); use codecarbon.region=null"
        )
    regions = {k for k in loaders[country_iso_code](country_iso_code.lower()) if not k.startswith("_")}
    if region.lower() not in regions:
        raise ElaError(
            f"codecarbon.region={region!r}: CodeCarbon has no offline data for that region of {country_iso_code} "
            f"(known: {', '.join(sorted(regions)[:8])}, ...); use codecarbon.region=null for the national figure"
        )
