# Sourced by the GPU scripts: where the data is, SMOKE mode, the log, and packing results for the
# device tool (it returns at most 8 files from $OUT, so a run's folder comes back as one archive).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then  # generated pictures on the CPU: the commands must run, not learn
  python benchmarks/smoke_data.py "$OUT/smoke" >/dev/null
  export RESNET_SCRATCH_DATA=$PWD/$OUT/smoke/brain-tumor-mri RESNET_SCRATCH_EXTERNAL=$PWD/$OUT/smoke/external
  export RESNET_SCRATCH_TEST_DEVICE=cpu
elif [ -d .gpu_data/brain-tumor-mri ]; then  # benchmarks/prepare_gpu_data.py put it there
  export RESNET_SCRATCH_DATA=$PWD/.gpu_data/brain-tumor-mri RESNET_SCRATCH_EXTERNAL=$PWD/.gpu_data/external
fi
step() { echo; echo "=== $1 ($(date +%T))"; }
machine() {
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  echo "data: ${RESNET_SCRATCH_DATA:-default}; external: ${RESNET_SCRATCH_EXTERNAL:-default}"
}
# pack NAME FOLDER...: the folders without checkpoints, as $OUT/NAME.tar.gz
pack() {
  local name=$1; shift
  tar czf "$OUT/$name.tar.gz" --exclude='*.safetensors' --exclude='.lock' "$@" && ls -l "$OUT/$name.tar.gz"
}
