"""Real CodeCarbon (offline): the one private read ela relies on, CPU/RAM energy over a window, grid data."""

import time
from importlib import metadata

import pytest

from ela import ElaError
from ela.config import CodeCarbonConfig
from ela.measure.carbon import CarbonTracker, CodeCarbonMeter, _cpu_mode, _tracker, check_grid

CFG = CodeCarbonConfig(enabled=True, country_iso_code="USA", region=None, measure_power_secs=1.0, save_to_file=False)


def test_the_pinned_codecarbon_still_names_its_cpu_mode_where_ela_reads_it():
    # CodeCarbon says nowhere public whether its CPU figure is RAPL or a model; ela reads the CPU
    # hardware object's `_mode`. pyproject.toml pins the versions this was checked on.
    major, minor = (int(x) for x in metadata.version("codecarbon").split(".")[:2])
    assert (major, minor) == (3, 3), "a new CodeCarbon: re-check _cpu_mode, then widen the pin"
    tracker = _tracker(CFG, None, None, "test")
    mode = _cpu_mode(tracker)
    assert mode in {"intel_rapl", "cpu_load", "constant", "intel_power_gadget", "apple_powermetrics", "windows_emi"}


def test_window_meter_gives_cpu_and_ram_energy_over_exactly_the_window():
    meter = CodeCarbonMeter(CFG)
    assert meter.method.endswith("+codecarbon-model(ram)") and meter.method.startswith("codecarbon-")
    meter.begin_window("w")
    time.sleep(1.0)
    w = meter.end_window("w")
    assert w.duration_s >= 0.95  # (no upper bound: a busy host may take longer)
    assert w.energy_j > 0 and 0 < w.avg_power_w < 2000  # a modelled host, but a host


def test_whole_job_tracker_keeps_its_own_totals_beside_window_tasks(tmp_path):
    job = CarbonTracker(CFG, [], str(tmp_path), "job")
    job.start()
    meter = CodeCarbonMeter(CFG)
    meter.begin_window("w")
    time.sleep(0.3)
    meter.end_window("w")
    time.sleep(0.3)
    record = job.stop()
    assert record.duration_s >= 0.6  # a window task on another tracker did not reset the job's clock
    assert record.energy_kwh > 0 and record.methods["ram"] == "codecarbon-model(ram)"


@pytest.mark.parametrize(
    "country, region, message",
    [
        ("XXX", None, "not a country in CodeCarbon's offline data"),
        ("USA", "atlantis", "no offline data for that region of USA"),
        ("DEU", "bayern", "checks regions for USA and CAN only"),
    ],
)
def test_unknown_grids_are_refused(country, region, message):
    with pytest.raises(ElaError, match=message):
        check_grid(country, region)


def test_known_grids_pass():
    check_grid("FRA", None)
    check_grid("USA", "texas")
    check_grid("CAN", "ontario")
