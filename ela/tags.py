"""The rows of the README's tables (a metric, a tag), every tag ela sets on a run and every artifact it logs.

Re-exported by `ela.schema`, the one place the rest of ela imports names from (its metric tables use `Metric`).
"""

from __future__ import annotations

from dataclasses import dataclass

SPREAD = ("_sd", "_cv")  # suffixes of metrics logged with their spread across energy windows


@dataclass(frozen=True)
class Metric:
    """One row of the metric table: the names it covers, their unit, and how they are obtained."""

    names: tuple[str, ...]
    unit: str
    how: str
    spread: bool = False  # also logged as <name>_sd and <name>_cv across the energy windows
    shown: str = ""  # how the row names itself in the README, where listing every name would not read

    def all_names(self) -> list[str]:
        """Every metric name this row stands for."""
        return [n + s for n in self.names for s in ("", *(SPREAD if self.spread else ()))]

    def row(self) -> str:
        """The README's Markdown row."""
        names = self.shown or ", ".join(f"`{n}`" for n in self.names)
        spread = " (`_sd`, `_cv`)" if self.spread else ""
        return f"| {names}{spread} | {self.unit} | {self.how} |"


@dataclass(frozen=True)
class Tag:
    """One row of the tag table."""

    name: str
    what: str

    def row(self) -> str:
        """The README's Markdown row."""
        return f"| `{self.name}` | {self.what} |"


TAGS = (
    Tag(
        "ela.method.*",
        "how each figure was obtained: `latency`, `cost`, `energy` (`nvml-counter`, `rapl(package-0)`, "
        "`codecarbon-model(cpu_load)+codecarbon-model(ram)`, `fake-counter`), `energy_note`, `accuracy`, "
        "`peak_memory`, `codecarbon_{cpu,ram,gpu}`, `emissions`; generation: `prefill_energy`, `decode_energy`",
    ),  # fmt: skip
    Tag("ela.energy_scope", "what the energy covers: `gpu`, `cpu-packages`, `cpu+ram` (modelled), `fake`"),
    Tag("ela.verdict", "`ok`, `noisy` or `unreliable` (ela/measure/quality.py)"),
    Tag("ela.verdict_reasons", "each figure past a threshold, with its level"),
    Tag("ela.warning", "what the job found worth saying (stalls, short windows, a limit above the split, ...)"),
    Tag("ela.config_hash", "the measured config without the seed: the same for a configuration's repetitions"),
    Tag("ela.run_hash", "config and seed: one job, for resume"),
    Tag("ela.sweep_id", "the parent run of the sweep (also `mlflow.parentRunId`)"),
    Tag("ela.sweep_position", "the job's place in the sweep's launch order"),
    Tag("ela.overrides", "the job's command-line overrides"),
    Tag("ela.experiment", "the preset (`experiment=smoke`, `seed_study`, `engines`) a run came from"),
    Tag("ela.job_dir", "the job's Hydra output folder (holds `ela_result.json`)"),
    Tag("ela.task", "`classification` or `generation`"),
    Tag("ela.generation", "the decoding workload: greedy, new tokens, fixed length or EOS, KV cache"),
    Tag("ela.prompt", "the prompt template (generation)"),
    Tag("ela.generation_ignored", "settings of the checkpoint's generation_config.json that greedy decoding replaced"),
    Tag("ela.fp8_linears", "precision=fp8: linear layers converted to float8 matmuls, of all, and those kept in bf16"),
    Tag("ela.gelu_epilogue", "`model.fuse_gelu=true`: intermediate layers whose GELU runs in the matmul, and how"),
    Tag("ela.fused_projections", "`model.fuse_projections=true`: layers whose q|k|v and gate|up run as one matmul"),
    Tag("ela.engine", "e.g. `eager`, `compile(reduce-overhead,freezing)`, `eager(packing=128)`"),
    Tag(
        "ela.engine_reuse",
        "engine=compile: `fresh` (compiled here), or `kept(from <run>: k of n shapes)` (an earlier job's compiled "
        "model, same model, precision and engine; only the other shapes compiled here); `none` otherwise",
    ),
    Tag(
        "ela.reference_reuse",
        "each untimed reference pass (`fp32`, `eager`): `fresh` (run here), or `kept(from <run>)` (an earlier job of "
        "the process ran it on the same model, task, numerics and input tensors: `reuse_references`); `none`: no pass",
    ),
    Tag("ela.attn_implementation", "the attention kernel transformers loaded"),
    Tag("ela.tf32", "TF32 flags as torch reported them during the job"),
    Tag("ela.device", "`cuda` or `cpu`"),
    Tag("ela.cuda_visible_devices", "the GPU a claiming job was pinned to"),
    Tag("ela.model_source", "the checkpoint folder or `hub:<id>`"),
    Tag("ela.dataset_source", "the file or `hub:<id>/<config>:<split>`"),
    Tag("ela.dataset_rows", "rows of the split before `dataset.limit`"),
    Tag("ela.label_map", "dataset label → model output index"),
    Tag("ela.untrained_head", "`true` when newly initialised weights were allowed"),
    Tag("ela.newly_initialized_weights", "which weights transformers initialised"),
    Tag("ela.invalid.codecarbon", "why CodeCarbon's figures were left out"),
    Tag("ela.error", "why a job failed or was killed"),
    Tag("ela.error_type", "the exception's type"),
    Tag("ela.run_kind", "`sweep` on a parent run"),
    Tag("ela.sweep_key", "a sweep's grid (for resume)"),
    Tag("ela.sweep_dir", "a sweep's folder"),
    Tag("ela.jobs_finished", "also `ela.jobs_failed`, `ela.jobs_killed`: counts on the parent run"),
    Tag("ela.resume", "what a resumed sweep found to do"),
    Tag("mlflow.note.content", "the parent run's description: the table of its jobs and where to look next"),
    Tag("ela.version", "also `ela.git_commit`, `ela.pid`"),
    Tag("gpu.*", "`name`, `uuid`, `nvml_index`, `driver`, `cuda_driver`, `power_limit_w`, `persistence_mode`"),
    Tag("host.*", "`name`, `cpu`, `python`; also `torch.cuda_runtime`"),
    Tag(
        "torch.num_threads",
        "torch's CPU threads during the job: a CPU job gets those of the process that launched the sweep (joblib's "
        "workers would otherwise start with cores / n_jobs)",
    ),
    Tag("version.*", "torch, transformers, datasets, codecarbon, mlflow-skinny, hydra-core, nvidia-ml-py"),
)
ARTIFACTS = {
    "config.yaml": "the resolved config",
    "predictions.csv": "index, token length, label, prediction, confidence, fp32 prediction (generation: by choice)",
    "generations.csv": "task=generation: index, prompt and output tokens, generated text and token ids",
    "batch_latency_ms.csv": "pass, batch, ms of every synchronised batch (generation: and its TTFT)",
    "energy_windows.csv": "workload (pass, generation or prefill), duration, passes, samples and energy of each window",
    "power_trace.csv": "the background trace: time, phase, energy, power (where the meter has a counter)",
    "power_trace.png": "that trace, one band per phase",
    "codecarbon.json": "CodeCarbon's record of the whole job",
    "error.txt": "the traceback of a failed job",
}
