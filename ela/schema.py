"""Every metric, tag and artifact ela logs, with its unit and how it is obtained: the one source of names.

Jobs, the sweep table, the analysis, the plots and the README's tables take names, headers and formats
from here. `python -m ela.schema` prints the README's tables; tests/test_schema.py checks the README
against them and every metric a real job logs against `METRIC_NAMES`.
"""

from __future__ import annotations

import sys

from ela.tags import ARTIFACTS, SPREAD, TAGS, Metric, Tag  # noqa: F401 (re-exported: one place to import names from)

# Names the code refers to (the rest appear only in the tables below).
ACCURACY, AGREE_FP32, AGREE_EAGER = "accuracy", "agreement_with_fp32", "agreement_with_eager"
COST, THROUGHPUT = "cost_ms_per_sample", "throughput_samples_per_s"
P50, P90, P99 = "batch_latency_ms_p50", "batch_latency_ms_p90", "batch_latency_ms_p99"
STALLED_SHARE, LATENCY_COST_RATIO = "stalled_batch_share", "latency_cost_ratio"
ENERGY, DYNAMIC_ENERGY, WINDOW_ENERGY = "energy_j_per_sample", "dynamic_energy_j_per_sample", "window_energy_j"
AVG_POWER, IDLE_POWER, WINDOWS = "avg_power_w", "idle_power_w", "energy_windows"
EMISSIONS_G, CODECARBON_KWH = "emissions_g", "codecarbon_energy_kwh"
EMISSIONS, ENERGY_PER_CORRECT = "emissions_mg_per_sample", "energy_per_correct_j"
SPEEDUP, ENERGY_SAVING = "speedup_vs_fp32", "energy_saving_vs_fp32"
SPEEDUP_VS_CI = "speedup_vs_fp32_vs_ci"  # faster | slower | within CI: the cost CIs of config and fp32 apart or not
GEN_AGREE_FP32, GEN_PREFIX_FP32 = "generation_agreement_with_fp32", "generation_common_prefix_fp32"
GEN_AGREE_EAGER = "generation_agreement_with_eager"
TTFT_P50, TTFT_P90, TTFT_P99 = "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99"
TPOT_P50, TPOT_P90, TPOT_P99 = "tpot_ms_p50", "tpot_ms_p90", "tpot_ms_p99"
TOKEN_ENERGY, TOKENS_PER_S = "energy_j_per_output_token", "output_tokens_per_s"
PREFILL_ENERGY, DECODE_ENERGY = "prefill_energy_j_per_prompt_token", "decode_energy_j_per_output_token"
# A job's phases, in order, each timed as phase_<name>_s; "measured" are the ones that time the model or the meter.
PHASES = ("load", "references", "engine_setup", "idle", "warmup", "timed_passes", "windows")
MEASURED_PHASES = ("idle", "timed_passes", "windows")


def phase_metrics(seconds: dict[str, float]) -> dict[str, float]:
    """`phase_<phase>_s` for each schema phase in `seconds` (other steps, such as scoring, are not phases)."""
    return {f"phase_{p}_s": seconds[p] for p in PHASES if p in seconds}


GPU_STATE = [
    f"gpu_{k}_{e}" for k in ("sm_clock_mhz", "mem_clock_mhz", "temp_c", "power_limit_w") for e in ("start", "end")
]
JOB = (
    Metric((ACCURACY,), "fraction", "argmax of the first latency pass's logits vs dataset labels"),
    Metric((AGREE_FP32,), "fraction", "same predictions as the job's untimed fp32 pass (1.0 for fp32 itself)"),
    Metric(
        (COST,),
        "ms",
        "**headline cost**: energy window time / samples in it, no per-batch sync; mean over windows",
        True,
    ),
    Metric(
        (P50, P90, P99, "batch_latency_ms_mean"),
        "ms per batch",
        "**headline latency**: `perf_counter` around each batch, device synchronised before and after, over every "
        "latency pass",
    ),
    Metric(
        ("latency_passes", "latency_window_s"),
        "passes, s",
        "how many synchronised passes were timed, and how long they took together (≥ `min_window_s`)",
    ),
    Metric(
        ("stalled_batches", STALLED_SHARE),
        "count, fraction",
        "timed batches that took > 3x the same batch's best time over the passes (one pass: > 3x the median batch)",
    ),
    Metric(
        ("synced_ms_per_sample", LATENCY_COST_RATIO),
        "ms, ratio",
        "all synchronised batch time / samples timed; its ratio to the cost (1 = per-batch sync costs nothing)",
    ),
    Metric(
        (THROUGHPUT,), "samples/s", "energy windows: samples / window length; mean over windows (1000 / cost)", True
    ),
    Metric(
        ("energy_window_s", "energy_window_passes", WINDOWS),
        "s, passes, count",
        "length and size of the energy windows (`energy_window_s` also has `_sd`, `_cv`)",
    ),
    Metric(
        (WINDOW_ENERGY,),
        "J per window",
        "the meter's difference across a window: NVML `nvmlDeviceGetTotalEnergyConsumption` on the job's GPU "
        "(mapped by UUID), RAPL package (+DRAM) counters, or CodeCarbon's CPU+RAM model (`ela.method.energy`, "
        "`ela.energy_scope`)",
    ),
    Metric((ENERGY,), "J", "window energy / samples in it; mean over windows", True),
    Metric(
        (IDLE_POWER,),
        "W",
        "the meter over `idle_window_s` of sleep with the model loaded, once power has stopped falling (GPU)",
    ),
    Metric(("idle_settle_s",), "s", "how long power took to stop falling (two 0.5 s steps without a >1% drop; capped)"),
    Metric(
        ("nvml_counter_tick_ms", "energy_window_ticks_min"),
        "ms, ticks",
        "how often the counter moved (polled for 0.6 s before the windows); the fewest ticks any window spanned "
        "(< 10 is flagged)",
    ),
    Metric((AVG_POWER,), "W", "window energy / window length"),
    Metric(("dynamic_energy_j",), "J", "gross − idle power × window length"),
    Metric((DYNAMIC_ENERGY,), "J", "per sample, gross − idle power × window length", True),
    Metric(
        ("host_other_cpu_share", "host_steal_share", "other_ela_jobs"),
        "fraction, count",
        "CPU time of other processes during the windows / host capacity (`/proc/stat` minus this process); of it, "
        "the hypervisor's steal (another guest ran on this VM's CPUs); other ela jobs holding a device lock on "
        "this host",
    ),
    Metric(
        ("process_cpus_busy",),
        "CPUs",
        "this process's CPU seconds per wall second during the windows (an eager loop that launches GPU work "
        "keeps ~1 busy; well below 1, it waited or was not scheduled)",
    ),
    Metric(
        ("gc_share", "gc_full_collections"),
        "fraction, count",
        "of the windows' wall time, the share spent in Python's garbage collector (`gc.callbacks`; nothing is "
        "launched meanwhile), and how many of its collections were full ones",
    ),
    Metric(
        tuple(GPU_STATE),
        "MHz, °C, W",
        "NVML, read before the first and after the last window (ela never changes clocks or limits)",
        shown="`gpu_{sm_clock_mhz,mem_clock_mhz,temp_c,power_limit_w}_{start,end}`",
    ),
    Metric(
        (CODECARBON_KWH, "codecarbon_cpu_energy_kwh", "codecarbon_ram_energy_kwh", "codecarbon_gpu_energy_kwh"),
        "kWh",
        "CodeCarbon, the job from its model load on; CPU is RAPL where present, else modelled (tag says which); "
        "RAM is always modelled",
    ),
    Metric(("codecarbon_duration_s",), "s", "the span CodeCarbon tracked (the job, from its model load on)"),
    Metric(
        (EMISSIONS_G,),
        "g CO2e",
        "CodeCarbon, the job from its model load on, offline grid intensity of `codecarbon.country_iso_code`",
    ),
    Metric(
        ("peak_memory_mb",),
        "MiB",
        "`torch.cuda.max_memory_allocated` on GPU, above what the job found allocated (engines kept by earlier "
        "jobs); process peak RSS on CPU (tag `ela.method.peak_memory`)",
    ),
    Metric(
        ("num_samples", "mean_token_length", "job_wall_s"),
        "count, tokens, s",
        "size of the split, mean length after truncation, job wall time",
    ),
    Metric(
        tuple(f"phase_{p}_s" for p in PHASES),
        "s",
        "wall time of each phase of the job (load, untimed reference passes, engine setup, idle power, warm-up, "
        "timed passes, energy windows); `job_wall_s` minus their sum, `code_import_s`, `device_wait_s`, "
        "`device_setup_s` and `samplers_s` is tracking and scoring",
        shown="`phase_{load,references,engine_setup,idle,warmup,timed_passes,windows}_s`",
    ),
    Metric(
        ("code_import_s",),
        "s",
        "GPU jobs, before they queue for their GPU: importing the model's transformers code and tokenizer (seconds "
        "in a new process, beside the job measuring ahead; a CPU job imports in its load phase)",
    ),
    Metric(("device_wait_s",), "s", "time the job queued for its GPU (or, on CPU, the host) behind other running jobs"),
    Metric(
        ("device_setup_s",),
        "s",
        "before the load phase: choosing the device, checking it can run the precision and attention, opening the "
        "energy meter and clearing the device (where a job's process is new, CUDA and NVML start here)",
    ),
    Metric(
        ("samplers_s",),
        "s",
        "what starting and stopping the power trace and CodeCarbon's sampler kept the job waiting outside its "
        "phases: with `measure.samplers_in=process` CodeCarbon starts while the model loads (a wait for it counts "
        "as load); as threads its whole start is here",
    ),
    Metric(("engine_setup_s",), "s", "compilation (every padded shape) or graph capture, before any timed pass"),
    Metric(
        ("padding_fraction", "distinct_shapes"),
        "fraction, count",
        "share of processed token slots that are padding; input shapes the engine prepared",
    ),
    Metric(
        (AGREE_EAGER,),
        "fraction",
        "compile/cudagraph predictions equal to an untimed eager pass in the same precision (below 0.995 is "
        "flagged in `ela.warning`)",
    ),
)
GENERATION = (  # task=generation adds these (its per-sample figures above are per request)
    Metric(
        (TTFT_P50, TTFT_P90, TTFT_P99),
        "ms",
        "time to first token: batch start to the first token (prefill + its argmax), stamped by a CUDA event on a "
        "GPU, perf_counter on a CPU; every request of a batch counts, over every timed pass",
    ),
    Metric(
        (TPOT_P50, TPOT_P90, TPOT_P99),
        "ms per token",
        "time per output token of each sequence: (its last token's step stamp − its first's) / (tokens − 1)",
    ),
    Metric((TOKENS_PER_S,), "tokens/s", "energy windows over whole generations: output tokens / window length", True),
    Metric(("prefill_tokens_per_s",), "tokens/s", "prefill windows: real prompt tokens / window length", True),
    Metric(
        (TOKEN_ENERGY, "dynamic_energy_j_per_output_token"),
        "J",
        "whole-generation window energy / output tokens in it (gross, and above idle)",
        True,
    ),
    Metric(
        (PREFILL_ENERGY, "dynamic_prefill_energy_j_per_prompt_token"),
        "J",
        "windows of the engine's prefill alone / real (unpadded) prompt tokens",
        True,
    ),
    Metric(
        (DECODE_ENERGY, "dynamic_decode_energy_j_per_output_token"),
        "J",
        "(generation − prefill energy) per pass / tokens decoded after each request's first (subtraction)",
    ),
    Metric(("prompt_tokens_mean", "output_tokens_mean"), "tokens", "per request: prompt (unpadded), and generated"),
    Metric(
        (GEN_AGREE_FP32, GEN_PREFIX_FP32),
        "fraction, tokens",
        "greedy outputs identical to an untimed fp32 eager generation's, and their mean common prefix",
    ),
    Metric((GEN_AGREE_EAGER,), "fraction", "outputs identical to eager generate's in the same precision (compile)"),
    Metric(
        ("exact_match", "token_f1"),
        "fraction",
        "task.scoring=reference: generated text vs the label column (SQuAD normalisation)",
    ),
)
SWEEP = (
    Metric(("jobs_finished", "jobs_failed", "jobs_killed"), "count", "the sweep's jobs by how they ended"),
    Metric(
        (f"best_{ENERGY}", f"best_{COST}", f"best_{P90}"),
        "J, ms, ms",
        "the parent run's: the lowest of each over its FINISHED jobs (the analysis compares them with CIs)",
    ),
)
DERIVED = (  # computed per run by ela.analyze from the metrics above
    Metric((ENERGY_PER_CORRECT,), "J", "energy per sample / accuracy"),
    Metric(("samples_per_j",), "1/J", "1 / energy per sample"),
    Metric(("dynamic_share",), "fraction", "dynamic / gross energy per sample"),
    Metric((EMISSIONS,), "mg CO2e", "window energy per sample × the grid intensity CodeCarbon used for the job"),
    Metric(
        (SPEEDUP, ENERGY_SAVING),
        "ratio, fraction",
        "fp32 cost / this cost, and 1 − this energy / fp32 energy, against the fp32 configuration with every other "
        f"varying param equal; {SPEEDUP_VS_CI}: whether the two cost CIs overlap (then no direction is claimed)",
    ),
)
METRIC_NAMES = frozenset(n for m in (*JOB, *GENERATION, *SWEEP) for n in m.all_names()) | {
    "energy_window_s_sd",
    "energy_window_s_cv",
}


def tables() -> str:
    """The README's metric, derived-metric, tag and artifact tables, as Markdown."""
    head = "| metric | unit | how it is measured |\n|---|---|---|"
    parts = [head, *(m.row() for m in (*JOB, *SWEEP)), "", "Added by `task=generation`:", "", head]
    parts += [m.row() for m in GENERATION]
    parts += ["", "Derived by `ela.analyze`:", "", head]
    parts += [m.row() for m in DERIVED]
    parts += ["", "| tag | what it says |", "|---|---|", *(t.row() for t in TAGS)]
    parts += ["", "| artifact | what it holds |", "|---|---|", *(f"| `{k}` | {v} |" for k, v in ARTIFACTS.items())]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(tables() + "\n")
