"""What later jobs of the same process reuse: compiled engines, and the untimed reference passes.

**Compiled engines**: a compile is paid once per configuration.

Inductor's on-disk caches skip nothing with `freezing` (its FX graph and AOT caches bypass frozen
graphs: every job recompiled), so the compiled module itself is kept, keyed on everything that shapes
it: model, precision, engine settings and device. A later job with the same key (another seed, another
batch size) compiles only the shapes the module has not seen; its `engine_setup_s` counts that and
`ela.engine_reuse` says what was reused. Nothing measured is shared: each job loads its own model for
its references, and runs its own idle power, warm-up, timed passes and windows.

**References** (`reuse_references`): the fp32 and eager reference passes are transformers' own model on the
job's inputs, so their outputs depend only on the model, the task, the numerics and the exact input tensors
(which carry the batch size and padding), not on the job's engine or seed (unless the seed drew an untrained
head's weights). A later job with the same key takes them (tag `ela.reference_reuse`, `phase_references_s`
near 0). An fp32 job's eager reference is the fp32 reference of every other precision on the same inputs:
same weights, no autocast, no TF32 (one key for both).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from ela.measure.loops import Forward, make_forward
from ela.runtime import engines
from ela.runtime.data import Batches, shape_key
from ela.runtime.device import Autocast

T = TypeVar("T")
BUDGET_SHARE = 0.25  # kept weights may hold at most this share of the device's memory (or of host RAM)


@dataclass
class _Kept:
    compiled: torch.nn.Module
    shapes: set[tuple] = field(default_factory=set)
    nbytes: int = 0
    owner: str = ""  # the run that compiled it


_KEPT: dict[str, _Kept] = {}


def key_of(job, device: torch.device) -> str:
    """What a compiled module depends on: model, precision, engine settings, device (seed: an untrained head's)."""
    parts = {k: dataclasses.asdict(getattr(job, k)) for k in ("model", "precision", "engine")}
    return json.dumps({**parts, "device": str(device), "weights": _weights(job)}, sort_keys=True, default=str)


def _weights(job) -> int | None:
    """What the weights depend on beyond the model's config: an untrained head is drawn from the job's seed."""
    return job.seed if job.model.allow_untrained_head else None


def holding() -> bool:
    """Whether this process keeps compiled engines (then dynamo's caches must not be reset between jobs)."""
    return bool(_KEPT)


def clear() -> None:
    """Drop every kept engine and dynamo's graphs of them."""
    if _KEPT:
        _KEPT.clear()
        engines.reset_graphs()


def build(
    job,
    model: torch.nn.Module,
    autocast: Autocast,
    batches: Batches,
    device: torch.device,
    sync: Callable[[], None],
) -> tuple[Forward, float, str]:
    """The engine's forward, its setup seconds, and what was reused (`none`, `fresh`, `kept(...)`)."""
    engine = job.engine
    if engine.name != "compile" or not job.reuse_engines:
        return (*engines.build(engine, model, autocast, batches, device, sync), "none")
    engines.check(engine, device.type)
    key, t0 = key_of(job, device), time.perf_counter()
    hit = kept = _KEPT.get(key)
    if kept is None:
        nbytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        nbytes *= 2 if engine.freezing else 1  # frozen graphs hold their own copy of the weights as constants
        _make_room(nbytes, device)
        kept = _Kept(engines.compiled_module(engine, model), nbytes=nbytes, owner=job.run_name)
    forward = make_forward(kept.compiled, autocast)
    shapes = engines.one_per_shape(batches)
    new = [s for s in shapes if shape_key(s) not in kept.shapes]
    engines.compile_shapes(forward, new, engine)
    sync()
    how = "fresh" if hit is None else f"kept(from {kept.owner}: {len(shapes) - len(new)} of {len(shapes)} shapes)"
    kept.shapes.update(shape_key(s) for s in new)
    _KEPT[key] = kept  # only once compiled: a failed compile keeps nothing
    return forward, time.perf_counter() - t0, how


def _make_room(nbytes: int, device: torch.device) -> None:
    """Keep the kept weights within BUDGET_SHARE of the device's memory: past it, drop them all."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if sum(k.nbytes for k in _KEPT.values()) + nbytes > BUDGET_SHARE * total:
        clear()


_REFERENCES: dict[str, tuple[object, str]] = {}  # key -> (a reference pass's output, the run that computed it)
FP32 = {"weights_dtype": "float32", "autocast_dtype": None, "tf32": False, "linear": None}  # the fp32 reference's


def reference(job, kind: str, device: torch.device, batches: Batches, compute: Callable[[], T]) -> tuple[T, str]:
    """The `kind` reference pass (`fp32`: fp32 weights; `eager`: this precision) and how it was got (see above)."""
    if not job.reuse_references:
        return compute(), "fresh"
    numerics = FP32 if kind == "fp32" else {k: getattr(job.precision, k) for k in FP32}
    key = _reference_key(job, numerics, device, batches)
    if key in _REFERENCES:
        value, owner = _REFERENCES[key]
        return value, f"kept(from {owner})"  # type: ignore[return-value]
    value = compute()
    _REFERENCES[key] = (value, job.run_name)
    return value, "fresh"


def clear_references() -> None:
    """Forget every kept reference pass (tests keep each test's jobs to themselves)."""
    _REFERENCES.clear()


def _reference_key(job, numerics: dict, device: torch.device, batches: Batches) -> str:
    """Model, task, numerics, device and a digest of every input tensor, in batch order."""
    parts = {k: dataclasses.asdict(getattr(job, k)) for k in ("model", "task")}
    return json.dumps({**parts, "numerics": numerics, "device": str(device), "inputs": batches.digest,
                       "weights": _weights(job)}, sort_keys=True, default=str)  # fmt: skip
