"""Real CodeCarbon (offline): the one private read ela relies on, CPU/RAM energy over a window, grid data."""

import time
from importlib import metadata

import pytest

from ela import ElaError
from ela.config import CodeCarbonConfig
from ela.measure.carbon import CarbonTracker, CodeCarbonMeter, _cpu_mode, _tracker, check_grid
from ela.measure.host import cache_cpu_info

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


def test_codecarbons_cpu_detection_is_read_from_a_per_host_file_after_the_first_process(tmp_path, monkeypatch):
    # CodeCarbon identifies the CPU with py-cpuinfo (~1.2 s a process); ela keeps the answer per host.
    import cpuinfo
    from codecarbon.core.util import detect_cpu_model

    calls = []

    def detect():
        calls.append(1)
        return {"brand_raw": "Test CPU 9000", "count": 2}

    monkeypatch.setenv("ELA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpuinfo, "get_cpu_info", detect)
    assert cache_cpu_info() == "detected" and len(calls) == 1
    assert cache_cpu_info() == "detected"  # installed once per process
    (cached,) = tmp_path.glob("cpuinfo-*.json")
    monkeypatch.setattr(cpuinfo, "get_cpu_info", detect)  # a new process: the original detection again
    assert cache_cpu_info() == "file" and len(calls) == 1  # ... not called: the file answered
    assert cpuinfo.get_cpu_info()["brand_raw"] == "Test CPU 9000"
    detect_cpu_model.cache_clear()  # CodeCarbon's own per-process cache
    assert detect_cpu_model() == "Test CPU 9000"  # what CodeCarbon's power model looks up
    detect_cpu_model.cache_clear()
    cached.write_text("{not json")  # a damaged file is detected again and rewritten
    monkeypatch.setattr(cpuinfo, "get_cpu_info", detect)
    assert cache_cpu_info() == "detected" and len(calls) == 2
