#!/usr/bin/env bash
# benchmarks/generation.py's grid on a GPU in device calls of under 600 s (on the GPU machine, after
# `source .device/setup.sh`): the random-weight shapes are made first if this machine has none.
#   PART=1: the trained tiny LM (compiled vs eager: agreement on real text), then the Llama-3.2-1B shape,
#           bf16_pure, compiled (ela's CUDA graphs), and again with inductor's coordinate-descent tuning.
#   PART=2: the Qwen2.5-0.5B shape, bf16_pure, eager and compiled; the tiny LM's quality by precision.
#   PART=3: the Llama-3.2-1B shape, bf16_pure, eager and cudagraph, with the hand-timed cross-check.
set -euo pipefail
out=${1:-generation-out} part=${PART:-1} data=$ELA_DEVICE_DATA tiny=.device/models/tiny-llama-sst2
mkdir -p "$out"
for s in llama-3.2-1b qwen2.5-0.5b; do
    [ -f "/tmp/models/$s/config.json" ] || python .device/make_lm.py --kind shape --shape "$s" \
        --tokenizer "$tiny" --out "/tmp/models/$s" > /dev/null
done
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$out/card_$part.txt"
run() { python benchmarks/generation.py --data "$data" --window-s 1.5 "$@" 2>&1 | grep -v "Warning\|warn(" ; }
ro=(--engines compile --precisions bf16_pure)
case $part in
1) run --models "$tiny" --precisions bf16_pure,fp32 --batches 8 --engines compile | tee "$out/tiny.md"
   run --models /tmp/models/llama-3.2-1b "${ro[@]}" --batches 1,8,64 | tee "$out/llama1b.md"
   run --models /tmp/models/llama-3.2-1b "${ro[@]}" --batches 1,64 --set engine.coordinate_descent=true \
       | tee "$out/llama1b_coordinate_descent.md" ;;
2) run --models /tmp/models/qwen2.5-0.5b --precisions bf16_pure --batches 1,8,64 --engines eager,compile \
       | tee "$out/qwen.md"
   run --models "$tiny" --quality "$tiny" --precisions fp32,bf16,bf16_pure --batches 64 --engines compile \
       | tee "$out/quality.md" ;;
3) run --models /tmp/models/llama-3.2-1b --precisions bf16_pure --batches 1,8,64 --engines eager,cudagraph --hand \
       | tee "$out/llama1b_eager_cudagraph.md" ;;
esac
