"""What a job measured (`Raw`, before any arithmetic) and what it logs (`JobOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from ela.measure.carbon import CarbonRecord
from ela.measure.energy import MeterChoice
from ela.measure.host import HostLoad
from ela.measure.loops import EnergyWindow, GenerationPasses, Idle, LatencyPasses
from ela.runtime.data import Batches, EvalSplit


@dataclass(frozen=True)
class DatasetRecord:
    """The split a job evaluated, as logged to MLflow's dataset inputs (the runs page's Dataset column)."""

    name: str
    source: str  # a file path, or the dataset's Hub page
    table: pd.DataFrame  # text and label, in file order


@dataclass
class JobOutcome:
    """What a job logs: metrics, tags, artifact files by name, and the dataset it evaluated."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    dataset: DatasetRecord | None = None


@dataclass
class Loaded:
    """The split, its batches on the device and the model, ready to run."""

    split: EvalSplit
    batches: Batches
    targets: torch.Tensor  # model output index of each sample, in batch order
    label_map: dict[str, int]  # dataset label -> model output index
    model_source: str
    newly_initialized: list[str]
    attn_implementation: str
    padded: Batches | None = None  # engine.packing: the same samples padded, for transformers' own references


@dataclass
class Generated:
    """What a generation job measured beyond every task's figures."""

    passes: GenerationPasses
    prefill_windows: list[EnergyWindow]  # the engine's prefill alone: energy per prompt token
    tokens: list[list[int]]  # new token ids of each sample (batch order) in the first timed pass
    lengths: list[int]  # how many of them it really generated (fewer only when stopping at EOS)
    texts: list[str]  # their decoded text
    reference_tokens: list[list[int]] | None  # fp32 eager greedy output per sample (untimed)
    eager_tokens: list[list[int]] | None  # eager output in this precision, when the engine is not eager
    reference_choice: torch.Tensor | None  # fp32 next-token choice per sample
    references: list[str] | None  # scoring=reference: the label column's text per sample, batch order
    eos_id: int | None
    ignored: dict  # settings of the checkpoint's generation_config.json that ela's greedy workload replaced
    fused: dict[str, int] | None = None  # model.fuse_projections: how many q|k|v and gate|up were fused


@dataclass
class Raw:
    """Everything a job measured, in the units it was measured in."""

    loaded: Loaded
    meter: MeterChoice
    device_type: str
    reference: torch.Tensor | None  # fp32 predictions (untimed)
    eager_ref: torch.Tensor | None  # transformers' eager predictions in this precision (untimed)
    setup_s: float
    idle: Idle | None
    tick_s: float | None
    lat: LatencyPasses | None  # classification's timed passes (generation's are in `generated`)
    windows: list[EnergyWindow]  # energy windows over the task's whole workload (generation: whole generations)
    state_start: dict[str, float]
    state_end: dict[str, float]
    host: HostLoad | None  # the host's CPU load during the energy windows (None without /proc/stat)
    other_ela_jobs: int
    tf32: str
    peak_mb: float
    generated: Generated | None = None
    trace: pd.DataFrame | None = None
    carbon: CarbonRecord | str | None = None  # the whole-job record, or why it was left out
    phase_s: dict[str, float] = field(default_factory=dict)  # wall seconds per phase (schema.PHASES)
    reuse: str = "none"  # what the engine reused from an earlier job (ela/runtime/kept.py)
    reference_reuse: str = "none"  # each reference pass: run here (`fresh`) or an earlier job's (`kept(...)`)
    linears: str = ""  # precision=fp8: the linear layers converted to float8 and those kept (ela/runtime/fp8.py)
    gelu_epilogue: str = ""  # model.fuse_gelu: the intermediate layers fused, and how (ela/runtime/epilogue.py)
