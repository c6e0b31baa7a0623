"""Is ela's measurement as good as a hand-written loop? (GPU machine)

In one process, on the same model and data, for each precision x batch: (a) a minimal hand-written
loop (tokenized batches on the GPU, forward, synchronise, NVML counter difference over >= 5 s of whole
passes), run before and after (b) ela's own job code path (`ela.job.measure_job`). Prints ms/sample and
J/sample for both and the ratios ela/raw, then CodeCarbon's GPU energy against the NVML counter for
the same window.

    python benchmarks/overhead.py --model DIR --data DIR_WITH_dev.tsv [--precisions fp32,bf16] [--batches 1,8,64]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import pynvml
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ela.config import to_container, validate
from ela.job import measure_job

CONF = Path(__file__).resolve().parent.parent / "conf"


def read_dev(data: Path) -> list[str]:
    with open(data / "dev.tsv", encoding="utf-8", newline="") as f:
        return [r[0] for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]


def raw_window(model, batches, dtype, handle, min_s: float) -> tuple[float, float, int]:
    """The hand-written reference: (seconds, joules, samples) over whole passes lasting >= min_s."""
    n = sum(len(b["input_ids"]) for b in batches)
    ctx = (lambda: torch.autocast("cuda", dtype=dtype)) if dtype is not None else torch.no_grad
    torch.cuda.synchronize()
    e0, t0, passes = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter(), 0
    with torch.inference_mode():
        while time.perf_counter() - t0 < min_s:
            for b in batches:
                with ctx():
                    model(**b)
            passes += 1
    torch.cuda.synchronize()
    t1, e1 = time.perf_counter(), pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    return t1 - t0, (e1 - e0) / 1000.0, passes * n


def ela_metrics(args, precision: str, batch: int) -> dict[str, float]:
    overrides = [
        "model=local",
        f"model.path={args.model}",
        f"dataset.path={args.data}",
        f"precision={precision}",
        f"batch={batch}",
        "device=cuda",
        "measure.repeats=1",
        f"measure.min_window_s={args.min_window_s}",
        "codecarbon.enabled=false",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        job = validate(to_container(compose("config", overrides=overrides)))
    return measure_job(job, Path("/tmp")).metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--min-window-s", type=float, default=5.0)
    args = ap.parse_args()

    pynvml.nvmlInit()
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    print(
        f"card: {pynvml.nvmlDeviceGetName(handle)}, driver {pynvml.nvmlSystemGetDriverVersion()}, "
        f"torch {torch.__version__}"
    )
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval().cuda()
    texts = read_dev(Path(args.data))
    rows = []
    print("| precision | batch | raw ms/sample | ela ms/sample | ratio | raw J/sample | ela J/sample | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        torch.backends.cuda.matmul.allow_tf32 = False
        for batch in map(int, args.batches.split(",")):
            batches = [
                {
                    k: v.cuda()
                    for k, v in tok(
                        texts[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt"
                    ).items()
                }
                for i in range(0, len(texts), batch)
            ]
            raw_window(model, batches, dtype, handle, 1.0)  # warm-up
            before = raw_window(model, batches, dtype, handle, args.min_window_s)
            ela = ela_metrics(args, precision, batch)
            after = raw_window(model, batches, dtype, handle, args.min_window_s)
            raw_ms = 1000 * (before[0] + after[0]) / (before[2] + after[2])
            raw_j = (before[1] + after[1]) / (before[2] + after[2])
            ela_ms, ela_j = 1000 / ela["throughput_samples_per_s"], ela["energy_j_per_sample"]
            rows.append((precision, batch, raw_ms, ela_ms, raw_j, ela_j))
            print(
                f"| {precision} | {batch} | {raw_ms:.3f} | {ela_ms:.3f} | {ela_ms / raw_ms:.3f} | "
                f"{raw_j:.4f} | {ela_j:.4f} | {ela_j / raw_j:.3f} |",
                flush=True,
            )

    # CodeCarbon's GPU energy vs the NVML counter over the same window (fp32, largest batch).
    from codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="USA",
        gpu_ids=[pynvml.nvmlDeviceGetIndex(handle)],
        tracking_mode="machine",
        measure_power_secs=1,
        save_to_file=False,
        log_level="error",
        allow_multiple_runs=True,
    )
    tracker.start()
    secs, joules, _ = raw_window(model, batches, None, handle, args.min_window_s)
    tracker.stop()
    cc_j = tracker.final_emissions_data.gpu_energy * 3.6e6
    print(
        f"\nsame {secs:.1f} s window: NVML counter {joules:.1f} J, "
        f"CodeCarbon GPU {cc_j:.1f} J (ratio {cc_j / joules:.3f})"
    )
    print("(CodeCarbon's span starts before the first and ends after the last synchronise: a few ms more)")


if __name__ == "__main__":
    main()
