#!/usr/bin/env bash
# Issue 14's command on the GPU machine, continued across device calls with ela's `resume=true`:
#   python -m ela.run -m task=generation model=qwen2_5_0_5b_instruct precision=fp32,bf16,bf16_pure batch=1,8,64 engine=eager,compile
# with the Qwen2.5-0.5B shape as model.path (random weights: timing and energy only, no quality figure of it is a
# result) and dataset.limit=64 (the smallest split that fills batch 64: an eager batch-1 job on the whole split
# decodes for about an hour). 18 jobs rarely fit one call, so a call stops at DEADLINE_S (SIGTERM: the running job
# ends KILLED), leaves the store in OUT_DIR/gen-store.tgz, and the next call carries that in and resumes (FINISHED
# jobs are skipped, the others run, the same parent run goes on). The store sits at the same absolute path on every
# machine, so the artifact locations it records stay true. Then ela.analyze over the sweep so far, and the seconds
# each job run spent, phase by phase (a KILLED one up to its stop: what the next call must leave room for).
#   source .device/setup.sh && bash benchmarks/generation_cli.sh OUT_DIR          (on the GPU machine)
#   cp <files_at>/gen-store.tgz .device/ and, next call: IN=.device/gen-store.tgz DEADLINE_S=430 bash ...
# Across sessions (the work folder is fresh each time): commit it as benchmarks/results/gen-store.tgz (~1 MB with
# 10 GPU jobs' power traces) and go on with IN=benchmarks/results/gen-store.tgz, on the same kind of card (name
# `kind: nvidia-h100-x1` in the call: a store from another card is refused, exit 3).
# Env: IN (a gen-store.tgz to go on from), DEADLINE_S (0: none; seconds from this script's start (the model made
# there included) to the sweep's SIGTERM. After it, closing the KILLED job takes 10-60 s (a job compiling stops when its
# compile ends; SIGKILL after 60 s leaves it RUNNING, and resume runs it again) and the analysis 20-60 s: in a 600 s
# call leave ~130 s after it. 2026-12-08: sweep deadlines of 542 s, and of 520 s less the set-up counted from after a
# cold machine made the model, ran past the call's 600 s (the second returned nothing); 426 s from the start: 524 s),
# LIMIT (64), MODEL_ARGS (the shape; a CPU try: MODEL_ARGS="model=local model.path=../shared/models/tiny-llama-sst2"),
# DATA ($ELA_DEVICE_DATA), EXTRA (more overrides, e.g. "hydra/launcher=fork hydra.launcher.n_jobs=2 gpus=all" on 2
# GPUs), STORE (/tmp/gen-store), FORCE_IN (1: replace a store found on the machine by IN).
set -euo pipefail
began=$(date +%s)
out=$(realpath -m "${1:-generation-cli-out}") store=${STORE:-/tmp/gen-store}
mkdir -p "$out"
# Each store has an id, made when it is new and packed with it. A warm machine's store (the call before, on this
# machine) is kept only when it is IN's own store, then at least as new as IN; any other store there (another
# grid, a CPU try, a refused IN) is replaced by IN. FORCE_IN=1 always takes IN.
in_id=""
[ -z "${IN:-}" ] || in_id=$(tar xzf "$IN" -O ./store_id 2> /dev/null) || true
if [ -n "${IN:-}" ] && [ -z "${FORCE_IN:-}" ] && [ -s "$store/gen.db" ] && [ -n "$in_id" ] \
    && [ "$(cat "$store/store_id" 2> /dev/null)" = "$in_id" ]; then
    echo "the store at $store is IN's own, left by the call before on this machine: going on from it" \
        | tee -a "$out/sweep.log"
elif [ -n "${IN:-}" ]; then
    [ ! -e "$store" ] || echo "replacing what is at $store with IN=$IN" | tee -a "$out/sweep.log"
    rm -rf "$store" && mkdir -p "$store" && tar xzf "$IN" -C "$store"
elif [ -s "$store/gen.db" ]; then
    echo "no IN: going on from the store at $store" | tee -a "$out/sweep.log"
else
    echo "no IN and no store at $store: a new sweep" | tee -a "$out/sweep.log"
fi
mkdir -p "$store"
[ -s "$store/store_id" ] || python -c "import uuid; print(uuid.uuid4().hex)" > "$store/store_id"
# One kind of card per sweep: a store from another refuses to resume here (ela.analyze would warn of the mix)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1) || true
card=${card:-cpu}
if [ -f "$store/card.txt" ] && [ "$(cat "$store/card.txt")" != "$card" ] && [ -z "${ALLOW_OTHER_CARD:-}" ]; then
    echo "this store's jobs ran on $(cat "$store/card.txt"), this machine has $card: resume on that kind of card" \
        "(ALLOW_OTHER_CARD=1 mixes them; ela.analyze then warns, and card=... analyses one)" | tee -a "$out/sweep.log"
    exit 3
fi
echo "$card" > "$store/card.txt"
if [ -z "${MODEL_ARGS:-}" ]; then
    [ -f /tmp/models/qwen2.5-0.5b/config.json ] || python .device/make_lm.py --kind shape --shape qwen2.5-0.5b \
        --tokenizer .device/models/tiny-llama-sst2 --out /tmp/models/qwen2.5-0.5b > /dev/null
    MODEL_ARGS="model=qwen2_5_0_5b_instruct model.path=/tmp/models/qwen2.5-0.5b"
fi
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee -a "$out/card.txt"
fi
start=$(date +%s)
# Batch outermost, largest first: a call finishes the short jobs (~1-2 min each) before a batch-1 one (4-8 min),
# so less is lost to the deadline, and jobs of one batch size run together in one process, where later ones take
# the earlier ones' reference passes (reuse_references). Resume matches the grid whatever the order of its values.
sweep_s=0  # timeout's 0: no deadline
if [ "${DEADLINE_S:-0}" -gt 0 ]; then
    sweep_s=$(( DEADLINE_S - (start - began) ))
    echo "DEADLINE_S=$DEADLINE_S from the script's start: the sweep gets $sweep_s s" | tee -a "$out/sweep.log"
    [ "$sweep_s" -ge 60 ] || { echo "under 60 s left for the sweep: not started" | tee -a "$out/sweep.log"; exit 4; }
fi
# shellcheck disable=SC2086  # MODEL_ARGS and EXTRA are lists of overrides
timeout --signal=TERM --kill-after=60 "$sweep_s" python -m ela.run -m task=generation $MODEL_ARGS \
    batch="${BATCHES:-64,8,1}" precision="${PRECISIONS:-fp32,bf16,bf16_pure}" engine="${ENGINES:-eager,compile}" \
    dataset.path="${DATA:-$ELA_DEVICE_DATA}" dataset.limit="${LIMIT:-64}" tracking.uri="sqlite:///$store/gen.db" \
    resume=true ${EXTRA:-} 2>&1 | { grep --line-buffered -v "HYDRA\]\|Warning" || true; } | tee -a "$out/sweep.log" \
    || status=$?
case ${status:-0} in
    0) ;;
    124 | 137) echo "sweep stopped at its deadline ($sweep_s s): the next call resumes it" | tee -a "$out/sweep.log" ;;
    *) echo "sweep exited $status before DEADLINE_S (a failed job or an error above)" | tee -a "$out/sweep.log" ;;
esac
echo "sweep wall time $(( $(date +%s) - start )) s" | tee -a "$out/sweep.log"
# The store first: the analysis below takes 20-60 s, and a call's hard limit that cuts it must not lose the
# jobs (2026-12-08: a call ended during ela.analyze, before the store was packed, and only the warm machine
# kept it). It holds every finished job; the analysis can be redone from it anywhere.
tar czf "$out/gen-store.tgz.part" -C "$store" . && mv "$out/gen-store.tgz.part" "$out/gen-store.tgz" \
    || echo "packing the store into $out/gen-store.tgz failed (above): the jobs are still in $store" \
    | tee -a "$out/sweep.log"
MLFLOW_TRACKING_URI="sqlite:///$store/gen.db" python -m ela.analyze out="$out/analysis" log_to_mlflow=false \
    > "$out/analyze.txt" 2>&1 || true
# Where each job's time went (a KILLED job's too, up to its stop): what the next call must leave room for
MLFLOW_TRACKING_URI="sqlite:///$store/gen.db" python - << 'PY' 2>&1 | grep -v "Warn\|warn" | tee -a "$out/sweep.log" || true
import mlflow

from ela.schema import PHASES

runs = mlflow.search_runs(search_all_experiments=True)
if "tags.ela.run_kind" in runs:
    runs = runs[runs["tags.ela.run_kind"] != "sweep"]  # the jobs, not their sweeps' parent runs
named = ["job_wall_s", "device_wait_s", *(f"phase_{p}_s" for p in PHASES)]  # queued, then each phase
cols = [c for n in named if (c := f"metrics.{n}") in runs]
if not runs.empty and "metrics.job_wall_s" in runs:
    table = runs.set_index("tags.mlflow.runName")[["status", *cols]].sort_values("metrics.job_wall_s")
    names = {c: c.removeprefix("metrics.").removeprefix("phase_") for c in cols}
    print("seconds per job run:", table.rename(columns=names).round(1).to_string(), sep="\n")
PY
echo "generation_cli done"
