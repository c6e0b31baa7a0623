"""Hydra callback: one MLflow parent run per multirun, created before any job; closed with counts.

Any failure to create or close the parent run stops the sweep (or sets its exit code) with one line:
a sweep never runs its jobs without a parent, nor exits 0 with its parent left RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ela import ElaError, interrupt
from ela.runtime.device import note_launch_threads
from ela.tracking.environment import environment_tags
from ela.tracking.report import (
    SHARED_VIEW_TAG,
    best_metrics,
    format_table,
    runs_page,
    runs_table,
    saved_view,
    sweep_description,
    view_key,
)
from ela.tracking.store import PARENT_ENV, Tracker, one_line, tracking_uri

_active: SweepCallback | None = None
NOTE = "mlflow.note.content"  # MLflow shows this tag as the run's description (Markdown)
CLOSE_WAIT_S = 20.0  # after a stop request: how long workers get to close their own runs KILLED


def active() -> SweepCallback | None:
    """The callback of the sweep running in this process (the sweeper reports to it), if any."""
    return _active


def sweep_key(overrides: list[str]) -> str:
    """The grid a sweep runs, independent of resume= and of the order of the overrides and of a list's values."""
    return " ".join(sorted(_one_order(o) for o in _grid(overrides)))


def same_grid(stored: str, key: str, overrides: list[str]) -> bool:
    """Whether a parent run's stored key is this grid's: the same key, or one stored before values were sorted."""
    if stored in (key, " ".join(sorted(_grid(overrides)))):
        return True
    pieces = stored.split(" ")  # an old key split back into overrides, only where no value can hold a space
    return all("=" in p for p in pieces) and not any(c in stored for c in _NOT_PLAIN) and sweep_key(pieces) == key


_NOT_PLAIN = "[]{}()'\"\\"  # a value with any of these is a list, a quoted string or a function: kept as given


def _grid(overrides: list[str]) -> list[str]:
    """The overrides that choose the jobs (resume= only says whether to skip finished ones)."""
    return [o for o in overrides if not o.lstrip("+~").startswith("resume=")]


def _one_order(override: str) -> str:
    """`batch=64,8,1` -> `batch=1,8,64`: a plain comma list's values sorted (lists, quotes, functions kept as given)."""
    name, eq, values = override.partition("=")
    if not eq or any(c in values for c in _NOT_PLAIN):
        return override
    return f"{name}={','.join(sorted(values.split(','), key=_numbers_first))}"


def _numbers_first(value: str) -> tuple[bool, float, str]:
    """Numbers in numeric order (1, 8, 64), then words in alphabetical order."""
    try:
        number = float(value)
    except ValueError:
        return True, 0.0, value
    return (False, number, value) if math.isfinite(number) else (True, 0.0, value)  # nan, inf: as words


def latest_per_job(runs: list) -> list:
    """One run per job (ela.run_hash): its FINISHED run if it has one, else its latest attempt."""
    best: dict[str, Any] = {}
    for run in runs:  # oldest first
        key = run.data.tags.get("ela.run_hash", run.info.run_id)
        if key not in best or best[key].info.status != "FINISHED":
            best[key] = run
    return list(best.values())


def _fail(what: str, err: BaseException) -> None:
    """One line and exit 2: a store fault at sweep level is never a Hydra warning."""
    message = str(err) if isinstance(err, ElaError) else f"{type(err).__name__}: {one_line(err)}"
    print(f"[ela] sweep stopped: could not {what}: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


class SweepCallback(Callback):
    """Creates the store and the parent run up front (no concurrent first creation), reports at the end."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_id: str | None = None
        self.sweep_dir: Path | None = None
        self.unlogged: list[str] = []  # jobs that failed before they had a run (the sweeper reports them)
        self.created = False
        self.resumed_status = "FINISHED"  # the status a resumed parent had before this sweep reopened it

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Open the store and create (or, with resume=true, reopen) the sweep's parent run."""
        global _active
        try:
            self._start(config)
        except SystemExit:
            raise
        except BaseException as err:  # noqa: BLE001 - Hydra would only warn and launch every job parentless
            _fail("open the MLflow store or create the sweep's run", err)
        _active = self

    def _start(self, config: DictConfig) -> None:
        hydra_cfg = config.hydra
        self.sweep_dir = Path(str(hydra_cfg.sweep.dir))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / interrupt.STOP_FILE).unlink(missing_ok=True)  # a resumed sweep starts afresh
        interrupt.install(self.sweep_dir)  # this process runs the sweep: a signal stops the whole sweep
        uri = tracking_uri(config.tracking.uri, hydra_cfg.runtime.cwd)
        self.tracker = Tracker(uri, config.tracking.experiment)
        overrides = " ".join(hydra_cfg.overrides.task)
        note_launch_threads()  # before the launcher starts a worker: its CPU jobs compute with this process's threads
        key = sweep_key(list(hydra_cfg.overrides.task))
        self.parent_id = self._resumable(key, list(hydra_cfg.overrides.task)) if config.get("resume") else None
        self.created = self.parent_id is None  # a resumed sweep's parent holds earlier runs: never deleted
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
                    **({"ela.experiment": str(p)} if (p := hydra_cfg.runtime.choices.get("experiment")) else {}),
                    **environment_tags(),
                },
            )
        os.environ[PARENT_ENV] = self.parent_id  # inherited by launcher worker processes
        (self.sweep_dir / "ela_sweep.json").write_text(
            json.dumps({"parent_run_id": self.parent_id, "tracking_uri": uri, "overrides": overrides}, indent=2)
        )
        print(f"[ela] sweep {self.parent_id[:8]} -> {uri} (experiment '{config.tracking.experiment}')", flush=True)

    def _resumable(self, key: str, overrides: list[str]) -> str | None:
        """resume=true: fail dead processes' RUNNING runs, then reopen the latest sweep with the same grid."""
        assert self.tracker is not None
        stale = self.tracker.fail_stale_runs(socket.gethostname())
        if stale:
            print(f"[ela] resume: marked {len(stale)} run(s) of dead processes FAILED", flush=True)
        sweeps = self.tracker.client.search_runs(
            [self.tracker.experiment_id], "tags.`ela.run_kind` = 'sweep'", order_by=["attributes.start_time DESC"]
        )  # compared here, not in the filter: a key stored before values were sorted still matches its grid
        previous = [r for r in sweeps if same_grid(r.data.tags.get("ela.sweep_key", ""), key, overrides)]
        if not previous:
            return None
        run_id = previous[0].info.run_id
        self.resumed_status = previous[0].info.status
        self.tracker.client.update_run(run_id, status="RUNNING")
        print(f"[ela] resume: continuing sweep {previous[0].info.run_name} ({run_id[:8]})", flush=True)
        return run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Table of the jobs, counts on the parent run, parent FAILED (and exit 1) if any job did not finish."""
        global _active
        _active = None
        if self.tracker is None or self.parent_id is None:
            return
        try:
            failed = self._end(config)
        except SystemExit:
            raise
        except BaseException as err:  # noqa: BLE001 - e.g. a disk I/O error: never exit 0 with the parent open
            with contextlib.suppress(Exception):  # its status is an update in place: it may fit where the report didn't
                self.tracker.end_run(self.parent_id, "FAILED")
            _fail("close the sweep's run", err)
        os.environ.pop(PARENT_ENV, None)
        if failed:
            sys.exit(1)

    def _end(self, config: DictConfig) -> bool:
        assert self.tracker is not None and self.parent_id is not None
        # Every job has returned: a child still RUNNING lost its process (killed, or crashed in C).
        for run_id in self.tracker.close_running_children(
            self.parent_id, "FAILED", "its process ended before it could close this run"
        ):
            print(f"[ela] run {run_id[:8]} was left RUNNING by a process that ended: marked FAILED", flush=True)
        runs = latest_per_job(self.tracker.children(self.parent_id))
        if not runs and config.get("resume"):
            # Every job was skipped: all already FINISHED (in an earlier sweep of a larger grid).
            print(f"\n[ela] sweep {self.parent_id[:8]}: nothing to run, every job already FINISHED", flush=True)
            self.tracker.set_tags(self.parent_id, {"ela.resume": "nothing to run: every job already FINISHED"})
            self.tracker.end_run(self.parent_id, "FINISHED")
            return False
        finished, failed = self._report(runs)
        # A sweep with failed jobs is FAILED in MLflow and exits non-zero; its finished runs stay FINISHED.
        self.tracker.end_run(self.parent_id, "FINISHED" if failed == 0 and finished else "FAILED")
        return bool(failed or not finished)

    def _report(self, runs: list) -> tuple[int, int]:
        """Print and log the table of the sweep's jobs; return (finished, not finished)."""
        assert self.tracker is not None and self.parent_id is not None
        table = runs_table(runs)
        counts = table["status"].value_counts() if len(table) else pd.Series(dtype=int)
        finished, killed = int(counts.get("FINISHED", 0)), int(counts.get("KILLED", 0))
        failed = len(table) - finished - killed + len(self.unlogged)
        text = format_table(table) if len(table) else "(no jobs)"
        summary = f"{finished} finished, {failed} failed" + (f", {killed} killed" if killed else "")
        print(f"\n[ela] sweep {self.parent_id[:8]}: {summary}\n{text}", flush=True)
        for line in self.unlogged:
            print(f"[ela] not in the table (it has no run): {line}", flush=True)
        counted = {"jobs_finished": finished, "jobs_failed": failed, "jobs_killed": killed}
        self.tracker.log_metrics(self.parent_id, {**counted, **best_metrics(runs)})
        name = self.tracker.client.get_run(self.parent_id).info.run_name
        key, experiment = view_key(self.parent_id), self.tracker.experiment_id
        self.tracker.client.set_experiment_tag(experiment, SHARED_VIEW_TAG + key, saved_view(runs, self.parent_id))
        description = sweep_description(name, runs, experiment, summary, key)
        self.tracker.set_tags(self.parent_id, {**{f"ela.{k}": v for k, v in counted.items()}, NOTE: description})
        self.tracker.log_files(self.parent_id, {"summary.csv": table.to_csv(index=False), "summary.txt": text + "\n"})
        print(f"[ela] browse: {runs_page(self.tracker.uri, experiment, key)}", flush=True)
        if self.sweep_dir is not None:
            table.to_csv(self.sweep_dir / "summary.csv", index=False)
        return finished, failed + killed

    def has_run(self, overrides: list[str]) -> bool:
        """Whether a job with these overrides created its run in this sweep (it may have died after)."""
        assert self.tracker is not None and self.parent_id is not None
        wanted = " ".join(overrides)
        return any(r.data.tags.get("ela.overrides") == wanted for r in self.tracker.children(self.parent_id))

    def discard(self, reason: str) -> None:
        """The grid is invalid and no job ran: delete the parent run so no empty sweep is left behind."""
        global _active
        _active = None
        if self.tracker is not None and self.parent_id is not None and not self.created:
            self.tracker.end_run(self.parent_id, self.resumed_status)  # a resumed sweep: back as it was
        elif self.tracker is not None and self.parent_id is not None:
            try:
                self.tracker.set_tags(self.parent_id, {"ela.error": reason})
                self.tracker.client.delete_run(self.parent_id)
            except Exception as err:  # noqa: BLE001
                print(f"[ela] could not delete the sweep's run: {one_line(err)}", file=sys.stderr, flush=True)
        os.environ.pop(PARENT_ENV, None)

    def interrupted(self, signum: int) -> None:
        """A stop request: let workers close their runs, close what they could not, end the parent KILLED, exit."""
        global _active
        _active = None
        name = interrupt.signal_name(signum)
        try:
            assert self.tracker is not None and self.parent_id is not None
            deadline = time.monotonic() + CLOSE_WAIT_S
            while time.monotonic() < deadline and any(
                r.info.status == "RUNNING" for r in self.tracker.children(self.parent_id)
            ):
                time.sleep(0.5)
            left = self.tracker.close_running_children(
                self.parent_id, "KILLED", f"{name}: its process ended before it could close this run"
            )
            self._report(latest_per_job(self.tracker.children(self.parent_id)))
            self.tracker.set_tags(self.parent_id, {"ela.error": f"sweep interrupted ({name})"})
            self.tracker.end_run(self.parent_id, "KILLED")
        except Exception as err:  # noqa: BLE001
            _fail(f"close the sweep's runs after {name}", err)
        extra = f"; closed {len(left)} run(s) its workers left open" if left else ""
        print(f"[ela] sweep {self.parent_id[:8]} KILLED ({name}){extra}", file=sys.stderr, flush=True)
        os.environ.pop(PARENT_ENV, None)
        sys.exit(interrupt.exit_code(signum))
