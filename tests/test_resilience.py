"""Sweeps that survive: SIGKILL then resume without duplicates, SIGTERM closes runs, bad input fails early."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import FAST, HANG_S, PARENT, REPO, all_runs, run_ela

pytestmark = pytest.mark.slow  # real sweeps killed, resumed, and run against broken stores


def start_sweep(tmp, *overrides):
    """Start `python -m ela.run -m ...` in the background, as run_ela would."""
    cmd = [
        sys.executable, "-m", "ela.run", "-m", *overrides,
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"hydra.sweep.dir={tmp / 'multirun'}",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log = open(tmp / "sweep.log", "w")  # noqa: SIM115 - a file, not a pipe nobody reads (which could block it)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_for(tmp, predicate, timeout=HANG_S):
    """Poll the store until predicate(runs) holds (only once the sweep has created it: a second process
    creating the same SQLite store at the same moment would race)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (tmp / "multirun" / "ela_sweep.json").exists():
            try:
                runs = all_runs(tmp)
            except Exception:  # noqa: BLE001 - the store may be mid-creation
                runs = []
            if predicate(runs):
                return runs
        time.sleep(0.3)
    log = tmp / "sweep.log"
    raise AssertionError("timed out waiting for the sweep:\n" + (log.read_text()[-3000:] if log.exists() else ""))


def children(runs):
    return [r for r in runs if PARENT in r.data.tags]


def test_sigkill_then_resume_runs_each_job_once(tmp_path):
    grid = ["seed=0,1,2", *FAST, "measure.min_window_s=1.5"]
    proc = start_sweep(tmp_path, *grid)
    # Kill the whole sweep hard while its second job runs (the first has FINISHED).
    wait_for(
        tmp_path,
        lambda rs: (
            any(r.info.status == "FINISHED" for r in children(rs))
            and any(r.info.status == "RUNNING" for r in children(rs))
        ),
    )
    proc.kill()
    proc.wait(timeout=30)
    assert any(r.info.status == "RUNNING" for r in all_runs(tmp_path))  # left behind by the dead process

    resumed = run_ela(tmp_path, "seed=2,0,1", *grid[1:], "resume=true")  # the same grid, its values reordered
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "SKIPPED: already FINISHED" in resumed.stdout and "resume: marked" in resumed.stdout
    runs = all_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    finished = Counter(r.data.tags["ela.run_hash"] for r in children(runs) if r.info.status == "FINISHED")
    assert len(finished) == 3 and set(finished.values()) == {1}  # every job exactly once
    parents = [r for r in runs if PARENT not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same sweep, continued
    assert "3 finished, 0 failed" in resumed.stdout
    # The analysis counts each job once too: the attempt the kill ended is not a failure once resume finished it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "ela.analyze", "log_to_mlflow=false", f"out={tmp_path / 'analysis'}"]
    an = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert an.returncode == 0, an.stderr[-3000:]
    assert "3 finished jobs, 0 failed" in an.stdout and "1 earlier attempt(s) of jobs that resume" in an.stdout

    subset = run_ela(tmp_path, "seed=1", *grid[1:], "resume=true")  # another grid, every job already done
    assert subset.returncode == 0 and "nothing to run, every job already FINISHED" in subset.stdout
    parents = [r for r in all_runs(tmp_path) if PARENT not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "FINISHED"]  # the new, empty sweep too


def test_sigterm_marks_the_running_job_killed_and_closes_the_sweep(tmp_path):
    proc = start_sweep(tmp_path, "seed=0,1", *FAST, "measure.min_window_s=30")
    wait_for(tmp_path, lambda rs: any(r.info.status == "RUNNING" for r in children(rs)))
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    runs = all_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (child,) = children(runs)
    parent = next(r for r in runs if PARENT not in r.data.tags)
    assert child.info.status == "KILLED" and parent.info.status == "KILLED"
    assert re.fullmatch(r"SIGTERM, \d+ s into the job, in step '\S.*'", child.data.tags["ela.error"])
    # where its time went, as a finished job records it: phases so far and the seconds outside them
    # (a host busy with other ela jobs may still have it queued for the CPU: then it has no phase yet)
    m = child.data.metrics
    phases = {k: v for k, v in m.items() if k.startswith("phase_")}
    assert "device_wait_s" in m and m["job_wall_s"] > 0
    if "queued for the CPU" not in child.data.tags["ela.error"]:
        assert "phase_load_s" in phases
    assert sum(phases.values()) + m["device_wait_s"] + m.get("device_setup_s", 0.0) <= m["job_wall_s"]
    # The analysis counts the killed job as killed, not failed
    from ela import ElaError
    from ela.analysis.pipeline import AnalyzeConfig, analyze

    with pytest.raises(ElaError, match=r"has no FINISHED jobs \(0 failed, 1 killed, 0 running\)"):
        analyze(AnalyzeConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", log_to_mlflow=False))


def test_bad_input_on_the_command_line_is_one_message_and_a_failed_run(tmp_path):
    proc = run_ela(tmp_path, *FAST, "model.path=/no/such/checkpoint", multirun=False)
    assert proc.returncode == 1 and "model.path='/no/such/checkpoint' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FAILED" and "does not exist" in run.data.tags["ela.error"]


def test_unreachable_tracking_store_fails_before_any_job(tmp_path):
    proc = run_ela(tmp_path, "seed=0,1", *FAST, "tracking.uri=http://127.0.0.1:9/")
    proc_out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "cannot use MLflow tracking URI" in proc_out
    assert "Launching" not in proc_out  # no job started
    single = run_ela(tmp_path, *FAST, "tracking.uri=http://127.0.0.1:9/", multirun=False)
    assert single.returncode == 2 and "cannot use MLflow tracking URI" in single.stderr
    assert "Traceback" not in single.stderr


def test_unusable_sqlite_store_is_one_clear_error_before_any_job(tmp_path):
    bad = "tracking.uri=sqlite:////proc/ela-test/x.db"
    single = run_ela(tmp_path, *FAST, bad, multirun=False)
    assert single.returncode == 2 and "cannot use the MLflow store sqlite:////proc/ela-test/x.db" in single.stderr
    assert "Traceback" not in single.stderr and "retried" not in single.stderr  # no 100 s of MLflow retries
    sweep = run_ela(tmp_path, "seed=0,1", *FAST, bad)
    out = sweep.stdout + sweep.stderr
    assert sweep.returncode == 2 and "sweep stopped: could not open the MLflow store" in out
    assert "Launching" not in out and "Traceback" not in out


def test_an_invalid_value_in_the_grid_stops_the_sweep_before_any_job_and_leaves_no_sweep(tmp_path):
    proc = run_ela(tmp_path, "batch=1,abc", *FAST)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "sweep not started: job batch=abc: invalid value batch='abc'" in out
    assert "Launching" not in out
    assert all_runs(tmp_path) == []  # the parent run was deleted: `ela.analyze` finds no empty "latest sweep"


def test_processes_creating_a_new_store_at_once_all_get_it(tmp_path):
    code = f"from ela.tracking.store import Tracker; Tracker('sqlite:///{tmp_path}/mlflow.db', 'ela')"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors  # plain MlflowClient: "Online migration ..." races
    proc = run_ela(tmp_path, "seed=0", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_full_disk_is_one_line_per_job_and_leaves_no_run_running(tmp_path):
    import resource

    db = tmp_path / "mlflow.db"
    first = run_ela(tmp_path, "seed=9", *FAST)  # a sweep of one job shows how much one sweep adds to the store
    assert first.returncode == 0, first.stderr[-2000:]
    size = db.stat().st_size
    # Files may grow by a fraction of that: the "disk" fills up part-way into the next sweep's first job.
    limit = size + int(0.6 * (size - first_size(tmp_path)))

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG

    cmd = [sys.executable, "-m", "ela.run", "-m", "seed=0,1,2", *FAST, "codecarbon.enabled=false",
           f"tracking.uri=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'multirun2'}"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_S, preexec_fn=small_disk)
    assert proc.returncode != 0
    # (a job queued behind another test's for the CPU says so in a line of its own: not an error line)
    errors = [line for line in proc.stderr.splitlines() if "waits for its device" not in line]
    assert "Traceback" not in proc.stderr and len(errors) <= 6, proc.stderr[-3000:]
    assert "disk I/O error" in proc.stderr or "disk is full" in proc.stderr
    assert not [r for r in all_runs(tmp_path) if r.info.status == "RUNNING"]


def first_size(tmp_path) -> int:
    """Size of a freshly created store (as ela creates it), for the growth of one sweep."""
    from ela.tracking.store import Tracker

    fresh = tmp_path / "fresh" / "mlflow.db"
    Tracker(f"sqlite:///{fresh}", "ela")
    return fresh.stat().st_size


def test_a_job_that_cannot_run_here_fails_before_waiting_for_the_host(tmp_path, monkeypatch):
    import socket

    from ela.measure.gpu_pool import claim

    locks = tmp_path / "locks"
    monkeypatch.setenv("ELA_GPU_LOCK_DIR", str(locks))
    with claim([f"cpu-{socket.gethostname()}"], lock_dir=locks):  # another job measures this CPU now
        proc = run_ela(tmp_path, *FAST, "precision=tf32", multirun=False, timeout=120)
    assert proc.returncode == 1 and "needs TF32 tensor cores" in proc.stderr
    assert "waits for its device" not in proc.stderr  # refused at once, not after the other job


def test_a_job_waiting_for_the_host_says_who_holds_it(tmp_path):
    import socket

    from ela.measure.gpu_pool import claim

    locks = tmp_path / "locks"
    cmd = [sys.executable, "-m", "ela.run", *FAST, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
           f"hydra.run.dir={tmp_path / 'out'}"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ELA_GPU_LOCK_DIR": str(locks)}
    with claim([f"cpu-{socket.gethostname()}"], lock_dir=locks, owner="someone-elses-job"):
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        line = ""
        while "waits for its device" not in line:  # the job blocks on our lock and says so once
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the job ended without waiting"
    assert "held by pid " in line and "someone-elses-job" in line and str(locks) in line
    assert proc.wait(timeout=300) == 0  # and runs once the lock is free
