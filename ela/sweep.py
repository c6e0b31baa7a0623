"""Hydra callback: one MLflow parent run per multirun, created before any job; closed with counts."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ela import ElaError
from ela.environment import environment_tags
from ela.report import format_table, runs_table
from ela.tracking import PARENT_ENV, Tracker, tracking_uri


def sweep_key(overrides: list[str]) -> str:
    """The grid a sweep runs, independent of resume= and of the order overrides were given in."""
    return " ".join(sorted(o for o in overrides if not o.lstrip("+~").startswith("resume=")))


def latest_per_job(runs: list) -> list:
    """One run per job (ela.run_hash): its FINISHED run if it has one, else its latest attempt."""
    best: dict[str, Any] = {}
    for run in runs:  # oldest first
        key = run.data.tags.get("ela.run_hash", run.info.run_id)
        if key not in best or best[key].info.status != "FINISHED":
            best[key] = run
    return list(best.values())


class SweepCallback(Callback):
    """Creates the store and the parent run up front (no concurrent first creation), reports at the end."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_id: str | None = None
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = config.hydra
        self.sweep_dir = Path(str(hydra_cfg.sweep.dir))
        uri = tracking_uri(config.tracking.uri, hydra_cfg.runtime.cwd)
        try:  # an unusable store fails the sweep here, before any job runs
            self.tracker = Tracker(uri, config.tracking.experiment)
        except ElaError as err:
            print(f"[ela] {err}", file=sys.stderr)
            sys.exit(2)
        overrides = " ".join(hydra_cfg.overrides.task)
        key = sweep_key(list(hydra_cfg.overrides.task))
        self.parent_id = self._resumable(key) if config.get("resume") else None
        if self.parent_id is None:
            self.parent_id = self.tracker.start_run(
                name=str(
                    self.sweep_dir.relative_to("multirun") if self.sweep_dir.parts[0] == "multirun" else self.sweep_dir
                ),
                tags={
                    "ela.run_kind": "sweep",
                    "ela.sweep_key": key,
                    "ela.sweep_dir": str(self.sweep_dir.resolve()),
                    "ela.overrides": overrides,
                    **environment_tags(),
                },
            )
        os.environ[PARENT_ENV] = self.parent_id  # inherited by launcher worker processes
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / "ela_sweep.json").write_text(
            json.dumps({"parent_run_id": self.parent_id, "tracking_uri": uri, "overrides": overrides}, indent=2)
        )
        print(f"[ela] sweep {self.parent_id[:8]} -> {uri} (experiment '{config.tracking.experiment}')", flush=True)

    def _resumable(self, key: str) -> str | None:
        """resume=true: fail dead processes' RUNNING runs, then reopen the latest sweep with the same grid."""
        assert self.tracker is not None
        stale = self.tracker.fail_stale_runs(socket.gethostname())
        if stale:
            print(f"[ela] resume: marked {len(stale)} run(s) of dead processes FAILED", flush=True)
        previous = self.tracker.client.search_runs(
            [self.tracker.experiment_id],
            f"tags.`ela.run_kind` = 'sweep' and tags.`ela.sweep_key` = '{key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not previous:
            return None
        run_id = previous[0].info.run_id
        self.tracker.client.update_run(run_id, status="RUNNING")
        print(f"[ela] resume: continuing sweep {previous[0].info.run_name} ({run_id[:8]})", flush=True)
        return run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.tracker is None or self.parent_id is None:
            return
        runs = latest_per_job(self.tracker.children(self.parent_id))
        if not runs and config.get("resume"):
            # Every job was skipped: all already FINISHED (in an earlier sweep of a larger grid).
            print(f"\n[ela] sweep {self.parent_id[:8]}: nothing to run, every job already FINISHED", flush=True)
            self.tracker.set_tags(self.parent_id, {"ela.resume": "nothing to run: every job already FINISHED"})
            self.tracker.end_run(self.parent_id, "FINISHED")
            os.environ.pop(PARENT_ENV, None)
            return
        table = runs_table(runs)
        finished = int((table["status"] == "FINISHED").sum()) if len(table) else 0
        failed = len(table) - finished
        text = format_table(table) if len(table) else "(no jobs)"
        print(f"\n[ela] sweep {self.parent_id[:8]}: {finished} finished, {failed} failed\n{text}", flush=True)
        self.tracker.log_metrics(self.parent_id, {"jobs_finished": finished, "jobs_failed": failed})
        self.tracker.set_tags(self.parent_id, {"ela.jobs_finished": finished, "ela.jobs_failed": failed})
        self.tracker.log_files(self.parent_id, {"summary.csv": table.to_csv(index=False), "summary.txt": text + "\n"})
        if self.sweep_dir is not None:
            table.to_csv(self.sweep_dir / "summary.csv", index=False)
        # A sweep with failed jobs is FAILED in MLflow and exits non-zero; its finished runs stay FINISHED.
        self.tracker.end_run(self.parent_id, "FINISHED" if failed == 0 and finished else "FAILED")
        os.environ.pop(PARENT_ENV, None)
        if failed or not finished:
            sys.exit(1)
