"""Energy-window logic on replayed and fake counters (the NVML path runs for real on the GPU)."""

import pytest

from ela.measure.meters import FakeCounter, MeasurementError, ReplayCounter, Window, WindowMeter, dynamic_energy_j


class Clock:
    """A clock that advances by fixed steps, so windows have exact lengths."""

    def __init__(self, *times: float) -> None:
        self.times = iter(times)

    def __call__(self) -> float:
        return next(self.times)


def test_window_is_counter_difference_over_synchronised_reads():
    syncs = []
    meter = WindowMeter(ReplayCounter([1000.0, 1500.0]), sync=lambda: syncs.append(1), clock=Clock(10.0, 15.0))
    meter.begin_window("w")
    w = meter.end_window("w")
    assert w == Window(duration_s=5.0, energy_j=500.0, method="replay-counter")
    assert w.avg_power_w == 100.0
    assert len(syncs) == 2  # device synchronised at both ends


def test_quantised_counter_gives_the_ticks_it_saw():
    # NVML's counter moves in ~100 ms steps: a 0.25 s window at 100 W can read 20 J or 30 J, not 25 J.
    meter = WindowMeter(ReplayCounter([100.0, 130.0]), clock=Clock(0.0, 0.25))
    meter.begin_window("w")
    assert meter.end_window("w").energy_j == 30.0


def test_zero_reading_is_invalid_not_zero_joules():
    meter = WindowMeter(ReplayCounter([42.0, 42.0]), clock=Clock(0.0, 0.05))
    meter.begin_window("w")
    with pytest.raises(MeasurementError, match="zero reading is invalid"):
        meter.end_window("w")


def test_counter_reset_is_detected():
    meter = WindowMeter(ReplayCounter([5000.0, 12.0]), clock=Clock(0.0, 5.0))
    meter.begin_window("w")
    with pytest.raises(MeasurementError, match="went backwards"):
        meter.end_window("w")


def test_nested_windows_are_independent():
    meter = WindowMeter(ReplayCounter([0.0, 10.0, 30.0, 100.0]), clock=Clock(0.0, 1.0, 2.0, 5.0))
    meter.begin_window("outer")
    meter.begin_window("inner")
    assert meter.end_window("inner").energy_j == 20.0
    assert meter.end_window("outer") == Window(5.0, 100.0, "replay-counter")


def test_dynamic_energy_subtracts_idle_power_times_window():
    w = Window(duration_s=5.0, energy_j=1000.0, method="replay-counter")
    assert dynamic_energy_j(w, idle_power_w=120.0) == pytest.approx(400.0)


def test_fake_counter_integrates_constant_power():
    clock = Clock(0.0, 1.0, 3.0)
    meter = WindowMeter(FakeCounter(power_w=50.0, clock=clock), clock=Clock(100.0, 102.0))
    meter.begin_window("w")
    w = meter.end_window("w")
    assert w.energy_j == pytest.approx(100.0) and w.method == "fake-counter"


class SleepClock:
    """An injected clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class SteppedCounter:
    """A counter that moves by 10 J every `period` seconds of a clock, like NVML's ~100 ms ticks."""

    method = "stepped"

    def __init__(self, period: float, clock: SleepClock) -> None:
        self.period, self.clock = period, clock

    def read_j(self) -> float:
        return 10.0 * int(self.clock() / self.period)


def test_tick_period_of_a_quantised_counter():
    from ela.measure.meters import tick_period_s

    clock = SleepClock()
    assert tick_period_s(SteppedCounter(0.05, clock), 0.5, clock, clock.sleep) == pytest.approx(0.05, abs=0.003)
    clock = SleepClock()
    assert tick_period_s(FakeCounter(100.0, clock=clock), 0.5, clock, clock.sleep) is None  # continuous
    assert clock() < 0.1  # known after 25 reads of ~2 ms, not by polling on for 0.5 s


def test_settle_waits_until_power_stops_falling():
    from ela.measure.meters import settle

    clock = SleepClock()
    readings = iter([200.0, 150.0, 120.0, 119.5, 119.8, 119.6])
    waited = settle(lambda: next(readings), max_s=10, step_s=0.5, clock=clock, sleep=clock.sleep)
    assert waited == pytest.approx(2.0)  # 2 falling steps (150, 120), then 2 steady ones (119.5, 119.8)
    clock = SleepClock()
    falling = iter(range(1000, 0, -10))
    assert settle(lambda: float(next(falling)), max_s=2.0, step_s=0.5, clock=clock, sleep=clock.sleep) == 2.0  # capped


def fake_rapl(root, zones):
    """A powercap tree as the kernel lays it out: {dir name: (zone name, energy_uj, max range)}."""
    for name, (zone, energy, span) in zones.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "name").write_text(zone + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{span}\n")


def test_rapl_sums_packages_and_dram_and_survives_a_wraparound(tmp_path):
    from ela.measure.meters import RaplCounter

    fake_rapl(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", 900_000_000, 1_000_000_000),
            "intel-rapl:0:0": ("core", 5, 1_000_000_000),  # inside the package figure: not added again
            "intel-rapl:0:2": ("dram", 1_000_000, 1_000_000_000),
            "intel-rapl:1": ("package-1", 0, 1_000_000_000),
            "intel-rapl:2": ("psys", 7, 1_000_000_000),  # the whole platform: contains the packages
        },
    )
    counter = RaplCounter(tmp_path)
    assert counter.method == "rapl(package-0,dram-0,package-1)"
    meter = WindowMeter(counter, clock=Clock(0.0, 10.0))
    meter.begin_window("w")
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("100000000\n")  # wrapped: +200 J, not -800 J
    (tmp_path / "intel-rapl:0:2" / "energy_uj").write_text("31000000\n")  # +30 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("500000000\n")  # +500 J
    w = meter.end_window("w")
    assert w.energy_j == pytest.approx(730.0) and w.avg_power_w == pytest.approx(73.0)


def test_rapl_says_why_it_cannot_be_read(tmp_path):
    from ela.measure.meters import RaplCounter, rapl_zones

    assert rapl_zones(tmp_path) == f"no RAPL package zones under {tmp_path}"
    with pytest.raises(MeasurementError, match="no RAPL package zones"):
        RaplCounter(tmp_path)
