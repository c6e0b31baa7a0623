"""The status line a person watches: place in the sweep, phase, how far through it, and the ETA."""

from ela.job.progress import JOBS_ENV, START_ENV, Progress, eta_text


def test_eta_from_the_jobs_before_this_one():
    assert eta_text(0, 6, 100.0, 160.0) == ""  # the first job: nothing to estimate from yet
    assert eta_text(2, 6, 100.0, 160.0) == "ETA 2 min"  # 30 s a job, 4 jobs to go
    assert eta_text(5, 6, 100.0, 150.0) == "ETA 10 s"
    assert eta_text(2, None, 100.0, 160.0) == ""  # not a sweep


def test_the_line_reads_as_the_issue_asks(monkeypatch):
    monkeypatch.setenv(JOBS_ENV, "6")
    monkeypatch.setenv(START_ENV, "1000")
    p = Progress("fp16-b8-s0", position=2, clock=lambda: 1360.0)
    p.phase("window 2/3")
    p.tick(0.41)
    assert p.text() == "job 3/6 fp16-b8-s0 · window 2/3 · 41% · ETA 12 min"
    p.phase("score")
    assert p.text() == "job 3/6 fp16-b8-s0 · score · ETA 12 min"  # no stray comma, no stale percentage
    p.close()


def test_a_single_run_has_no_place_in_a_sweep(monkeypatch):
    monkeypatch.delenv(JOBS_ENV, raising=False)
    p = Progress("fp32-b8-s0")
    p.phase("latency passes")
    assert p.text() == "fp32-b8-s0 · latency passes"
    p.close()


def test_a_job_reports_its_phases_and_fractions(tmp_path):
    from conftest import FAST, compose_job

    from ela.job import measure_job

    phases, fractions = [], []

    class Recorder:
        def phase(self, name):
            phases.append(name)

        def tick(self, fraction):
            fractions.append(fraction)

    measure_job(compose_job(*FAST, "codecarbon.enabled=false"), tmp_path, Recorder())
    assert phases == [
        "queued for the CPU",
        "device and meters set-up",
        "load",
        "engine setup (eager)",
        "idle power",
        "warm-up",
        "latency passes",
        "window 1/1",
        "score",
    ]
    assert fractions and all(f >= 0 for f in fractions)  # drawn between passes while the passes ran
