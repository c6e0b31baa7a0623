#!/usr/bin/env bash
# The README's main command on a GPU, between two rounds of a hand-written loop on the same card, then
# both side by side (cost per sample and p50 batch latency, and the sign of every speed-up vs fp32).
#   bash benchmarks/headline.sh MODEL_DIR DATA_DIR [OUT_DIR]      (on the GPU machine)
# PART=1 runs the first hand round and the sweep, PART=2 the second round and the comparison: two device
# calls of under 600 s each, back to back on the same warm machine (the default runs both).
set -euo pipefail
model=$1 data=$2 out=${3:-headline-out} part=${PART:-all}
mkdir -p "$out"
hand=(python benchmarks/overhead.py --model "$model" --data "$data" --precisions fp32,tf32,fp16,bf16
      --batches 1,8 --rounds 1 --hand-only --window-s "${HAND_WINDOW_S:-2.5}" --windows 2)
store="sqlite:///$(realpath "$out")/headline.db"
if [ "$part" != 2 ]; then
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee "$out/card.txt"
"${hand[@]}" --csv "$out/hand_before.csv" 2>&1 | grep -v Warning | tee "$out/hand_before.log"
start=$(date +%s)
python -m ela.run -m precision=fp32,tf32,fp16,bf16 batch=1,8 model=local model.path="$model" \
    dataset.path="$data" tracking.uri="$store" 2>&1 | grep -v "HYDRA\]\|Warning" | tee "$out/sweep.log" || true
echo "sweep wall time: $(( $(date +%s) - start )) s" | tee -a "$out/sweep.log"
fi
[ "$part" = 1 ] && exit 0
"${hand[@]}" --csv "$out/hand_after.csv" 2>&1 | grep -v Warning | tee "$out/hand_after.log"
python benchmarks/overhead.py --model "$model" --data "$data" --sweep-uri "$store" \
    --hand-csv "$out/hand_before.csv,$out/hand_after.csv" | tee "$out/compare.md"
MLFLOW_TRACKING_URI="$store" python -m ela.analyze out="$out/analysis" log_to_mlflow=false > "$out/analyze.txt" 2>&1 || true
