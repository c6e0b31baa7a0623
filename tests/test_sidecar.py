"""Samplers in a process of their own: the job's process runs no sampler thread, marks and results cross over,
errors arrive with their message, and a sampler process never outlives its job."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ela.measure.meters import FakeCounter
from ela.measure.sidecar import Sidecar, SidecarError, prepare
from ela.measure.trace import PowerTrace


class Probe:
    """A sampler that reports where it runs and what it was told."""

    def __init__(self, fail: str = "") -> None:
        if fail == "init":
            raise ValueError("no such meter")
        self.fail, self.marks = fail, []

    def start(self) -> int:
        return os.getpid()

    def mark(self, label: str) -> None:
        self.marks.append(label)

    def stop(self) -> tuple[int, list[str]]:
        if self.fail == "stop":
            raise RuntimeError("counter reset")
        return os.getpid(), self.marks


def test_a_sampler_runs_in_another_process_and_hands_back_its_marks():
    side = Sidecar(Probe)
    pid = side.start()
    side.mark("load")
    side.mark("window 1/2")
    stopped_pid, marks = side.stop()
    assert pid == stopped_pid != os.getpid()
    assert marks == ["load", "window 1/2"]
    side.close()  # after stop: nothing left to do


def test_inline_runs_the_same_sampler_in_this_process():
    side = Sidecar(Probe, process=False)
    assert side.start() == os.getpid()
    side.mark("x")
    assert side.stop() == (os.getpid(), ["x"])


@pytest.mark.parametrize("fail, step, message", [("init", "start", "ValueError: no such meter"),
                                                 ("stop", "stop", "RuntimeError: counter reset")])  # fmt: skip
def test_a_failing_sampler_raises_its_own_message(fail, step, message):
    side = Sidecar(Probe, fail)
    if step == "stop":
        side.start()
    with pytest.raises(SidecarError, match=message):
        getattr(side, step)()
    side.close()


def test_the_trace_samples_from_its_process_with_phases_and_no_thread_here():
    trace = PowerTrace(FakeCounter(100.0), interval_s=0.02).start()
    assert not [t for t in threading.enumerate() if t.name == "ela-power-trace"]
    trace.mark("load")
    time.sleep(0.1)
    trace.mark("window 1/1")
    time.sleep(0.1)
    df = trace.stop()
    assert list(df["phase"].unique()) == ["start", "load", "window 1/1"]  # in time order, each mark sampled at once
    assert df["t_s"].is_monotonic_increasing and df["t_s"].iloc[0] >= 0
    assert df["energy_j"].iloc[0] == 0 and df["energy_j"].is_monotonic_increasing
    # the fake counter's clock is the system-wide perf_counter: the child's copy integrates the same 100 W
    span = df["t_s"].iloc[-1] - df["t_s"].iloc[0]
    assert df["energy_j"].iloc[-1] == pytest.approx(100.0 * span, abs=0.1)  # (clock and counter read ~us apart)


def test_in_thread_mode_the_trace_samples_from_a_thread_of_this_process():
    trace = PowerTrace(FakeCounter(100.0), interval_s=0.02, process=False).start()
    assert [t for t in threading.enumerate() if t.name == "ela-power-trace"]
    trace.mark("load")
    assert set(trace.stop()["phase"]) == {"start", "load"}


def test_a_sampler_process_ends_when_its_job_dies(tmp_path):
    # The job is killed without closing anything (os._exit): its sampler sees its stdin close and ends.
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from ela.measure.sidecar import Sidecar
        from test_sidecar import Probe
        print(Sidecar(Probe).start(), flush=True)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    pid = int(out.stdout.strip())
    for _ in range(300):  # a safety bound, not a timing assertion: it ends as soon as it reads EOF
        if not _alive(pid):
            return
        time.sleep(0.1)
    pytest.fail(f"sampler process {pid} outlived its job")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended (its parent is gone, init reaps it)
    except FileNotFoundError:
        return False


class Imported:
    """A sampler that reports which of some modules its process had imported before it was built."""

    def __init__(self, *modules: str) -> None:
        self.had = {m: m in sys.modules for m in modules}

    def start(self) -> dict[str, bool]:
        return self.had

    def stop(self) -> int:
        return os.getpid()


def test_a_prepared_process_imports_ahead_and_serves_the_next_sampler():
    spare = prepare(("wave",))  # a stdlib module nothing else here imports
    assert prepare(("wave",)) == spare  # one spare per set of modules
    side = Sidecar(Imported, "wave", "colorsys", warm=("wave",))
    assert side.pid == spare
    assert side.start() == {"wave": True, "colorsys": False}
    assert side.stop() == spare
    other = Sidecar(Imported, "wave", warm=("wave",))  # the spare was taken: a fresh process, same imports
    assert other.pid != spare and other.start() == {"wave": True}
    other.stop()


class Setting:
    """A sampler that reports an environment variable and the folder it was built in."""

    def __init__(self, name: str) -> None:
        self.seen = (os.environ.get(name), os.getcwd())

    def start(self) -> tuple[str | None, str]:
        return self.seen

    def stop(self) -> None:
        return None


def test_a_spare_builds_its_sampler_in_the_jobs_present_environment(monkeypatch, tmp_path):
    # A spare started before a job pinned its GPU (CUDA_VISIBLE_DEVICES, which CodeCarbon reads) must not
    # build the job's sampler with the environment it was started in.
    prepare(("wave",))
    monkeypatch.setenv("ELA_PINNED_FOR_TEST", "GPU-1234")
    monkeypatch.chdir(tmp_path)
    side = Sidecar(Setting, "ELA_PINNED_FOR_TEST", warm=("wave",))
    assert side.start() == ("GPU-1234", str(tmp_path))
    side.stop()


def test_a_dead_spare_is_replaced_not_used():
    spare = prepare(("wave",))
    os.kill(spare, 9)
    os.waitpid(spare, 0)  # (the Popen no longer can: the test reaped it)
    side = Sidecar(Imported, "wave", warm=("wave",))
    assert side.pid != spare and side.start() == {"wave": True}
    side.stop()


def test_a_cpu_job_prepares_codecarbon_only_once_it_holds_the_cpu():
    # A CPU job waiting for the host's CPU must start nothing beside the job measuring it.
    from conftest import LOCAL, compose_job

    from ela.job.samplers import prepare as prepare_samplers
    from ela.measure import carbon, sidecar

    prepare_samplers(compose_job(*LOCAL), early=True)
    assert carbon.WARM not in sidecar._SPARES
    prepare_samplers(compose_job(*LOCAL, "measure.samplers_in=thread"))
    assert carbon.WARM not in sidecar._SPARES  # threads: no process to start
    prepare_samplers(compose_job(*LOCAL))  # after its claim (measure_job)
    assert sidecar._SPARES[carbon.WARM].poll() is None


def test_a_start_not_awaited_is_awaited_once_later_and_before_stop():
    side = Sidecar(Probe)
    assert side.start(wait=False) is None  # returns at once; the process builds and starts the sampler
    side.mark("load")  # marks may go down the pipe before the start's reply is read
    pid = side.started()
    assert pid != os.getpid() and side.started() == pid  # awaited once, remembered
    assert side.stop() == (pid, ["load"])
    other = Sidecar(Probe)
    other.start(wait=False)
    assert other.stop()[1] == []  # stop reads the start's reply first, never mistakes it for its own


def test_a_sampler_that_fails_to_start_unawaited_says_so_when_awaited():
    side = Sidecar(Probe, "init")
    side.start(wait=False)
    with pytest.raises(SidecarError, match="ValueError: no such meter"):
        side.started()
    side.close()


def test_a_job_awaits_codecarbon_as_its_load_ends_and_counts_the_wait_as_load(tmp_path, monkeypatch):
    # CodeCarbon's process starts its tracker while the model loads; the job waits for it before anything
    # measured, and that wait is the load phase's, not the samplers' overhead (samplers_s).
    from conftest import FAST, measure

    from ela.measure.carbon import CarbonTracker

    calls = []
    started = CarbonTracker.started

    def slow_start(self):
        calls.append(time.perf_counter())
        time.sleep(0.5)
        started(self)

    monkeypatch.setattr(CarbonTracker, "started", slow_start)
    out = measure(tmp_path, *FAST)
    assert len(calls) == 1
    assert out.metrics["phase_load_s"] >= 0.5
    assert out.metrics["samplers_s"] < 0.5
    assert out.metrics["codecarbon_energy_kwh"] > 0  # CodeCarbon ran and reported
