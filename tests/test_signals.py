"""SIGTERM under every launcher: to the sweep's process or to one job's, nothing is left RUNNING.

A signal is recorded and acted on at the next safe point (ela.interrupt), so it is never swallowed by
a garbage-collector callback; the sweep's process stops the sweep, a worker's job alone ends KILLED.
"""

import signal

import pytest
from conftest import HANG_S
from test_resilience import FAST, all_runs, children, start_sweep, wait_for

pytestmark = pytest.mark.slow  # real sweeps signalled under each launcher

SLOW = [*FAST, "codecarbon.enabled=false", "measure.min_window_s=3"]
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib_gpus", "hydra.launcher.n_jobs=2"],
    "submitit": ["hydra/launcher=submitit_local_gpus"],
    "fork": ["hydra/launcher=fork", "hydra.launcher.n_jobs=2"],
}


def running(runs):
    return [r for r in children(runs) if r.info.status == "RUNNING"]


def test_sigterm_right_after_a_job_ends_stops_the_sweep(tmp_path):
    # The case a handler that raises got wrong: the signal landed in release_device()'s gc.collect().
    proc = start_sweep(tmp_path, "seed=0,1,2", *FAST, "measure.min_window_s=0.2")
    wait_for(tmp_path, lambda rs: any(r.info.status == "FINISHED" for r in children(rs)))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    runs = all_runs(tmp_path)
    parent = next(r for r in runs if r not in children(runs))
    assert parent.info.status == "KILLED" and not running(runs)
    assert len([r for r in children(runs) if r.info.status == "FINISHED"]) < 3  # the rest never started
    assert "not started: the sweep was interrupted" in (tmp_path / "sweep.log").read_text()


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_sigterm_to_the_sweep_closes_every_run_killed(tmp_path, launcher):
    proc = start_sweep(tmp_path, "seed=0,1,2", *LAUNCHERS[launcher], *SLOW)
    wait_for(tmp_path, running)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == 128 + signal.SIGTERM
    runs = all_runs(tmp_path)
    parent = next(r for r in runs if r not in children(runs))
    assert parent.info.status == "KILLED" and not running(runs)
    assert {r.info.status for r in children(runs)} <= {"KILLED", "FINISHED"}
    assert "KILLED" in {r.info.status for r in children(runs)}
    assert "Traceback" not in (tmp_path / "sweep.log").read_text()


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_sigterm_to_one_job_kills_that_job_and_the_sweep_goes_on(tmp_path, launcher):
    import os

    proc = start_sweep(tmp_path, "seed=0,1", *LAUNCHERS[launcher], *SLOW)
    victim = running(wait_for(tmp_path, running))[0]
    os.kill(int(victim.data.tags["ela.pid"]), signal.SIGTERM)  # e.g. a scheduler ending that one process
    assert proc.wait(timeout=HANG_S) == 1  # the sweep finished, with one job not finished
    runs = {r.info.run_name: r for r in all_runs(tmp_path)}
    assert runs[victim.info.run_name].info.status == "KILLED"
    assert sorted(r.info.status for r in children(list(runs.values()))) == ["FINISHED", "KILLED"]
    parent = next(r for r in runs.values() if r not in children(list(runs.values())))
    assert parent.info.status == "FAILED" and parent.data.tags["ela.jobs_killed"] == "1"


def test_a_sweep_stopped_before_any_job_has_an_empty_table_and_ends_killed(tmp_path):
    from ela.tracking.report import formatted, runs_table, sweep_description

    # The table of no jobs was a KeyError that left the parent RUNNING and exited 2 (a deadline hit at start-up)
    assert formatted(runs_table([])).empty
    assert "0 finished" in sweep_description("s", [], "1", "0 finished, 0 failed", "k")
    proc = start_sweep(tmp_path, "seed=0,1", *LAUNCHERS["joblib"], *SLOW)  # workers take seconds to start
    wait_for(tmp_path, lambda rs: len(rs) >= 1)  # the parent run exists
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    runs = all_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if r not in children(runs))
    assert parent.info.status == "KILLED"
    assert "could not close" not in (tmp_path / "sweep.log").read_text()
