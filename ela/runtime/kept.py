"""Compiled engines kept for later jobs of the same process: a compile is paid once per configuration.

Inductor's on-disk caches skip nothing with `freezing` (its FX graph and AOT caches bypass frozen
graphs: every job recompiled), so the compiled module itself is kept, keyed on everything that shapes
it: model, precision, engine settings and device. A later job with the same key (another seed, another
batch size) compiles only the shapes the module has not seen; its `engine_setup_s` counts that and
`ela.engine_reuse` says what was reused. Nothing measured is shared: each job loads its own model for
its references, and runs its own idle power, warm-up, timed passes and windows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ela.measure.loops import Forward, make_forward
from ela.runtime import engines
from ela.runtime.data import Batches, shape_key
from ela.runtime.device import Autocast

BUDGET_SHARE = 0.25  # kept weights may hold at most this share of the device's memory (or of host RAM)


@dataclass
class _Kept:
    compiled: torch.nn.Module
    shapes: set[tuple] = field(default_factory=set)
    nbytes: int = 0
    owner: str = ""  # the run that compiled it


_KEPT: dict[str, _Kept] = {}


def key_of(job, device: torch.device) -> str:
    """What a compiled module depends on: model, precision, engine settings, device (not batch or seed)."""
    parts = {k: dataclasses.asdict(getattr(job, k)) for k in ("model", "precision", "engine")}
    return json.dumps({**parts, "device": str(device)}, sort_keys=True, default=str)


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
