"""`python -m ela.analyze`: analyse a sweep from MLflow (ela.analysis) and write tables, plots and a report.

python -m ela.analyze                          # the latest sweep in ./mlflow.db, experiment 'ela'
python -m ela.analyze sweep=<parent run id|name> tolerance=0.99 max_latency_ms=5 min_accuracy=0.9
"""

from __future__ import annotations

import sys
from dataclasses import fields

import hydra
from omegaconf import DictConfig, OmegaConf

from ela import ElaError
from ela.analysis.pipeline import AnalyzeConfig, analyze, output_dir
from ela.cli import check_keys

KEYS = [f.name for f in fields(AnalyzeConfig)]


def run(cfg: AnalyzeConfig) -> int:
    """Analyse, write the files, log them to the sweep's parent run; the exit code."""
    from ela.analysis.report import summary_text, write_outputs

    try:
        result, tracker = analyze(cfg)
        out = output_dir(cfg, result.parent)
        files = write_outputs(result, out)
        if cfg.log_to_mlflow:
            tracker.client.log_artifacts(result.parent.info.run_id, str(out), artifact_path="analysis")
    except ElaError as err:
        print(f"ela.analyze: {err}", file=sys.stderr)
        return 2
    print(summary_text(result))
    print(
        f"\n[ela] {len(files)} files in {out}"
        + (" (also logged to the sweep's parent run)" if cfg.log_to_mlflow else "")
    )
    return 0


@hydra.main(
    version_base="1.3", config_path="../conf/analysis", config_name="analyze"
)  # apart: ela.run's groups (experiment/) would shadow its keys
def _main(cfg: DictConfig) -> None:
    options = OmegaConf.to_container(cfg, resolve=True)
    code = run(AnalyzeConfig(**{k: options[k] for k in KEYS}))
    if code:
        sys.exit(code)


def main() -> None:
    """CLI entry point: ela's own check of the keys (with a suggestion), then Hydra."""
    check_keys("ela.analyze", sys.argv[1:], KEYS)
    _main()


if __name__ == "__main__":
    main()
