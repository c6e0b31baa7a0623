#!/usr/bin/env bash
# Parallel jobs on a multi-GPU host, and a CUDA out-of-memory job inside a sweep (GPU machine).
#   bash benchmarks/parallel_gpus.sh MODEL_DIR DATA_DIR [OUT_DIR]
# DATA_DIR holds SST-2 dev.tsv and train.tsv. Prints, per sweep, where and when each job ran.
set -uo pipefail
model=$1 data=$2 out=${3:-/tmp/ela-parallel}
mkdir -p "$out"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
common=(measure.idle_max_settle_s=5 measure.idle_window_s=2 model=local "model.path=$model" "dataset.path=$data" "tracking.uri=sqlite:///$out/mlflow.db")
nvidia-smi -L

sweep() {  # experiment, then ela.run arguments
  local exp=$1
  shift
  local t0=$SECONDS
  python -m ela.run -m "${common[@]}" "tracking.experiment=$exp" "hydra.sweep.dir=$out/multirun/$exp" "$@" \
    >"$out/$exp.log" 2>&1
  echo -e "\n## $exp: exit $?, $((SECONDS - t0)) s wall"
  python "$here/sweep_table.py" --uri "sqlite:///$out/mlflow.db" --experiment "$exp" --placement
}

# 1. joblib: 2 worker processes, 4 jobs; each job claims a free GPU and is pinned to it.
sweep joblib hydra/launcher=joblib_gpus hydra.launcher.n_jobs=2 gpus=all precision=fp32,bf16 batch=64 seed=0,1 \
  measure.repeats=1 measure.min_window_s=3
python "$here/sweep_table.py" --uri "sqlite:///$out/mlflow.db" --experiment joblib

# 2. submitit_local: every job its own process (the code path of Slurm).
sweep submitit hydra/launcher=submitit_local_gpus gpus=all precision=fp32,bf16 batch=64 \
  measure.repeats=1 measure.min_window_s=3

# 3. CUDA OOM: all of SST-2 train padded to 512 tokens in one batch, then the dev split in one batch
#    in the same process; the first must end FAILED (OutOfMemoryError), the second FINISHED.
sweep oom dataset.local_file=train.tsv dataset.limit=70000,872 batch=100000 model.max_length=512 \
  'engine.buckets=[512]' measure.repeats=1 measure.min_window_s=1
python "$here/sweep_table.py" --uri "sqlite:///$out/mlflow.db" --experiment oom
grep -h "OutOfMemory\|FINISHED\|FAILED" "$out/oom.log" | cut -c1-300
