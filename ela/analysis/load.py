"""A sweep's runs from MLflow: find its parent run, and its children as a DataFrame with typed params."""

from __future__ import annotations

import pandas as pd

from ela import ElaError
from ela.tracking.store import PARENT_TAG, Tracker
from ela.tracking.sweep import latest_per_job


def find_sweep(tracker: Tracker, sweep: str):
    """The parent run of a sweep by id, name or `latest`; a clear error otherwise."""
    parents = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`ela.run_kind` = 'sweep'", order_by=["attributes.start_time DESC"]
    )
    if not parents:
        raise ElaError(
            f"experiment has no sweeps in {tracker.uri}; run one first: python -m ela.run -m precision=fp32,bf16"
        )
    if sweep == "latest":
        return parents[0]
    for p in parents:
        if sweep in (p.info.run_id, p.info.run_name):
            return p
    known = ", ".join(f"{p.info.run_name} ({p.info.run_id[:8]})" for p in parents[:5])
    raise ElaError(f"no sweep {sweep!r} in this experiment; recent sweeps: {known}")


def cast(value: object) -> object:
    """An MLflow param (always text) back to the int, float, bool or None it was logged from."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "true": True, "false": False, "None": None}.get(value, value)


def load_runs(tracker: Tracker, parent_id: str, extra_filter: str | None) -> tuple[pd.DataFrame, int]:
    """The sweep's jobs, one row each (metrics by name, `params.*` typed, `tags.*`), and the attempts left out.

    A job that `resume=true` ran again counts once, by its FINISHED run (as the sweep's own table counts it),
    not also as the attempt a stop or a crash ended.
    """
    query = f"tags.`{PARENT_TAG}` = '{parent_id}'" + (f" and {extra_filter}" if extra_filter else "")
    found = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=query, max_results=50000, order_by=["attributes.start_time ASC"]
    )
    runs = latest_per_job(found)
    rows = []
    for r in runs:
        row = {"run_id": r.info.run_id, "status": r.info.status, "start_time": r.info.start_time}
        row.update(r.data.metrics)
        row.update({f"params.{k}": cast(v) for k, v in r.data.params.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows), len(found) - len(runs)
