#!/usr/bin/env bash
# Issue: the reference paper's model comparison at its own scale. VGG16, InceptionV3 and ResNet50 at
# 224 / 224 / 299 px (InceptionV3 with its auxiliary head), 3 seeds, from scratch (fine-tuned where
# $RESNET_SCRATCH_WEIGHTS holds torchvision's files), each run scored on Testing and on the carried
# external subset; one command of at most 9 minutes on one H100. Results: $OUT/compare_models-gpu.tar.gz
# (results.json, README.md, plots, each run's metrics), the log $OUT/gpu_compare.log.
#
# Before: python benchmarks/prepare_gpu_data.py. Device tool: carry [".gpu_data"], command
# "bash benchmarks/gpu_compare.sh", timeout_s 600. Check it here first: SMOKE=1 bash benchmarks/gpu_compare.sh
source "$(dirname "$0")/gpu_common.sh"
ARGS=(--scale gpu --runs-dir "$OUT/runs" --cache-dir "$OUT/cache" --out "$OUT/compare_models-gpu")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke --device cpu)
[ -n "${SEEDS:-}" ] && ARGS+=(--seeds "$SEEDS")    # a short measurement first: SEEDS=1 EPOCHS=1
[ -n "${EPOCHS:-}" ] && ARGS+=(--epochs "$EPOCHS")
{
  step "machine"; machine
  step "compare_models --scale gpu"
  timeout 560 python experiments/compare_models.py "${ARGS[@]}" 2>&1 | grep -v "^epoch .*\] loss"
  for run in "$OUT"/runs/*/; do mkdir -p "$OUT/compare_models-gpu/runs" && cp -r "$run" "$OUT/compare_models-gpu/runs/"; done
  pack compare_models-gpu "$OUT/compare_models-gpu"
  rm -rf "$OUT/runs" "$OUT/cache" "$OUT/compare_models-gpu" "$OUT/smoke"
  step "done"
} 2>&1 | tee "$OUT/gpu_compare.log"
