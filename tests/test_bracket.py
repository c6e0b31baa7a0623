"""benchmarks/headline.sh's hand loop around each job (overhead.HandAfterJob), in a real sweep on CPU."""

from __future__ import annotations

import csv
import os

from conftest import FAST, REPO, run_ela


def test_the_bracketing_hand_loop_skips_the_jobs_that_resume_skips(tmp_path):
    # BRACKET=true with resume=true measured by hand before a job that ela then skipped (~10 s a job on a GPU).
    hand_csv = tmp_path / "hand.csv"
    hand = ["+hydra.callbacks.hand._target_=overhead.HandAfterJob", f"+hydra.callbacks.hand.csv={hand_csv}",
            "+hydra.callbacks.hand.window_s=0.1", "+hydra.callbacks.hand.windows=1",
            "+hydra.callbacks.hand.before=true", "codecarbon.enabled=false", "measure.trace=false"]  # fmt: skip
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")) if p)}
    first = run_ela(tmp_path, "precision=fp32", "batch=8", *FAST, *hand, extra_env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[hand] before fp32-b8-s0: cost" in first.stdout and "[hand] fp32-b8-s0: cost" in first.stdout
    with open(hand_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["before_cost_ms_per_sample"]) > 0

    again = run_ela(tmp_path, "precision=fp32", "batch=8", *FAST, *hand, "resume=true", extra_env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "SKIPPED: already FINISHED" in again.stdout
    assert "[hand]" not in again.stdout  # neither before nor after a job that did not run
    with open(hand_csv, newline="") as f:
        assert len(list(csv.DictReader(f))) == 1
