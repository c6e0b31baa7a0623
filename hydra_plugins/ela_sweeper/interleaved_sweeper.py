"""ela's sweeper: Hydra's basic grid with repetitions interleaved, configs validated first, stops clean.

Hydra's basic sweeper varies the last override fastest, so `precision=fp32,bf16 seed=0,1,2` runs each
configuration three times in a row and slow drift of the machine (clocks, temperature, neighbours)
looks like a difference between configurations. Here the repetition key (`seed`) is outermost: every
configuration runs once before any runs twice; `shuffle=true` also shuffles the configurations
within each repetition, with a fixed seed.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf, open_dict

from ela import ElaError, interrupt
from ela.job.progress import JOBS_ENV, START_ENV
from ela.tracking.identity import AXES_ENV


class InterleavedSweeper(BasicSweeper):
    """BasicSweeper whose job order puts `repeat_key` outermost (optionally shuffled within a repetition)."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        repeat_key: str = "seed",
        shuffle: bool = False,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.repeat_key, self.shuffle, self.shuffle_seed = repeat_key, shuffle, shuffle_seed

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        """The grid as job override lists, repetition outermost, in batches of max_batch_size."""
        (jobs,) = BasicSweeper.split_arguments(overrides, None)
        ordered = interleave(jobs, self.repeat_key, self.shuffle, self.shuffle_seed)
        os.environ[JOBS_ENV], os.environ[START_ENV] = str(len(ordered)), str(time.time())  # progress lines, ETA
        # Run names carry every swept key, so two jobs differing only in, say, attention are told apart.
        os.environ[AXES_ENV] = ",".join(o.get_key_element() for o in overrides if o.is_sweep_override())
        return list(BasicSweeper.split_overrides_to_chunks(ordered, max_batch_size))

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Hydra's check that each job's config composes, then ela's validation of it.

        Bad values stop the sweep before any job starts (a typo in the third value must not fail the
        sweep an hour in).
        """
        super().validate_batch_is_legal(batch)
        from ela.config import validate

        assert self.hydra_context is not None and self.config is not None
        shared = set.intersection(*(set(o) for o in batch)) if batch else set()
        for overrides in batch:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                del cfg["hydra"]
            try:
                validate(OmegaConf.to_container(cfg, resolve=True))
            except ElaError as err:
                varying = " ".join(o for o in overrides if o not in shared) or " ".join(overrides)
                raise ElaError(f"job {varying}: {err}") from err

    def sweep(self, arguments: list[str]) -> Any:
        """Run the grid; an invalid job config or a stop request ends the sweep with its runs closed."""
        from ela.tracking.sweep import active

        try:
            returns = super().sweep(arguments)
        except ElaError as err:
            if (cb := active()) is not None:
                cb.discard(str(err))
            print(f"[ela] sweep not started: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        except BaseException:
            if interrupt.received() is None or (cb := active()) is None:
                raise
            cb.interrupted(interrupt.received())  # exits
            raise
        if interrupt.received() is not None and (cb := active()) is not None:
            cb.interrupted(interrupt.received())  # exits
        if (cb := active()) is not None:  # failures that could not even create their run (a full disk)
            for batch in returns:
                for r in batch:
                    value = r.return_value if r.status.name == "COMPLETED" else None
                    if isinstance(value, dict) and value.get("status") == "FAILED" and not value.get("run_id"):
                        if value.get("process_died") and cb.has_run(r.overrides):  # its run is in the table
                            continue
                        cb.unlogged.append(f"job {' '.join(r.overrides)}: {value.get('error', '')}")
        return returns


def interleave(jobs: list[list[str]], repeat_key: str, shuffle: bool, seed: int) -> list[list[str]]:
    """Reorder jobs so that `repeat_key` changes slowest: all configurations of repetition 0, then of 1, ...

    Jobs are override lists such as ["precision=fp32", "batch=8", "seed=1"]; without the key, the order
    is kept. With shuffle, each repetition's configurations are shuffled by random.Random(seed + index).
    """

    def rep(job: list[str]) -> str | None:
        return next((o.split("=", 1)[1] for o in job if o.split("=", 1)[0].lstrip("+~") == repeat_key), None)

    values = list(dict.fromkeys(rep(j) for j in jobs))  # in the order the grid gives them
    blocks = [[j for j in jobs if rep(j) == v] for v in values]
    if shuffle:
        for i, block in enumerate(blocks):
            random.Random(seed + i).shuffle(block)
    return list(itertools.chain.from_iterable(blocks))
