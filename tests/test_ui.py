"""`mlflow ui` shows a sweep: a real server on 127.0.0.1, rendered by headless Chromium."""

import os
import re
import shutil
import subprocess

import pytest
from conftest import PARENT, all_runs, client, free_port, mlflow_cli, start_server
from test_analyze import analyze, swept  # noqa: F401 - reuse the analysed sweep

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("ELA_REQUIRE_CHROMIUM"), reason="needs Debian's chromium"
)


@pytest.fixture(scope="module")
def ui(swept, tmp_path_factory):  # noqa: F811
    assert analyze(swept).returncode == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = f"sqlite:///{swept / 'mlflow.db'}"
    cmd = [mlflow_cli(), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    proc = start_server(cmd, url, swept)
    yield url, tmp_path_factory.mktemp("chromium")
    proc.terminate()
    proc.wait(timeout=30)


def chromium(profile, *args: str) -> str:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--window-size=1400,900",
    ]  # fmt: skip
    out = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    return re.sub(r"<[^>]+>", "", out.stdout)  # the page's text, as a reader sees it


def test_runs_page_shows_the_sweep(ui, swept):  # noqa: F811
    url, profile = ui
    exp = client(swept).get_experiment_by_name("ela").experiment_id
    dom = chromium(profile / "a", "--dump-dom", f"{url}/#/experiments/{exp}/runs")
    assert "9 matching runs" in dom  # the parent and its 8 children
    chromium(profile / "b", f"--screenshot={swept / 'ui_runs.png'}", f"{url}/#/experiments/{exp}/runs")
    assert (swept / "ui_runs.png").stat().st_size > 10_000


def test_child_run_and_report_are_shown(ui, swept):  # noqa: F811
    url, profile = ui
    runs = all_runs(swept)
    exp = runs[0].info.experiment_id
    child = next(r for r in runs if r.info.run_name == "bf16-b4-s0")
    dom = chromium(profile / "c", "--dump-dom", f"{url}/#/experiments/{exp}/runs/{child.info.run_id}")
    assert "bf16-b4-s0" in dom and "energy_j_per_sample" in dom
    parent = next(r for r in runs if PARENT not in r.data.tags)
    page = f"{url}/#/experiments/{exp}/runs/{parent.info.run_id}/artifacts/analysis/report.html"
    dom = chromium(profile / "d", "--dump-dom", page)
    assert "report.html" in dom and "plots" in dom
    chromium(profile / "e", f"--screenshot={swept / 'ui_report.png'}", page)
