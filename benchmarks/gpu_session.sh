#!/usr/bin/env bash
# Every GPU measurement the open issues ask for, in one command of about 8 minutes on one H100/H200,
# for the 15 minutes of device time an issue gets. Everything it prints goes to $OUT/gpu_session.log;
# copy the figures into docs/benchmarks.md and docs/results/ by hand from that log.
#
# The dataset (52 MB) does not travel with the working tree: copy it into an ignored folder first,
#   echo /.gpu_data/ >> .git/info/exclude; mkdir -p .gpu_data; cp -r ../shared/data/brain-tumor-mri .gpu_data/
# (never committed), then on the device tool: carry [".gpu_data"], command "bash benchmarks/gpu_session.sh",
# timeout_s 600. Test it on the CPU first with SMOKE=1 (a few images, a few steps; minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_session}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -d .gpu_data/brain-tumor-mri ]; then export RESNET_SCRATCH_DATA=$PWD/.gpu_data/brain-tumor-mri; fi
if [ "${SMOKE:-0}" = 1 ]; then
  LIMIT=(--limit 256); RUN=(--epochs 1 --image-size 64); COMPILE=(--size 64 --batch 8 --rounds 1 --steps 1); TRAIN_LIMIT=(--limit 64)
else
  LIMIT=(); RUN=(--epochs 24 --image-size 224); COMPILE=(); TRAIN_LIMIT=(--limit 3200)
fi
step() { echo; echo "=== $1 ($(date +%T))"; }
{
  step "machine"
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
  step "issue 4: loader, GPU augmentation (target >= 50,000 img/s at 224 px)"
  timeout 120 python benchmarks/loader.py --epochs 2 "${LIMIT[@]}"
  step "issue 5: one epoch of ours against the tutorial loop (target >= 3x on a GPU)"
  timeout 150 python benchmarks/train.py "${TRAIN_LIMIT[@]}"
  step "issue 5: ResNet50 img/s with and without torch.compile (anchor ~3,000 img/s on an H100)"
  timeout 150 python benchmarks/compile.py "${COMPILE[@]}"
  step "issue 6: ResNet50 at 224 px from scratch (target >= 98.5% on the full Testing split)"
  timeout 300 python -m resnet_scratch train --model resnet50 "${RUN[@]}" --batch-size 128 \
    --schedule onecycle --lr 0.1 --weight-decay 5e-4 --nesterov true --label-smoothing 0.1 --crop-scale-min 0.25 \
    --runs-dir "$OUT" --name resnet50-224 --cache-dir "$OUT/cache"
  rm -rf "$OUT/cache" "$OUT"/resnet50-224/*.safetensors  # only the log, metrics and plots come back
  step "done"
} 2>&1 | tee "$OUT/gpu_session.log"
