"""One job: claim the device, measure (`pipeline`), then score what was measured (`score`)."""

from ela.job.pipeline import JobOutcome, measure_job

__all__ = ["JobOutcome", "measure_job"]
