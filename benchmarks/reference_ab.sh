#!/usr/bin/env bash
# Issue 12's open 1-4%: is it the fp32 reference pass, or the samplers? Only on a quiet card (quiet.py first).
#   source .device/setup.sh && bash benchmarks/reference_ab.sh OUT_DIR || bash <GPU-bound work>   (on the GPU machine)
# If quiet.py says the card is quiet (exit 0), `overhead.py` interleaves four sides round by round, their order
# rotating: the hand loop, ela's job path, ela without the fp32 reference pass, ela without its samplers (trace and
# CodeCarbon); each ela measurement takes ~25 s. Its last table pairs each side with the hand loop within a round. A
# call's limit may stop it: rows are kept in OUT_DIR/ov.csv, and RESUME=1 on the same kind of card goes on.
# Exit 3 when the card is not quiet (nothing else run). Env: MODEL (default: a random-weight RoBERTa-base shape in
# /tmp/rand, timing only), DEADLINE_S (0: none), ROUNDS (6), CONFIG (bf16 8: precision and batch),
# MAX_SPREAD (1.02: quiet.py's threshold).
set -uo pipefail
out=$(realpath -m "${1:-reference-ab-out}")
mkdir -p "$out"
model=$(realpath -m "${MODEL:-/tmp/rand}") data=$(realpath -m "$ELA_DEVICE_DATA")
[ -f "$model/config.json" ] || python benchmarks/random_model.py "$model" > /dev/null
read -r precision batch <<< "${CONFIG:-bf16 8}"
python benchmarks/quiet.py --model "$model" --data "$data" --precision "$precision" --batch "$batch" \
    --times 4 --window-s 2 --max-spread "${MAX_SPREAD:-1.02}" 2>&1 | grep -v "Warn\|Loading" | tee -a "$out/quiet.log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 3
cd benchmarks || exit 1
timeout "${DEADLINE_S:-0}" python overhead.py --model "$model" --data "$data" --precisions "$precision" \
    --batches "$batch" --rounds "${ROUNDS:-6}" --window-s 2.5 --windows 2 --idle-s 0 \
    --variant measure.fp32_reference=false --variant "measure.trace=false codecarbon.enabled=false" \
    --csv "$out/ov.csv" ${RESUME:+--resume} 2>&1 | grep -v "Warn\|HYDRA" | tee -a "$out/ov.log"
rc=${PIPESTATUS[0]}
if [ "$rc" = 124 ] && [ -s "$out/ov.csv" ]; then  # stopped by DEADLINE_S before its tables: the paired one so far
    python -c "import overhead, sys; from pathlib import Path; overhead.paired(Path(sys.argv[1]), sys.argv[2:])" \
        "$out/ov.csv" ela "ela[measure.fp32_reference=false]" "ela[measure.trace=false codecarbon.enabled=false]" \
        | tee -a "$out/ov.log"
    exit 0
fi
exit "$rc"
