"""`mlflow ui` shows a sweep: a real server on 127.0.0.1, rendered by headless Chromium."""

import os
import re
import shutil
import subprocess

import pytest
from conftest import PARENT, all_runs, free_port, mlflow_cli, start_server
from test_analyze import analyze, small_sweep

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("ELA_REQUIRE_CHROMIUM"), reason="needs Debian's chromium"
    ),
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep of its own, one seed: test_analyze's may be analysed at the same time on another pytest-xdist worker."""
    return small_sweep(tmp_path_factory.mktemp("ui"), "0")


@pytest.fixture(scope="module")
def ui(swept, tmp_path_factory):
    assert analyze(swept).returncode == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = f"sqlite:///{swept / 'mlflow.db'}"
    cmd = [mlflow_cli(), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    proc = start_server(cmd, url, swept)
    yield url, tmp_path_factory.mktemp("chromium")
    proc.terminate()
    proc.wait(timeout=30)


def chromium(profile, *args: str, width: int = 1400) -> str:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=20000", f"--window-size={width},900",
    ]  # fmt: skip
    out = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    return re.sub(r"<[^>]+>", "", out.stdout)  # the page's text, as a reader sees it


def page_text(profile, url: str, width: int = 1400) -> str:
    """The page's text after its scripts ran, as a reader sees it (the runs grid renders only the columns in view)."""
    return chromium(profile, "--dump-dom", url, width=width)


def sweep_runs(swept):
    """All runs of the analysed sweep and its parent run."""
    runs = all_runs(swept)
    return runs, next(r for r in runs if PARENT not in r.data.tags)


def note_link(note: str, label: str) -> str:
    """The target of the Markdown link `[label](...)` in a run's description."""
    return note.split(f"[{label}](", 1)[1].split(")", 1)[0]


def test_runs_page_lists_the_sweep_and_the_run_page_shows_its_measured_values(ui, swept):
    url, profile = ui
    from ela.tracking.report import runs_page, view_key

    runs, parent = sweep_runs(swept)
    exp = parent.info.experiment_id
    link = runs_page(url, exp, view_key(parent.info.run_id))  # as the sweep prints it
    text = page_text(profile / "a", link, width=2600)
    # The classic view (MLflow's UI otherwise opens in GenAI) with the sweep's saved view: its jobs flat, with
    # the dataset they evaluated, the params the sweep varied and the figures as columns, lowest energy first.
    assert f"{len(runs) - 1} matching runs" in text and "Model training" in text and "Judges" not in text
    assert "shared view" in text and "bf16-b16-s0" in text and "sst2" in text
    for column in ("precision.name", "batch", "accuracy"):  # the params the sweep varied (one seed: not seed)
        assert column in text, column
    assert "precision.weights_dtype" not in text  # a group's choice shows as its name, not as each field
    jobs = sorted((r for r in runs if PARENT in r.data.tags), key=lambda r: r.data.metrics["energy_j_per_sample"])
    listed = sorted(jobs, key=lambda r: text.index(r.info.run_name))
    assert [r.info.run_name for r in listed] == [r.info.run_name for r in jobs]
    chromium(profile / "b", f"--screenshot={swept / 'ui_runs.png'}", link)
    classic = "?workflowType=machine_learning"
    assert (swept / "ui_runs.png").stat().st_size > 10_000
    child = next(r for r in runs if r.info.run_name == "bf16-b4-s0")
    text = page_text(profile / "c", f"{url}/#/experiments/{exp}/runs/{child.info.run_id}{classic}")
    m, t = child.data.metrics, child.data.tags
    # What a person looks for on a run page: the run, its figures as logged, how they were measured, its data.
    assert "bf16-b4-s0" in text
    for name in ("accuracy", "cost_ms_per_sample", "energy_j_per_sample", "batch_latency_ms_p90"):
        assert f"{name}{m[name]}" in text.replace(" ", ""), name
    assert t["ela.method.energy"] in text and t["ela.verdict"] in text
    assert child.inputs.dataset_inputs[0].dataset.name == "sst2" and "sst2" in text  # the dataset it evaluated


def test_the_sweeps_run_page_describes_it_and_links_its_jobs(ui, swept):
    url, profile = ui
    runs, parent = sweep_runs(swept)
    page = f"{url}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning"
    text = page_text(profile / "f", page)
    assert f"ela sweep {parent.info.run_name}" in text and "4 finished, 0 failed" in text
    assert "jobs_finished" in text and "best_energy_j_per_sample" in text
    assert parent.data.metrics["best_energy_j_per_sample"] == min(
        r.data.metrics["energy_j_per_sample"] for r in runs if PARENT in r.data.tags
    )
    note = parent.data.tags["mlflow.note.content"]
    compared = page_text(profile / "g", f"{url}/{note_link(note, 'Compare these runs')}")
    assert "Comparing 4 Runs" in compared and "bf16-b16-s0" in compared
    listed = page_text(profile / "h", f"{url}/{note_link(note, 'List these jobs with their figures')}")
    assert "4 matching runs" in listed and "shared view" in listed and "precision.name" in listed


def test_the_analysis_report_is_served_rendered_on_the_parent_run(ui, swept):
    import urllib.parse
    import urllib.request

    url, profile = ui
    _, parent = sweep_runs(swept)
    page = f"{url}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}/artifacts/analysis/report.html"
    text = page_text(profile / "d", page)
    assert "analysis/report.html" in text and "summary.csv" in text  # the artifact tree the page lists
    # The page shows the report in an iframe fed by this request: its content is the rendered report.
    query = urllib.parse.urlencode({"path": "analysis/report.html", "run_uuid": parent.info.run_id})
    html = urllib.request.urlopen(f"{url}/get-artifact?{query}", timeout=30).read().decode()
    assert f"ela report: sweep {parent.info.run_name}" in html and "data:image/png;base64," in html
    for config in ("fp32-b4", "bf16-b16"):
        assert f"<td>{config}</td>" in html
    chromium(profile / "e", f"--screenshot={swept / 'ui_report.png'}", page)
    assert (swept / "ui_report.png").stat().st_size > 10_000
