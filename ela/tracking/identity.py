"""How runs are named and identified in MLflow: run names, config hashes, flattened params."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys that describe bookkeeping, not the measured work: excluded from the config hash.
BOOKKEEPING = ("seed", "resume", "gpus", "reuse_engines", "reuse_references", "tracking", "codecarbon", "hydra")
AXES_ENV = "ELA_SWEEP_AXES"  # the keys a sweep varies, set by its sweeper for every job's run name
NAMED = {"precision", "batch", "seed", "engine", "engine.name", "resume", "task", "task.name"}  # in every run name


def run_name(
    precision: str,
    batch: object,
    seed: object,
    engine: str = "eager",
    extra: tuple[str, ...] = (),
    task: str = "classification",
) -> str:
    """`fp16-b8-s0`, `fp16-b8-compile-s0`, `gen-fp16-b8-s0` (task=generation), `fp16-b8-attn_implementation=eager-s0`.

    extra: other swept keys as `key=value`.
    """
    middle = "".join(f"-{x}" for x in ([] if engine in ("eager", None) else [engine]) + list(extra))
    return f"{'gen-' if task == 'generation' else ''}{precision}-b{batch}{middle}-s{seed}"


def swept_labels(overrides: list[str], axes: str | None) -> tuple[str, ...]:
    """`key=value` (last part of the key) for each of this job's overrides that the sweep varies."""
    keys = set((axes or "").split(",")) - NAMED - {""}
    out = []
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key in keys:
            out.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return tuple(out)


def config_hash(data: dict[str, Any], with_seed: bool = False) -> str:
    """Hash of everything that defines the measured work: not bookkeeping, and not the seed unless asked.

    Without the seed it groups the seeds of one configuration; with it, it identifies one job (resume).
    """
    work = {k: v for k, v in data.items() if k not in BOOKKEEPING or (with_seed and k == "seed")}
    if work.get("task") == {"name": "classification"}:  # as before the task axis: earlier runs keep their hash
        work.pop("task")
    if isinstance(work.get("model"), dict) and work["model"].get("fuse_gelu") is False:  # as before the key
        work["model"] = {k: v for k, v in work["model"].items() if k != "fuse_gelu"}
    return hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`, for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
