"""The host's load during a job's windows, from /proc/stat-shaped files and hand-made samples."""

from ela.measure import host
from ela.measure.host import HostSample


def test_a_sample_counts_steal_as_busy_and_separately(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal
    stat.write_text("cpu  100 0 50 800 30 0 0 20 0 0\ncpu0 1 2 3\n")
    s = host.sample(stat)
    assert s.busy_s == (100 + 50 + 20) * host.TICK_S
    assert s.steal_s == 20 * host.TICK_S
    assert host.sample(tmp_path / "missing") is None


def test_load_splits_other_processes_steal_and_this_process():
    start = HostSample(wall_s=0.0, busy_s=0.0, own_s=0.0, steal_s=0.0)
    end = HostSample(wall_s=10.0, busy_s=30.0, own_s=9.0, steal_s=4.0)
    load = host.load(start, end, cpus=4)  # 40 CPU-seconds of capacity
    assert load.other_share == (30.0 - 9.0) / 40.0
    assert load.steal_share == 4.0 / 40.0
    assert load.own_cpus == 0.9
    assert host.load(start, None) is None and host.load(end, start) is None


def test_watch_counts_the_garbage_collectors_time_inside_its_block():
    import gc

    with host.Watch() as watch:
        gc.collect()  # a full collection, as the interpreter's thresholds trigger inside long loops
    assert watch.load.gc_full >= 1 and 0 < watch.load.gc_share <= 1
    assert watch.load.own_cpus >= 0 and gc.callbacks.count(watch._on_gc) == 0
