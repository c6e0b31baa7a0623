"""MLflow bookkeeping through MlflowClient: store, experiment, runs, params, metrics, artifacts."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ela import ElaError

PARENT_ENV = "ELA_PARENT_RUN_ID"  # set by the sweep callback so every launcher's jobs find their parent
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000
MAX_TAG_CHARS = 8000  # MLflow's limit for a tag value
RACES = ("already exists", "Online migration", "database is locked")  # a store another process is creating
RACE_RETRIES = 5


def quiet() -> None:
    """Silence MLflow's and alembic's INFO chatter (database migrations, run URLs)."""
    for name in ("mlflow", "alembic", "codecarbon", "urllib3", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING if name != "codecarbon" else logging.ERROR)
    # Store errors (a full disk) reach ela as exceptions, which it reports in one line; MLflow would also
    # log each one with its whole traceback.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri(configured: str | None, launch_dir: str | os.PathLike) -> str:
    """The configured URI, or `sqlite:///<launch dir>/mlflow.db` (absolute, so every job agrees)."""
    if configured:
        return configured
    return f"sqlite:///{Path(launch_dir).resolve() / 'mlflow.db'}"


def job_tracker(data: dict[str, Any], launch_dir: str | os.PathLike) -> Tracker:
    """The store a job's config names (`tracking.uri`, `tracking.experiment`), opened."""
    tracking = data.get("tracking", {})
    return Tracker(tracking_uri(tracking.get("uri"), launch_dir), tracking.get("experiment") or "ela")


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one short line (SQLAlchemy's carry the SQL and a link on further lines)."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_sqlite(path: Path) -> None:
    """Fail in milliseconds on a store SQLite can't open or write (MLflow would retry for ~100 s)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as con:
            con.execute("pragma schema_version").fetchone()
        if not os.access(path, os.W_OK):
            raise OSError(f"{path} is not writable")
    except (OSError, sqlite3.Error) as err:
        raise ElaError(
            f"cannot use the MLflow store sqlite:///{path}: {err}. Pass tracking.uri=sqlite:////a/writable/folder/"
            "mlflow.db (or set MLFLOW_TRACKING_URI)"
        ) from err


def create_sqlite_store(path: Path) -> None:
    """Create the SQLite store whole before anyone uses it.

    It is built under a temporary name, then linked into place only if no other process got there first
    (two processes migrating one new file collide with "table ... already exists").
    """
    from mlflow.tracking import MlflowClient

    if path.is_file() and path.stat().st_size > 0:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)  # runs the migrations
        with contextlib.suppress(FileExistsError):
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()  # an empty file is what sqlite3.connect above leaves: nothing to keep
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Tracker:
    """A thin, explicit wrapper of MlflowClient for one tracking URI and experiment."""

    def __init__(self, uri: str, experiment: str, create: bool = True) -> None:
        from mlflow.tracking import MlflowClient

        quiet()
        self.uri = uri
        if uri.startswith(("http://", "https://")):
            _check_reachable(uri)  # seconds, instead of MLflow's minutes of HTTP retries
        db = sqlite_path(uri)
        if not create and db is not None and not db.is_file():
            raise ElaError(f"no MLflow store at {uri}: run a sweep first, or pass its tracking URI")
        for attempt in range(RACE_RETRIES + 1):
            try:
                if db is not None:
                    existed = db.is_file() and db.stat().st_size > 0
                    check_sqlite(db)
                    if create and not existed:
                        create_sqlite_store(db)
                self.client = MlflowClient(tracking_uri=uri)
                exp = None if create else self.client.get_experiment_by_name(experiment)
                if not create and exp is None:
                    raise ElaError(f"no experiment {experiment!r} in {uri}")
                self.experiment_id = exp.experiment_id if exp else self._experiment(experiment)
                return
            except ElaError:
                raise
            except Exception as err:
                # Another program (an mlflow ui started on the same new file) may be creating the tables.
                if attempt < RACE_RETRIES and any(m in str(err) for m in RACES):
                    time.sleep(1.0)
                    continue
                raise ElaError(
                    f"cannot use MLflow tracking URI {uri!r}: {type(err).__name__}: {one_line(err)}"
                ) from err

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            # MLflow 3's UI opens GenAI views unless told this experiment holds model runs.
            tags = {"mlflow.experimentKind": "custom_model_development"}
            return self.client.create_experiment(name, artifact_location=self._artifact_root(name), tags=tags)
        except Exception:  # another process created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _artifact_root(self, experiment: str) -> str | None:
        """Artifacts of a SQLite store live beside its database (not in whatever folder ran first)."""
        if not self.uri.startswith("sqlite:///"):
            return None  # a tracking server decides where artifacts go
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
        return str(Path(self.uri.removeprefix("sqlite:///")).parent / "mlruns" / safe)

    def start_run(self, name: str, parent_id: str | None = None, tags: dict[str, str] | None = None) -> str:
        """Create a RUNNING run (a child of parent_id if given) and return its id."""
        tags = dict(tags or {})
        if parent_id:
            tags[PARENT_TAG] = parent_id
        # MLflow's run page lists tags in the order they were logged: sorted, each prefix stays together.
        run = self.client.create_run(self.experiment_id, run_name=name, tags=dict(sorted(tags.items())))
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log params in MLflow's batches of 100 (long values shortened)."""
        from mlflow.entities import Param

        items = [Param(k, _text(v, MAX_PARAM_CHARS)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        """Log metrics (None values left out) in batches of 1000."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        """Set tags in batches of 100 (long values shortened)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, _text(v, MAX_TAG_CHARS)) for k, v in sorted(tags.items())]  # grouped by prefix
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i : i + 100])

    def log_files(self, run_id: str, files: dict[str, str | bytes]) -> None:
        """Write {name: content} into a temporary folder and upload it as the run's artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                path = Path(tmp, name)
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
            self.client.log_artifacts(run_id, tmp)

    def log_dataset(self, run_id: str, name: str, source: str, table) -> None:
        """Log the evaluated split as the run's MLflow dataset input (with its digest, schema and source)."""
        import warnings

        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag

        origin = HTTPDatasetSource(source) if source.startswith(("http://", "https://")) else source
        with warnings.catch_warnings():  # MLflow warns about ambiguous local sources and integer columns
            warnings.simplefilter("ignore")
            dataset = from_pandas(table, source=origin, targets="label", name=name)
            entity = dataset._to_mlflow_entity()  # what mlflow.log_input logs; the client API takes entities
        tags = [InputTag("mlflow.data.context", "evaluation")]
        self.client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])

    def end_run(self, run_id: str, status: str) -> None:
        """End the run with this status (FINISHED, FAILED, KILLED)."""
        self.client.set_terminated(run_id, status=status)

    def finished_run(self, run_hash: str) -> str | None:
        """Id of a FINISHED run of this exact job (config and seed) in the experiment, if any."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`ela.run_hash` = '{run_hash}' and attributes.status = 'FINISHED'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def fail_stale_runs(self, host: str) -> list[str]:
        """Mark FAILED every RUNNING run started on this host by a process that no longer exists."""
        stale = []
        for run in self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=50000):
            tags = run.data.tags
            if tags.get("host.name") != host or not tags.get("ela.pid", "").isdigit() or _alive(int(tags["ela.pid"])):
                continue
            self.set_tags(run.info.run_id, {"ela.error": f"process {tags['ela.pid']} died while this run was RUNNING"})
            self.end_run(run.info.run_id, "FAILED")
            stale.append(run.info.run_id)
        return stale

    def close_running_children(self, parent_id: str, status: str, reason: str) -> list[str]:
        """End every child of parent_id still RUNNING (its process was killed before it could) with status."""
        closed = []
        for run in self.children(parent_id):
            if run.info.status == "RUNNING":
                self.set_tags(run.info.run_id, {"ela.error": reason})
                self.end_run(run.info.run_id, status)
                closed.append(run.info.run_id)
        return closed

    def children(self, parent_id: str):
        """All child runs of a parent, oldest first, as MLflow Run objects."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=50000,
        )


def _check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    url = urlparse(uri)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout_s):
            return
    except OSError as err:
        raise ElaError(
            f"cannot use MLflow tracking URI {uri!r}: no server answers there ({err}). Start it "
            "(mlflow server --host ...) or pass tracking.uri=sqlite:///path/to/mlflow.db"
        ) from err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _text(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
