#!/usr/bin/env bash
# The README's main command on a GPU, repeated (`seed=0,1,2`: ela's sweeper runs every configuration once
# before any twice), with the hand-written loop of benchmarks/overhead.py right after every job, in the job's
# process (a Hydra callback, HandAfterJob): each job and its hand measurement are seconds apart, so a card
# that drifts over minutes moves both sides of a pair together. Then both side by side: cost per sample and
# p50 batch latency as median [min-max] over the repetitions, whether the ranges overlap, each side's
# direction against fp32, and per pair ela / hand and the speed-up's sign; then ela.analyze over the sweep.
#   bash benchmarks/headline.sh MODEL_DIR DATA_DIR [OUT_DIR]      (on the GPU machine)
# Env: SEEDS (default 0,1,2), PRECISIONS (fp32,tf32,fp16,bf16), BATCHES (1,8), HAND_WINDOW_S (2.5), IDLE_WINDOW_S (0: no idle
# baseline; neither the cost per sample nor batch latency uses it, and settling plus reading it took ~20 s of
# each ~45 s job; ela's default is 5), EXTRA (more overrides, e.g. for a CPU try: PRECISIONS=fp32,bf16
# EXTRA="measure.min_window_s=0.3 dataset.limit=64").
# BRACKET (false): true runs the hand loop right before each job as well (~10 s more a job on a GPU), so the
# paired table says how much the hand loop itself moved across each job and whether ela lies inside that range.
# BY: params that tell configs apart in the comparison beyond precision and batch (e.g. with
# EXTRA="measure.fp32_reference=true,false" BY=measure.fp32_reference).
# DEADLINE_S (0: none): stop the sweep by SIGTERM that many seconds after it starts (jobs left are closed
# KILLED) and still compare what finished, so a device call of 600 s returns a result of its own.
# ~21 min on an H200 (24 jobs of ~52 s from one's start to the next's, hand loop included; measured at 3a672dc):
# longer than one device call. A run detached across calls was lost with its machine in 3 of 3 tries (the lent
# machine is given back 30 s after a call ends), so run it a part per call, each with its own out dir and
# DEADLINE_S, e.g. `SEEDS=0 DEADLINE_S=480` (8 jobs, ~7 min) or `BATCHES=8` (12 jobs, ~8 min), and merge
# the calls: overhead.py --sweep-uri sqlite:///A/headline.db,sqlite:///B/headline.db --hand-csv A/hand.csv,B/hand.csv
# On a host of several GPUs the whole grid fits one call: EXTRA="hydra/launcher=fork hydra.launcher.n_jobs=4
# gpus=all" (4 GPUs: 6 rounds of ~1 min). Each job's hand loop runs in its forked process on its own GPU (the
# CSV's gpu column), and the launcher starts no job until that process ends, so no GPU is shared
# (mechanics tried on CPU with n_jobs=2).
set -euo pipefail
model=$1 data=$2 out=$(realpath -m "${3:-headline-out}")
mkdir -p "$out"
store="sqlite:///$out/headline.db"
here=$(cd "$(dirname "$0")" && pwd)
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee "$out/card.txt"
fi
start=$(date +%s)
# shellcheck disable=SC2086  # EXTRA is a list of overrides
PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$here" timeout --signal=TERM --kill-after=60 "${DEADLINE_S:-0}" python -m ela.run -m precision="${PRECISIONS:-fp32,tf32,fp16,bf16}" \
    batch="${BATCHES:-1,8}" seed="${SEEDS:-0,1,2}" model=local model.path="$model" dataset.path="$data" tracking.uri="$store" \
    measure.idle_window_s="${IDLE_WINDOW_S:-0}" +hydra.callbacks.hand._target_=overhead.HandAfterJob +hydra.callbacks.hand.csv="$out/hand.csv" \
    +hydra.callbacks.hand.window_s="${HAND_WINDOW_S:-2.5}" +hydra.callbacks.hand.before="${BRACKET:-false}" ${EXTRA:-} 2>&1 \
    | { grep --line-buffered -v "HYDRA\]\|Warning" || true; } | tee "$out/sweep.log" \
    || echo "sweep stopped (DEADLINE_S=${DEADLINE_S:-0} or an error above): comparing what finished" | tee -a "$out/sweep.log"
echo "sweep wall time $(( $(date +%s) - start )) s" | tee -a "$out/sweep.log"
python "$here/overhead.py" --sweep-uri "$store" --hand-csv "$out/hand.csv" ${BY:+--by "$BY"} | tee "$out/compare.md"
MLFLOW_TRACKING_URI="$store" python -m ela.analyze "sweep=[$(python "$here/overhead.py" --list-sweeps "$store")]" \
    out="$out/analysis" log_to_mlflow=false > "$out/analyze.txt" 2>&1 || true
echo "headline done"
