#!/usr/bin/env bash
# Issue: the GPU path, run for real. The CUDA tests, then every GPU measurement, most important
# first, in one command of at most 9 minutes on one H100/H200 (step timeouts add up to 540 s).
# Everything goes to $OUT/gpu_session.log, the ResNet50 run's folder (no checkpoints) to
# $OUT/resnet50-224.tar.gz.
#
# Before: python benchmarks/prepare_gpu_data.py (the dataset and a seeded external subset into the
# ignored .gpu_data/). Device tool: carry [".gpu_data"], command
# "RESNET_SCRATCH_COMMIT=<git rev-parse HEAD here> bash benchmarks/gpu_session.sh", timeout_s 600.
# Check it here first: SMOKE=1 bash benchmarks/gpu_session.sh (generated data, the CPU, minutes).
source "$(dirname "$0")/gpu_common.sh"
if [ "$SMOKE" = 1 ]; then
  RUN=(--epochs 1 --image-size 64 --device cpu); LOADER=(--epochs 2 --size 64 --device cpu)
  TRAIN=(--limit 32 --size 64 --batch 8 --device cpu); COMPILE=(--size 64 --batch 8 --rounds 1 --steps 1 --device cpu)
  COMPILE_LIMIT=240  # compiling on a CPU takes minutes
else
  RUN=(--epochs 24 --image-size 224); LOADER=(--epochs 3); TRAIN=(--limit 2560 --batch 128); COMPILE=()
  COMPILE_LIMIT=90
fi
{
  step "machine"; machine
  step "CUDA tests (pytest -m cuda)"
  run cuda-tests timeout 120 $PY -m pytest -m cuda -q -p no:cacheprovider --durations=5 tests/test_cuda.py
  step "ResNet50 at 224 px from scratch (target >= 98.5% on the full Testing split, <= 2 min), and the external subset"
  start=$SECONDS
  run resnet50 timeout 200 $PY -m resnet_scratch train --model resnet50 "${RUN[@]}" --batch-size 128 \
    --schedule onecycle --lr 0.1 --weight-decay 5e-4 --nesterov true --label-smoothing 0.1 --crop-scale-min 0.25 \
    --checkpoint-every 8 --runs-dir "$WORK" --name resnet50-224 --cache-dir "$WORK/cache"
  echo "ResNet50 command: $((SECONDS - start)) s in all"
  pack resnet50-224 "$WORK/resnet50-224"
  step "loader and GPU augmentation (targets: >= 5x torchvision's DataLoader; >= 50,000 img/s augmentation at 224 px)"
  run loader timeout 60 $PY benchmarks/loader.py "${LOADER[@]}"
  step "one epoch, ours against the torchvision tutorial loop (target >= 3x on a GPU)"
  run train-benchmark timeout 70 $PY benchmarks/train.py "${TRAIN[@]}"
  step "ResNet50 training img/s, eager and torch.compile (targets >= 3,000 and >= 4,000 on an H100)"
  run compile timeout $COMPILE_LIMIT $PY benchmarks/compile.py "${COMPILE[@]}"
  finish
} 2>&1 | tee "$OUT/gpu_session.log"
