"""Shared fixtures: paths to ../shared, a job composed and run in-process, and `python -m ela.run` for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MODEL = SHARED / "models" / "minilm-l6-sst2"
SST2 = SHARED / "data" / "sst2"

# A fast, offline CPU configuration of the real job on the real MiniLM SST-2 classifier.
LOCAL = [
    "model=local",
    f"model.path={MODEL}",
    "model.name=minilm-l6-sst2",
    "model.max_length=64",
    f"dataset.path={SST2}",
    "device=cpu",
    "measure.warmup_batches=2",
    "measure.min_window_s=0.2",
]
# The GPU energy path on a CPU machine: the fake meter (150 W, tagged fake-counter), no idle settling.
FAKE_GPU = ["measure.energy_meter=fake", "measure.fake_power_w=150", "measure.idle_max_settle_s=0"]
FAST = [*LOCAL, *FAKE_GPU, "dataset.limit=24", "measure.repeats=1", "measure.idle_window_s=0.05"]
PARENT = "mlflow.parentRunId"
# A guard against a hang, not a speed limit: a test's jobs queue for the host's CPU lock behind any other ela job on
# the machine (the README's main command beside the suite, say), so a sweep that takes a minute alone can take ten.
HANG_S = 1800


def compose_job(*overrides: str):
    """The validated JobConfig for these overrides, composed by Hydra as `python -m ela.run` would."""
    from hydra import compose, initialize_config_dir

    from ela.config import to_container, validate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate(to_container(compose("config", overrides=list(overrides))))


def measure(tmp: Path, *overrides: str):
    """Run one job in this process (ela.job.measure_job, as each launcher calls it) and return its outcome."""
    from ela.job import measure_job

    return measure_job(compose_job(*overrides), tmp)


@pytest.fixture(autouse=True)
def _no_spare_left():
    """A sampler process prepared ahead of need (ela.measure.sidecar) never carries over into another test."""
    yield
    from ela.measure import sidecar

    sidecar._drop_spares()


@pytest.fixture(autouse=True)
def _no_kept_references():
    """A reference pass kept by one test's job (ela.runtime.kept) never serves another test's."""
    yield
    from ela.runtime import kept

    kept.clear_references()


@pytest.fixture(scope="session", autouse=True)
def _offline() -> None:
    """Tests never reach a model hub (CI has none)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # On the GPU machine ../shared does not travel; tests/gpu read the device kit's copy ($ELA_DEVICE_DATA).
    assert (MODEL.is_dir() and SST2.is_dir()) or os.environ.get("ELA_DEVICE_DATA"), (
        f"tests need {SHARED} beside the repo"
    )


def run_ela(
    tmp: Path, *overrides: str, multirun: bool = True, timeout: int = HANG_S, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m ela.run` in a subprocess into a MLflow SQLite store under tmp."""
    cmd = [sys.executable, "-m", "ela.run"]
    if multirun:
        cmd.append("-m")
    cmd += [*overrides, f"hydra.sweep.dir={tmp / 'multirun'}", f"hydra.run.dir={tmp / 'outputs'}"]
    if not any(o.startswith("tracking.uri=") for o in overrides):
        cmd.append(f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.update(extra_env or {})
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], url: str, cwd: Path) -> subprocess.Popen:
    """Start a local HTTP server (mlflow ui / mlflow server) and wait until it answers."""
    import time
    import urllib.request

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # No tight start-up limit: a busy 2-core host can take minutes to import MLflow's server.
    for _ in range(1200):
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited with {proc.returncode} before answering at {url}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise AssertionError(f"{cmd[0]} did not answer at {url} in 10 minutes")


def mlflow_cli() -> str:
    """The mlflow command of this Python environment."""
    return os.path.join(os.path.dirname(sys.executable), "mlflow")


def client(tmp: Path):
    """An MlflowClient on the test's store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")


def all_runs(tmp: Path):
    """Every run of the 'ela' experiment in the test's store, oldest first."""
    c = client(tmp)
    exp = c.get_experiment_by_name("ela")
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
