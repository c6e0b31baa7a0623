"""Scale-out on real Hydra launchers: parallel jobs into one SQLite store, submitit_local, GPU claims."""

from collections import Counter
from pathlib import Path

import pytest
from conftest import FAKE_GPU, HANG_S, LOCAL, PARENT, REPO, all_runs, free_port, mlflow_cli, run_ela, start_server

FAST = [*LOCAL, *FAKE_GPU, "dataset.limit=16", "measure.repeats=1", "measure.idle_window_s=0.05"]
pytestmark = pytest.mark.slow  # real launchers in subprocesses


def check_one_parent_and_jobs(tmp: Path, n: int) -> None:
    runs = all_runs(tmp)
    parents = [r for r in runs if PARENT not in r.data.tags]
    kids = [r for r in runs if PARENT in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(kids) == n and all(r.info.status == "FINISHED" for r in kids)
    assert {r.data.tags[PARENT] for r in kids} == {parents[0].info.run_id}
    assert set(Counter(r.data.tags["ela.run_hash"] for r in kids).values()) == {1}  # none lost or duplicated
    assert len({r.data.tags["ela.pid"] for r in kids}) > 1  # really ran in several processes
    # a CPU job computes with the launching process's torch threads (joblib's workers start with cores / n_jobs)
    assert {r.data.tags["torch.num_threads"] for r in kids} == {parents[0].data.tags["torch.num_threads"]}


def test_joblib_parallel_jobs_into_one_sqlite_store(tmp_path):
    proc = run_ela(tmp_path, "hydra/launcher=joblib_gpus", "hydra.launcher.n_jobs=2", "seed=0,1,2,3", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_one_parent_and_jobs(tmp_path, 4)


def test_submitit_local_runs_the_same_code_path(tmp_path):
    proc = run_ela(tmp_path, "hydra/launcher=submitit_local_gpus", "seed=0,1", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_one_parent_and_jobs(tmp_path, 2)


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.array_parallelism == 256


def test_submitit_local_shows_jobs_every_gpu_of_the_host():
    from hydra import compose, initialize_config_dir

    import ela.run  # noqa: F401 - registers the ela_gpu_count resolver, as `python -m ela.run` does

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=submitit_local_gpus"], return_hydra_config=True)
    from ela.measure.gpu_pool import visible_gpu_count

    assert cfg.hydra.launcher.gpus_per_node == visible_gpu_count()  # 0 on a CPU machine, 2 on a 2-GPU host


def test_gpus_on_cpu_is_a_clear_error(tmp_path):
    proc = run_ela(tmp_path, *FAST, "gpus=all", multirun=False)
    assert proc.returncode == 1 and "needs CUDA GPUs" in proc.stderr


def test_parallel_sweep_logs_over_http_to_an_mlflow_server(tmp_path):
    from mlflow.tracking import MlflowClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(
        [mlflow_cli(), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--host", "127.0.0.1",
         "--port", str(port), "--artifacts-destination", str(tmp_path / "artifacts")],
        uri, tmp_path,
    )  # fmt: skip
    try:
        proc = run_ela(
            tmp_path,
            "hydra/launcher=joblib_gpus",
            "hydra.launcher.n_jobs=2",
            "seed=0,1,2",
            *FAST,
            f"tracking.uri={uri}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        c = MlflowClient(uri)
        runs = c.search_runs([c.get_experiment_by_name("ela").experiment_id])
        kids = [r for r in runs if PARENT in r.data.tags]
        assert len(runs) == 4 and len(kids) == 3 and all(r.info.status == "FINISHED" for r in runs)
        assert len({r.data.tags["ela.run_hash"] for r in kids}) == 3
        assert "predictions.csv" in {a.path for a in c.list_artifacts(kids[0].info.run_id)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_fork_launcher_runs_each_job_in_a_process_of_its_own(tmp_path):
    """hydra/launcher=fork: jobs forked from one preloaded forkserver, two at a time, into one SQLite store."""
    proc = run_ela(tmp_path, "hydra/launcher=fork", "hydra.launcher.n_jobs=2", "seed=0,1,2", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_one_parent_and_jobs(tmp_path, 3)
    pids = [r.data.tags["ela.pid"] for r in all_runs(tmp_path) if PARENT in r.data.tags]
    assert len(set(pids)) == 3  # a fresh process per job, none reused
    assert "found in sys.modules" not in proc.stderr  # runpy's note about the preloaded main module is filtered


def test_a_fork_job_killed_hard_is_failed_and_the_sweep_goes_on(tmp_path):
    """SIGKILL to one job's process (an OOM kill): that run FAILED with the reason, the next job still runs."""
    import os
    import signal

    from test_resilience import children, start_sweep, wait_for

    proc = start_sweep(tmp_path, "hydra/launcher=fork", "seed=0,1", *FAST, "measure.min_window_s=3")
    runs = wait_for(tmp_path, lambda rs: [r for r in children(rs) if r.info.status == "RUNNING"])
    victim = next(r for r in children(runs) if r.info.status == "RUNNING")
    os.kill(int(victim.data.tags["ela.pid"]), signal.SIGKILL)
    assert proc.wait(timeout=HANG_S) == 1  # one job did not finish
    runs = {r.info.run_name: r for r in all_runs(tmp_path) if PARENT in r.data.tags}
    assert runs[victim.info.run_name].info.status == "FAILED"
    assert "its process ended before it could close this run" in runs[victim.info.run_name].data.tags["ela.error"]
    assert sorted(r.info.status for r in runs.values()) == ["FAILED", "FINISHED"]
    parent = next(r for r in all_runs(tmp_path) if PARENT not in r.data.tags)
    assert parent.data.tags["ela.jobs_failed"] == "1"  # counted once: its run, not also as a job without one
    log = (tmp_path / "sweep.log").read_text()
    assert "exit code -9" in log and "Traceback" not in log
