#!/usr/bin/env bash
# Issue: the skip and dropout ablations at 224 px. Plain and residual 18/34 (shortcut options A and B)
# and the dropout arms on a seeded 15% of Training, 3 seeds each, both experiments in one command of
# at most 9 minutes on one H100 (not measured yet: run SEEDS=1 EPOCHS=1 first). Results:
# $OUT/ablate_skip-gpu.tar.gz, $OUT/ablate_dropout-gpu.tar.gz, the log $OUT/gpu_ablations.log. If the
# time runs out, the results of the runs that finished are written all the same.
#
# Before: python benchmarks/prepare_gpu_data.py. Device tool: carry [".gpu_data"], command
# "RESNET_SCRATCH_COMMIT=<git rev-parse HEAD here> bash benchmarks/gpu_ablations.sh", timeout_s 600.
# Check it here first: SMOKE=1 bash benchmarks/gpu_ablations.sh
source "$(dirname "$0")/gpu_common.sh"
ARGS=(--scale gpu --runs-dir "$WORK/runs" --cache-dir "$WORK/cache" --external none)
[ "$SMOKE" = 1 ] && ARGS+=(--smoke --device cpu)
[ -n "${SEEDS:-}" ] && ARGS+=(--seeds "$SEEDS")    # a short measurement first: SEEDS=1 EPOCHS=1
[ -n "${EPOCHS:-}" ] && ARGS+=(--epochs "$EPOCHS")
{
  step "machine"; machine
  for name in ablate_skip ablate_dropout; do
    step "$name --scale gpu"
    run $name timeout 260 $PY experiments/$name.py "${ARGS[@]}" --out "$WORK/$name-gpu"
    [ -f "$WORK/$name-gpu/results.json" ] || run $name-summary timeout 20 $PY experiments/$name.py "${ARGS[@]}" \
      --out "$WORK/$name-gpu" --summarize-only
    pack $name-gpu "$WORK/$name-gpu"
  done
  finish
} 2>&1 | tee "$OUT/gpu_ablations.log"
