#!/usr/bin/env bash
# Issue: the reference paper's model comparison at its own scale. VGG16, InceptionV3 and ResNet50 at
# 224 / 224 / 299 px (InceptionV3 with its auxiliary head), 3 seeds, 8 epochs, from scratch (fine-tuned
# where $RESNET_SCRATCH_WEIGHTS holds torchvision's files), each run scored on Testing and on the
# carried external subset; one command of at most 9 minutes on one H100 (not measured yet: run
# SEEDS=1 EPOCHS=1 first). Results: $OUT/compare_models-gpu.tar.gz (results.json, README.md, plots,
# each run's config and metrics), the log $OUT/gpu_compare.log. If the time runs out, the results of
# the runs that finished are written all the same.
#
# Before: python benchmarks/prepare_gpu_data.py. Device tool: carry [".gpu_data"], command
# "RESNET_SCRATCH_COMMIT=<git rev-parse HEAD here> bash benchmarks/gpu_compare.sh", timeout_s 600.
# Check it here first: SMOKE=1 bash benchmarks/gpu_compare.sh
source "$(dirname "$0")/gpu_common.sh"
RESULTS=$WORK/compare_models-gpu
ARGS=(--scale gpu --runs-dir "$WORK/runs" --cache-dir "$WORK/cache" --out "$RESULTS")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke --device cpu)
[ -n "${SEEDS:-}" ] && ARGS+=(--seeds "$SEEDS")    # a short measurement first: SEEDS=1 EPOCHS=1
[ -n "${EPOCHS:-}" ] && ARGS+=(--epochs "$EPOCHS")
{
  step "machine"; machine
  step "compare_models --scale gpu"
  run compare timeout 520 $PY experiments/compare_models.py "${ARGS[@]}"
  [ -f "$RESULTS/results.json" ] || run summary timeout 30 $PY experiments/compare_models.py "${ARGS[@]}" --summarize-only
  mkdir -p "$RESULTS/runs"
  for run in "$WORK"/runs/*/; do
    mkdir -p "$RESULTS/runs/$(basename "$run")"
    cp "$run"/*.json "$run"/*.jsonl "$run"/*.md "$RESULTS/runs/$(basename "$run")/" 2>/dev/null
  done
  pack compare_models-gpu "$RESULTS"
  finish
} 2>&1 | tee "$OUT/gpu_compare.log"
