"""ela's process-per-job launcher: every job in a fresh process, forked from one that imported torch already.

submitit's local executor (like Slurm) starts a new Python per job, which pays the interpreter and its
imports before ela runs a line: `import torch` alone took 1.7 s on the 2-core VM and 5.2 s on the H200 host
(benchmarks/README.md, "Sweep overhead per launcher"). Here a forkserver imports torch, transformers,
MLflow, CodeCarbon and ela once per sweep, without starting CUDA, and each job is a child forked from it:
a process of its own (CUDA context, memory, a crash or an out-of-memory kill stay in it) without the
imports. Up to `n_jobs` run at once (with gpus=all each claims a GPU of its own). A job whose process dies
without returning is recorded as failed with its exit code, and the others go on. Signals reach the jobs
as under the other launchers (ela.interrupt forwards them to the processes started here).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from ela import interrupt

log = logging.getLogger(__name__)


def _job(
    out: Connection, idx: int, overrides: list[str], ctx: HydraContext, config: DictConfig, instances: dict[Any, Any]
) -> None:
    """In the forked child: Hydra's job set-up, then ela's job function; the JobReturn goes back through `out`."""
    from omegaconf.basecontainer import BaseContainer

    import ela.run
    from ela.run import run_job as task  # ela's job function (what `python -m ela.run`'s task wraps)

    ela.run.PROCESS_ENDS_AFTER_JOB = True  # this process ends after the job: nothing to free for a next one

    setup_globals()  # Hydra's resolvers; importing ela.run registered ela's
    Singleton.set_state({"instances": instances, "omegaconf_resolvers": BaseContainer._resolvers})
    sweep_config = ctx.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id, sweep_config.hydra.job.num = f"{sweep_config.hydra.job.name}_{idx}", idx
    HydraConfig.instance().set_config(sweep_config)
    ret = run_job(hydra_context=ctx, config=sweep_config, task_function=task, job_dir_key="hydra.sweep.dir",
                  job_subdir_key="hydra.sweep.subdir")  # fmt: skip
    out.send(ret)


def _returned(overrides: Sequence[str], status: str, error: str | None = None, **extra: Any) -> JobReturn:
    """A JobReturn for a job that returned nothing: ela's job result dict, as `run_job` gives for a failure.

    Its MLflow run (if it had one) is closed by the sweep's end (ela.tracking.sweep): the process is gone.
    """
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": status, **({"error": error} if error else {}), **extra}
    return ret


class ForkLauncher(Launcher):
    """Each job in a child of a forkserver that preloaded `preload`; at most `n_jobs` at once."""

    def __init__(self, n_jobs: int = 1, preload: list[str] | None = None) -> None:
        self.n_jobs, self.preload = max(1, int(n_jobs)), list(preload or [])
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep what every job needs (the task function is ela's own, imported in each child)."""
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs, n_jobs at a time, each in its own forked process; their JobReturns in input order."""
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        ctx = mp.get_context("forkserver")
        # read when the forkserver starts (the sweep's first job); the filter first, so every job inherits it
        ctx.set_forkserver_preload(["hydra_plugins.ela_launcher.quiet", *self.preload])
        # Hydra's singletons (config store, ...) go to each job; its resolvers are closures pickle can't carry,
        # and the child has them already (Hydra's from setup_globals, ela's from importing ela.run).
        instances = Singleton.get_state()["instances"]
        pending = list(enumerate(job_overrides))
        running: dict[int, tuple[Any, Connection]] = {}
        results: list[JobReturn | None] = [None] * len(job_overrides)
        log.info(f"ForkLauncher(n_jobs={self.n_jobs}) is launching {len(job_overrides)} jobs")
        while pending or running:
            while pending and interrupt.received() is not None:  # stopping: start nothing more
                i, overrides = pending.pop(0)
                results[i] = _returned(overrides, "NOT_STARTED")
            while pending and len(running) < self.n_jobs:
                i, overrides = pending.pop(0)
                log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(overrides))}")
                recv, send = ctx.Pipe(duplex=False)
                args = (send, initial_job_idx + i, list(overrides), self.hydra_context, self.config, instances)
                proc = ctx.Process(target=_job, args=args, name=f"ela-job-{initial_job_idx + i}")
                proc.start()
                send.close()  # the child holds the only write end: EOF on recv once it is gone
                interrupt.adopt(proc.pid)
                running[i] = (proc, recv)
            if running:
                wait([recv for _, recv in running.values()])
            for i, (proc, recv) in list(running.items()):
                try:
                    if not recv.poll():
                        continue
                    results[i] = recv.recv()
                except EOFError:  # the process is gone without sending its JobReturn
                    proc.join()
                    error = f"the job's process ended with exit code {proc.exitcode} before it returned"
                    log.error(f"#{initial_job_idx + i}: {error}")
                    results[i] = _returned(job_overrides[i], "FAILED", error, process_died=True)
                proc.join()
                interrupt.release(proc.pid)
                recv.close()
                del running[i]
        return [r for r in results if r is not None]
