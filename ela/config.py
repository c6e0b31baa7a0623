"""Validate the resolved Hydra config into typed dataclasses before any expensive work."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ela import ElaError

DTYPES = ("float32", "float16", "bfloat16")
ENGINES = ("eager", "compile", "cudagraph")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEVICES = ("auto", "cuda", "cpu")
# transformers' own, then ela's (ela.attention; the names are repeated there)
ATTENTION = (None, "sdpa", "eager", "flash_attention_2", "flex_attention", "padded_varlen", "padded_triton")
# auto: nvml on a GPU; on a CPU, rapl where readable, else CodeCarbon's model over each window (tagged so)
ENERGY_METERS = ("auto", "nvml", "rapl", "codecarbon", "fake", "none")
# Keys that describe bookkeeping, not the measured work: excluded from the config hash.
BOOKKEEPING = ("seed", "resume", "gpus", "tracking", "codecarbon", "hydra")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    path: str
    revision: str | None
    max_length: int
    attn_implementation: str | None
    allow_untrained_head: bool


@dataclass(frozen=True)
class DatasetConfig:
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


@dataclass(frozen=True)
class PrecisionConfig:
    name: str
    weights_dtype: str
    autocast_dtype: str | None
    tf32: bool


@dataclass(frozen=True)
class EngineConfig:
    name: str
    compile_mode: str | None
    buckets: list[int] | None
    fullgraph: bool
    freezing: bool


@dataclass(frozen=True)
class MeasureConfig:
    warmup_batches: int
    min_window_s: float
    repeats: int
    idle_max_settle_s: float
    idle_window_s: float
    trace: bool
    trace_interval_s: float
    energy_meter: str
    fake_power_w: float
    fp32_reference: bool


@dataclass(frozen=True)
class CodeCarbonConfig:
    enabled: bool
    country_iso_code: str
    region: str | None
    measure_power_secs: float
    save_to_file: bool


@dataclass(frozen=True)
class TrackingConfig:
    uri: str | None
    experiment: str


@dataclass(frozen=True)
class JobConfig:
    model: ModelConfig
    dataset: DatasetConfig
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

    @property
    def run_name(self) -> str:
        """Short, readable run name, e.g. `fp16-b8-s0`."""
        return run_name(self.precision.name, self.batch, self.seed, self.engine.name)


SECTIONS = {
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "precision": PrecisionConfig,
    "engine": EngineConfig,
    "measure": MeasureConfig,
    "codecarbon": CodeCarbonConfig,
    "tracking": TrackingConfig,
}
PLAIN_KEYS = {"batch": int, "seed": int, "device": str, "resume": bool}


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python, without Hydra's own node."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    data.pop("hydra", None)
    return data


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ElaError(f"config key '{name}' must be a mapping, got {raw!r}")
    fields = cls.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ElaError(
            f"unknown config key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"known keys of '{name}': {', '.join(fields)}"
        )
    missing = sorted(set(fields) - set(raw))
    if missing:
        raise ElaError(f"missing config key(s) {', '.join(f'{name}.{k}' for k in missing)}")
    return cls(**raw)


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ElaError(f"invalid value {key}={value!r}: expected {expected}")


def validate(cfg: DictConfig | dict[str, Any]) -> JobConfig:
    """Turn the resolved config into a JobConfig, or raise ElaError naming the bad key."""
    data = to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    data.pop("hydra", None)
    unknown = sorted(set(data) - set(SECTIONS) - set(PLAIN_KEYS) - {"gpus"})
    if unknown:
        raise ElaError(f"unknown config key(s): {', '.join(unknown)}")
    for key, typ in PLAIN_KEYS.items():
        value = data.get(key)
        _check(isinstance(value, typ) and (typ is bool or not isinstance(value, bool)), key, value, typ.__name__)
    sections = {name: _section(name, cls, data.get(name)) for name, cls in SECTIONS.items()}
    job = JobConfig(**sections, **{k: data[k] for k in PLAIN_KEYS}, gpus=data.get("gpus"))

    _check(job.batch >= 1, "batch", job.batch, "an integer >= 1")
    _check(job.seed >= 0, "seed", job.seed, "an integer >= 0")
    _check(job.device in DEVICES, "device", job.device, " | ".join(DEVICES))
    _check(
        job.gpus is None
        or job.gpus == "all"
        or (isinstance(job.gpus, list) and all(isinstance(g, int) for g in job.gpus)),
        "gpus",
        job.gpus,
        "null | all | a list of CUDA device indices such as [0,1]",
    )
    m, d, p, me = job.model, job.dataset, job.precision, job.measure
    if not m.path:
        raise ElaError(
            "model.path is not set: pass a Hub ID or a local checkpoint directory, "
            "e.g. model=local model.path=/path/to/checkpoint (or set ELA_MODEL_PATH)"
        )
    _check(isinstance(m.max_length, int) and m.max_length >= 2, "model.max_length", m.max_length, "an integer >= 2")
    if not d.path and not d.hub_id:
        raise ElaError(
            "dataset has neither a local path nor a Hub ID: set dataset.path=/path/to/file_or_folder "
            "(or ELA_SST2_PATH / ELA_DATA_PATH)"
        )
    _check(d.limit is None or (isinstance(d.limit, int) and d.limit >= 1), "dataset.limit", d.limit, "null or >= 1")
    _check(p.weights_dtype in DTYPES, "precision.weights_dtype", p.weights_dtype, " | ".join(DTYPES))
    _check(
        p.autocast_dtype in (None, "float16", "bfloat16"),
        "precision.autocast_dtype",
        p.autocast_dtype,
        "null | float16 | bfloat16",
    )
    _check(isinstance(p.tf32, bool), "precision.tf32", p.tf32, "true | false")
    e = job.engine
    _check(e.name in ENGINES, "engine.name", e.name, " | ".join(ENGINES))
    _check(  # only engine=compile reads it; other engines ignore it, so one sweep can mix engines
        e.compile_mode in COMPILE_MODES or (e.compile_mode is None and e.name != "compile"),
        "engine.compile_mode",
        e.compile_mode,
        " | ".join(COMPILE_MODES) + " (required with engine=compile)",
    )
    _check(
        e.buckets is None or (bool(e.buckets) and all(isinstance(b, int) and b > 0 for b in e.buckets)),
        "engine.buckets",
        e.buckets,
        "null or a list of positive sequence lengths such as [16,32,64,128]",
    )
    _check(isinstance(e.fullgraph, bool), "engine.fullgraph", e.fullgraph, "true | false")
    _check(isinstance(e.freezing, bool), "engine.freezing", e.freezing, "true | false")
    _check(d.order in ("original", "by_length"), "dataset.order", d.order, "original | by_length")
    _check(
        m.attn_implementation in ATTENTION,
        "model.attn_implementation",
        m.attn_implementation,
        " | ".join(a or "null" for a in ATTENTION),
    )
    _check(me.warmup_batches >= 0, "measure.warmup_batches", me.warmup_batches, ">= 0")
    _check(me.min_window_s > 0, "measure.min_window_s", me.min_window_s, "> 0 seconds")
    _check(isinstance(me.repeats, int) and me.repeats >= 1, "measure.repeats", me.repeats, "an integer >= 1")
    _check(me.idle_max_settle_s >= 0, "measure.idle_max_settle_s", me.idle_max_settle_s, ">= 0 seconds")
    _check(me.trace_interval_s > 0, "measure.trace_interval_s", me.trace_interval_s, "> 0 seconds")
    _check(me.idle_window_s > 0, "measure.idle_window_s", me.idle_window_s, "> 0 seconds")
    _check(me.energy_meter in ENERGY_METERS, "measure.energy_meter", me.energy_meter, " | ".join(ENERGY_METERS))
    _check(
        d.label_map is None
        or (isinstance(d.label_map, dict) and all(isinstance(v, str) for v in d.label_map.values())),
        "dataset.label_map",
        d.label_map,
        "null or a mapping from dataset label to model label name, e.g. {neg: negative, pos: positive}",
    )
    cc = job.codecarbon
    _check(
        isinstance(cc.country_iso_code, str) and len(cc.country_iso_code) == 3 and cc.country_iso_code.isalpha(),
        "codecarbon.country_iso_code",
        cc.country_iso_code,
        "a 3-letter ISO code such as USA, FRA, DEU",
    )
    _check(cc.measure_power_secs > 0, "codecarbon.measure_power_secs", cc.measure_power_secs, "> 0 seconds")
    if cc.enabled:  # an unknown grid would silently become a default intensity inside CodeCarbon
        from ela.measure.carbon import check_grid

        check_grid(cc.country_iso_code, cc.region)
    _check(bool(job.tracking.experiment), "tracking.experiment", job.tracking.experiment, "a non-empty name")
    return job


def run_name(precision: str, batch: object, seed: object, engine: str = "eager", extra: tuple[str, ...] = ()) -> str:
    """`fp16-b8-s0`, `fp16-b8-compile-s0` for a non-eager engine, `fp16-b8-attn_implementation=eager-s0` with
    another swept key (extra)."""
    middle = "".join(f"-{x}" for x in ([] if engine in ("eager", None) else [engine]) + list(extra))
    return f"{precision}-b{batch}{middle}-s{seed}"


AXES_ENV = "ELA_SWEEP_AXES"  # the keys a sweep varies, set by its sweeper for every job's run name
NAMED = {"precision", "batch", "seed", "engine", "engine.name", "resume"}  # already in every run name


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
    """Hash of everything that defines the measured work: not bookkeeping, and not the seed unless asked
    (without: groups the seeds of one configuration; with: identifies one job, for resume)."""
    work = {k: v for k, v in data.items() if k not in BOOKKEEPING or (with_seed and k == "seed")}
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


def job_dict(job: JobConfig) -> dict[str, Any]:
    """The validated config as a plain dict."""
    return asdict(job)
