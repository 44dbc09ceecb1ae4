#!/usr/bin/env bash
# Issue: the skip and dropout ablations at 224 px. Plain and residual 18/34 (shortcut options A and B)
# and the dropout arms on a seeded 15% of Training, 3 seeds each, both experiments in one command of
# at most 10 minutes on one H100. Results: $OUT/ablate_skip-gpu.tar.gz, $OUT/ablate_dropout-gpu.tar.gz,
# the log $OUT/gpu_ablations.log.
#
# Before: python benchmarks/prepare_gpu_data.py. Device tool: carry [".gpu_data"], command
# "bash benchmarks/gpu_ablations.sh", timeout_s 600. Check it here first: SMOKE=1 bash benchmarks/gpu_ablations.sh
source "$(dirname "$0")/gpu_common.sh"
ARGS=(--scale gpu --runs-dir "$OUT/runs" --cache-dir "$OUT/cache" --external none)
[ "$SMOKE" = 1 ] && ARGS+=(--smoke --device cpu)
[ -n "${SEEDS:-}" ] && ARGS+=(--seeds "$SEEDS")    # a short measurement first: SEEDS=1 EPOCHS=1
[ -n "${EPOCHS:-}" ] && ARGS+=(--epochs "$EPOCHS")
{
  step "machine"; machine
  for name in ablate_skip ablate_dropout; do
    step "$name --scale gpu"
    timeout 290 python experiments/$name.py "${ARGS[@]}" --out "$OUT/$name-gpu" 2>&1 | grep -v "^epoch .*\] loss"
    pack $name-gpu "$OUT/$name-gpu"
  done
  rm -rf "$OUT/runs" "$OUT/cache" "$OUT"/*-gpu "$OUT/smoke"
  step "done"
} 2>&1 | tee "$OUT/gpu_ablations.log"
