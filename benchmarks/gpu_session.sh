#!/usr/bin/env bash
# Issue: the GPU path, run for real. The CUDA tests first, then every GPU measurement, in one command
# of about 8 minutes on one H100/H200; everything goes to $OUT/gpu_session.log, the ResNet50 run's
# folder (no checkpoints) to $OUT/resnet50-224.tar.gz.
#
# Before: python benchmarks/prepare_gpu_data.py (the dataset and a seeded external subset into the
# ignored .gpu_data/). On the device tool: carry [".gpu_data"], command "bash benchmarks/gpu_session.sh",
# timeout_s 600. Check it here first: SMOKE=1 bash benchmarks/gpu_session.sh (generated data, CPU, minutes).
source "$(dirname "$0")/gpu_common.sh"
if [ "$SMOKE" = 1 ]; then
  LOADER=(--epochs 2 --size 64 --device cpu); TRAIN=(--limit 32 --size 64 --batch 8 --device cpu)
  COMPILE=(--size 64 --batch 8 --rounds 1 --steps 1 --device cpu); RUN=(--epochs 1 --image-size 64 --device cpu)
else
  LOADER=(--epochs 3); TRAIN=(--limit 2560 --batch 128); COMPILE=(); RUN=(--epochs 24 --image-size 224)
fi
{
  step "machine"; machine
  step "CUDA tests (pytest -m cuda)"
  timeout 240 python -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py
  step "loader and GPU augmentation (targets: >= 5x torchvision's DataLoader; >= 50,000 img/s augmentation at 224 px)"
  timeout 120 python benchmarks/loader.py "${LOADER[@]}"
  step "one epoch, ours against the torchvision tutorial loop (target >= 3x on a GPU)"
  timeout 120 python benchmarks/train.py "${TRAIN[@]}"
  step "ResNet50 training img/s, eager and torch.compile (targets >= 3,000 and >= 4,000 on an H100)"
  timeout 150 python benchmarks/compile.py "${COMPILE[@]}"
  step "ResNet50 at 224 px from scratch (target >= 98.5% on the full Testing split, <= 2 min), and the external subset"
  timeout 240 /usr/bin/time -v python -m resnet_scratch train --model resnet50 "${RUN[@]}" --batch-size 128 \
    --schedule onecycle --lr 0.1 --weight-decay 5e-4 --nesterov true --label-smoothing 0.1 --crop-scale-min 0.25 \
    --runs-dir "$OUT" --name resnet50-224 --cache-dir "$OUT/cache" 2>&1 | grep -v "^epoch .*\] loss"
  pack resnet50-224 "$OUT/resnet50-224"
  rm -rf "$OUT/cache" "$OUT/resnet50-224" "$OUT/smoke"
  step "done"
} 2>&1 | tee "$OUT/gpu_session.log"
