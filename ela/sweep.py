"""Hydra callback: one MLflow parent run per multirun, created before any job; closed with counts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ela.environment import environment_tags
from ela.report import format_table, runs_table
from ela.tracking import PARENT_ENV, Tracker, tracking_uri


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
        self.tracker = Tracker(uri, config.tracking.experiment)
        overrides = " ".join(hydra_cfg.overrides.task)
        self.parent_id = self.tracker.start_run(
            name=str(
                self.sweep_dir.relative_to("multirun") if self.sweep_dir.parts[0] == "multirun" else self.sweep_dir
            ),
            tags={
                "ela.run_kind": "sweep",
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

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.tracker is None or self.parent_id is None:
            return
        runs = self.tracker.children(self.parent_id)
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
