"""The resolved Hydra config as typed dataclasses, each checking its own keys when built, before any work.

Choice lists come from the module that owns each choice (engines, attention kernels, energy meters),
so a new engine is added in one place. Every message names the key and what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ela import ElaError
from ela.checks import _check, _flag, _one_of, _positive_int, section
from ela.measure.energy import KINDS as ENERGY_METERS
from ela.runtime.attention import CHOICES as ATTENTION
from ela.runtime.data import ORDERS
from ela.runtime.device import AUTOCAST_DTYPES, DEVICES, DTYPE
from ela.runtime.engines import COMPILE_MODES
from ela.runtime.engines import NAMES as ENGINES
from ela.runtime.epilogue import check_config as check_gelu
from ela.runtime.fp8 import check_config as check_fp8
from ela.runtime.packing import check_config as check_packing
from ela.tasks import SCORINGS, TASKS, TaskConfig  # noqa: F401 (choices re-exported)


def checkpoint_name(path: str | None) -> str:
    """A model's short name from its checkpoint: the folder's name (or the Hub ID's last part)."""
    return PurePath(str(path).rstrip("/")).name if path else "local"


# conf/model/local.yaml names a local model after its folder (e.g. minilm-l6-sst2), not "local".
OmegaConf.register_new_resolver("ela_checkpoint_name", checkpoint_name, replace=True)
# conf/engine/compile.yaml freezes weights for classifiers only (generation can't compile with it).
OmegaConf.register_new_resolver("ela_freezing_default", lambda task: task != "generation", replace=True)


@dataclass(frozen=True)
class ModelConfig:
    """Which checkpoint, and how it is loaded."""

    name: str
    path: str | None
    revision: str | None
    max_length: int
    attn_implementation: str | None
    allow_untrained_head: bool
    fuse_projections: bool = False  # decoders: q|k|v and gate|up as one matmul each (ela.runtime.fuse)
    fuse_gelu: bool = False  # encoders: the intermediate matmul with a GELU epilogue (ela.runtime.epilogue)

    def __post_init__(self) -> None:
        if not self.path:
            raise ElaError(
                "model.path is not set: pass a Hub ID or a local checkpoint directory, "
                "e.g. model=local model.path=/path/to/checkpoint (or set ELA_MODEL_PATH)"
            )
        _positive_int("model.max_length", self.max_length, 2)
        _one_of("model.attn_implementation", self.attn_implementation, ATTENTION)
        _flag("model.allow_untrained_head", self.allow_untrained_head)
        _flag("model.fuse_projections", self.fuse_projections)
        _flag("model.fuse_gelu", self.fuse_gelu)


@dataclass(frozen=True)
class DatasetConfig:
    """Which labelled split, where it comes from, and how its labels map to the model's."""

    name: str
    path: str | None
    hub_id: str | None
    hub_config: str | None
    split: str
    local_file: str | None
    text_column: str
    label_column: str
    label_names: list[str] | None
    label_map: dict[str, str] | None
    limit: int | None
    order: str

    def __post_init__(self) -> None:
        if not self.path and not self.hub_id:
            raise ElaError(
                "dataset has neither a local path nor a Hub ID: set dataset.path=/path/to/file_or_folder "
                "(or ELA_SST2_PATH / ELA_DATA_PATH)"
            )
        if self.limit is not None:
            _check(isinstance(self.limit, int) and self.limit >= 1, "dataset.limit", self.limit, "null or >= 1")
        _one_of("dataset.order", self.order, ORDERS)
        _check(
            self.label_map is None
            or (isinstance(self.label_map, dict) and all(isinstance(v, str) for v in self.label_map.values())),
            "dataset.label_map",
            self.label_map,
            "null or a mapping from dataset label to model label name, e.g. {neg: negative, pos: positive}",
        )


@dataclass(frozen=True)
class PrecisionConfig:
    """The numeric format: weight dtype, autocast dtype, TF32 flags, float8 linear layers."""

    name: str
    weights_dtype: str
    autocast_dtype: str | None
    tf32: bool
    linear: str | None = None  # precision=fp8 only (absent elsewhere: the other precisions keep their config hash)

    def __post_init__(self) -> None:
        _one_of("precision.weights_dtype", self.weights_dtype, tuple(DTYPE))
        _one_of("precision.autocast_dtype", self.autocast_dtype, AUTOCAST_DTYPES)
        _flag("precision.tf32", self.tf32)
        check_fp8(self.linear, self.weights_dtype, self.autocast_dtype)


@dataclass(frozen=True)
class EngineConfig:
    """How the model is executed: eager, torch.compile, or captured CUDA graphs."""

    name: str
    compile_mode: str | None
    buckets: list[int] | int | None  # padded lengths, or a step (8: multiples of 8)
    fullgraph: bool
    freezing: bool
    coordinate_descent: bool = False  # inductor tunes each kernel's launch config (longer setup)
    packing: int | None = None  # rows of this many tokens, each batch's sequences packed in (ela.runtime.packing)

    def __post_init__(self) -> None:
        _one_of("engine.name", self.name, ENGINES)
        _check(  # only engine=compile reads it; other engines ignore it, so one sweep can mix engines
            self.compile_mode in COMPILE_MODES or (self.compile_mode is None and self.name != "compile"),
            "engine.compile_mode",
            self.compile_mode,
            " | ".join(COMPILE_MODES) + " (required with engine=compile)",
        )
        b = self.buckets
        step = isinstance(b, int) and not isinstance(b, bool) and b > 0
        ok = b is None or step or (isinstance(b, list) and bool(b) and all(isinstance(x, int) and x > 0 for x in b))
        _check(ok, "engine.buckets", b, "null, a list of positive lengths such as [16,32,64,128], or a step (8)")
        _flag("engine.fullgraph", self.fullgraph)
        _flag("engine.freezing", self.freezing)
        _flag("engine.coordinate_descent", self.coordinate_descent)


@dataclass(frozen=True)
class MeasureConfig:
    """Warm-up, the latency passes and energy windows, idle power, the trace and the energy meter."""

    warmup_batches: int
    min_window_s: float
    repeats: int
    idle_max_settle_s: float
    idle_window_s: float
    trace: bool
    trace_interval_s: float
    samplers_in: str
    energy_meter: str
    fake_power_w: float
    fp32_reference: bool

    def __post_init__(self) -> None:
        _positive_int("measure.warmup_batches", self.warmup_batches, 0)
        for key in ("min_window_s", "trace_interval_s"):
            _check(getattr(self, key) > 0, f"measure.{key}", getattr(self, key), "> 0 seconds")
        _check(self.idle_window_s >= 0, "measure.idle_window_s", self.idle_window_s, ">= 0 s (0: no idle baseline)")
        _positive_int("measure.repeats", self.repeats)
        _check(self.idle_max_settle_s >= 0, "measure.idle_max_settle_s", self.idle_max_settle_s, ">= 0 seconds")
        _one_of("measure.energy_meter", self.energy_meter, ENERGY_METERS)
        _one_of("measure.samplers_in", self.samplers_in, ("process", "thread"))
        _flag("measure.trace", self.trace)
        _flag("measure.fp32_reference", self.fp32_reference)


@dataclass(frozen=True)
class CodeCarbonConfig:
    """CodeCarbon's offline tracker: the grid it uses for emissions and how often it samples."""

    enabled: bool
    country_iso_code: str
    region: str | None
    measure_power_secs: float
    save_to_file: bool

    def __post_init__(self) -> None:
        code = self.country_iso_code
        ok = isinstance(code, str) and len(code) == 3 and code.isalpha()
        _check(ok, "codecarbon.country_iso_code", code, "a 3-letter ISO code such as USA, FRA, DEU")
        _check(self.measure_power_secs > 0, "codecarbon.measure_power_secs", self.measure_power_secs, "> 0 seconds")
        if self.enabled:  # an unknown grid would silently become a default intensity inside CodeCarbon
            from ela.measure.carbon import check_grid

            check_grid(code, self.region)


@dataclass(frozen=True)
class TrackingConfig:
    """The MLflow store and experiment."""

    uri: str | None
    experiment: str

    def __post_init__(self) -> None:
        _check(bool(self.experiment), "tracking.experiment", self.experiment, "a non-empty name")


@dataclass(frozen=True)
class JobConfig:
    """One job, validated: every section above plus the plain keys."""

    model: ModelConfig
    dataset: DatasetConfig
    task: TaskConfig
    precision: PrecisionConfig
    engine: EngineConfig
    batch: int
    seed: int
    device: str
    gpus: str | list[int] | None
    resume: bool
    measure: MeasureConfig
    codecarbon: CodeCarbonConfig
    tracking: TrackingConfig
    reuse_engines: bool = True  # keep compiled engines for later jobs of this process (ela/runtime/kept.py)
    reuse_references: bool = True  # keep reference passes' outputs for later jobs of this process (same module)

    def __post_init__(self) -> None:
        check_packing(self.engine.packing, self.model.attn_implementation, self.model.max_length, self.task.name)
        check_gelu(self.model.fuse_gelu, self.task.name, self.precision.linear, self.precision.autocast_dtype)
        if self.task.generative:  # in validate(), so a sweep refuses these before its first job
            from ela.runtime import generation

            generation.check(self.engine, self.task, self.model, self.precision)
        elif self.model.fuse_projections:
            raise ElaError(f"model.fuse_projections=true fuses a decoder's projections; task={self.task.name}: "
                           "leave it false (it applies to task=generation)")  # fmt: skip
        _positive_int("batch", self.batch)
        _positive_int("seed", self.seed, 0)
        _one_of("device", self.device, DEVICES)
        _flag("resume", self.resume)
        _flag("reuse_engines", self.reuse_engines)
        _flag("reuse_references", self.reuse_references)
        _check(
            self.gpus is None
            or self.gpus == "all"
            or (isinstance(self.gpus, list) and all(isinstance(g, int) for g in self.gpus)),
            "gpus",
            self.gpus,
            "null | all | a list of CUDA device indices such as [0,1]",
        )

    @property
    def run_name(self) -> str:
        """Short, readable run name, e.g. `fp16-b8-s0`."""
        from ela.tracking.identity import run_name

        return run_name(self.precision.name, self.batch, self.seed, self.engine.name, task=self.task.name)


SECTIONS = {
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "task": TaskConfig,
    "precision": PrecisionConfig,
    "engine": EngineConfig,
    "measure": MeasureConfig,
    "codecarbon": CodeCarbonConfig,
    "tracking": TrackingConfig,
}
PLAIN_KEYS = ("batch", "seed", "device", "resume", "gpus", "reuse_engines", "reuse_references")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python, without Hydra's own node."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    data.pop("hydra", None)
    return data


def validate(cfg: DictConfig | dict[str, Any]) -> JobConfig:
    """Turn the resolved config into a JobConfig, or raise ElaError naming the bad key."""
    data = to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    data.pop("hydra", None)
    unknown = sorted(set(data) - set(SECTIONS) - set(PLAIN_KEYS))
    if unknown:
        raise ElaError(f"unknown config key(s): {', '.join(unknown)}")
    plain = {k: data.get(k) for k in PLAIN_KEYS}
    for key in ("reuse_engines", "reuse_references"):  # batch, seed, device: checked by JobConfig
        plain[key] = data.get(key, True)
    sections = {name: section(name, cls, data.get(name)) for name, cls in SECTIONS.items()}
    return JobConfig(**sections, **plain)
