#!/usr/bin/env bash
# The README's main command on a GPU, repeated (SEEDS, default "0 1 2"), with a round of a hand-written loop
# on the same card before, between and after the repetitions; then both side by side (cost per sample and
# p50 batch latency as median [min-max] over repetitions / rounds, whether the ranges overlap, and the sign
# of every speed-up vs fp32), then ela.analyze over all repetitions together.
#   bash benchmarks/headline.sh MODEL_DIR DATA_DIR [OUT_DIR]      (on the GPU machine)
# Each repetition is a multirun with one seed: the job order of `seed=0,1,2` under ela's interleaved sweeper
# (every configuration once before any twice), with a hand round between repetitions. It takes ~25 min on
# an H200: where calls end at 600 s, start it detached (setsid) from a copy of the checkout and poll.
set -euo pipefail
model=$1 data=$2 out=$(realpath -m "${3:-headline-out}")
mkdir -p "$out"
store="sqlite:///$out/headline.db"
hand() {
    python benchmarks/overhead.py --model "$model" --data "$data" --precisions fp32,tf32,fp16,bf16 --batches 1,8 \
        --rounds 1 --hand-only --window-s "${HAND_WINDOW_S:-2.5}" --windows 2 --csv "$out/hand_$1.csv" 2>&1 \
        | { grep -v Warning || true; } | tee "$out/hand_$1.log"
}
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee "$out/card.txt"
n=0
hand $n
for seed in ${SEEDS:-0 1 2}; do
    start=$(date +%s)
    python -m ela.run -m precision=fp32,tf32,fp16,bf16 batch=1,8 seed="$seed" model=local model.path="$model" \
        dataset.path="$data" tracking.uri="$store" 2>&1 | { grep -v "HYDRA\]\|Warning" || true; } \
        | tee "$out/sweep_$seed.log"
    echo "seed $seed: sweep wall time $(( $(date +%s) - start )) s" | tee -a "$out/sweep_$seed.log"
    n=$((n + 1))
    hand $n
done
python benchmarks/overhead.py --sweep-uri "$store" --hand-csv "$(ls "$out"/hand_*.csv | paste -sd,)" \
    | tee "$out/compare.md"
MLFLOW_TRACKING_URI="$store" python -m ela.analyze "sweep=[$(python benchmarks/overhead.py --list-sweeps "$store")]" \
    out="$out/analysis" log_to_mlflow=false > "$out/analyze.txt" 2>&1 || true
echo "headline done"
