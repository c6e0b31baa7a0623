"""One source for every name: the README's tables are ela.schema's, and a real job logs only schema names."""

from conftest import LOCAL, REPO

from ela import schema
from ela.columns import COLUMNS
from ela.config import validate


def test_readme_tables_are_the_schemas():
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- schema:begin -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert block.strip() == schema.tables().strip(), (
        "README out of date: paste `python -m ela.schema` between the markers"
    )


def test_every_table_column_is_a_schema_metric():
    from ela.analysis.report import SUMMARY_METRICS
    from ela.tracking.report import TABLE_METRICS

    derived = {n for m in schema.DERIVED for n in m.names}
    assert set(TABLE_METRICS) <= schema.METRIC_NAMES
    assert set(SUMMARY_METRICS) <= schema.METRIC_NAMES | derived
    assert set(COLUMNS) <= schema.METRIC_NAMES | derived


def test_a_real_job_logs_only_schema_metrics(tmp_path):
    from hydra import compose, initialize_config_dir

    from ela.config import to_container
    from ela.job import measure_job

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*LOCAL, "dataset.limit=16", "measure.energy_meter=fake",
                                           "measure.idle_window_s=0.05", "measure.idle_max_settle_s=0",
                                           "measure.repeats=2", "precision=bf16"])  # fmt: skip
    out = measure_job(validate(to_container(cfg)), tmp_path)
    assert set(out.metrics) - {"job_wall_s"} <= schema.METRIC_NAMES, set(out.metrics) - schema.METRIC_NAMES
    assert set(out.files) <= set(schema.ARTIFACTS)
    phases = {f"phase_{p}_s": out.metrics.get(f"phase_{p}_s") for p in schema.PHASES}
    assert all(v is not None and v >= 0 for v in phases.values()), phases  # every phase of this job, timed
    assert phases["phase_windows_s"] >= 2 * out.metrics["energy_window_s"] * 0.99  # the 2 windows are in it
    assert out.metrics["samplers_s"] > 0  # CodeCarbon's sampler started and stopped, outside every phase
    assert out.metrics["device_setup_s"] > 0  # the device chosen and checked, the meter opened, before the load
    prefixes = tuple(t.name.rstrip("*") for t in schema.TAGS)
    assert all(k.startswith(prefixes) for k in out.tags), [k for k in out.tags if not k.startswith(prefixes)]
