# Sourced by the GPU scripts: where the data is, SMOKE mode, the scratch folder, failures, and packing
# results for the device tool (it returns at most 8 files from $OUT, 16 MiB each, so a run's folder
# comes back as one archive). $OUT holds only the log and the archives; runs and the decode cache
# live in runs/gpu-work (ignored), which a warm machine keeps between calls, so a rerun resumes them.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-runs/gpu}
WORK=runs/gpu-work
PY=${PY:-python3}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then  # generated pictures on the CPU: the commands must run, not learn
  $PY benchmarks/smoke_data.py "$WORK/smoke" >/dev/null
  export RESNET_SCRATCH_DATA=$PWD/$WORK/smoke/brain-tumor-mri RESNET_SCRATCH_EXTERNAL=$PWD/$WORK/smoke/external
  export RESNET_SCRATCH_TEST_DEVICE=cpu
elif [ -d .gpu_data/brain-tumor-mri ]; then  # benchmarks/prepare_gpu_data.py put it there
  export RESNET_SCRATCH_DATA=$PWD/.gpu_data/brain-tumor-mri RESNET_SCRATCH_EXTERNAL=$PWD/.gpu_data/external
else
  echo "error: no .gpu_data/: run python benchmarks/prepare_gpu_data.py here and carry [\".gpu_data\"]" | tee "$OUT/error.log"
  exit 2
fi
FAILED=()
step() { echo; echo "=== $1 ($(date +%T), ${SECONDS}s)"; }
# run NAME COMMAND...: run a step (its live progress lines left out; the epoch table stays), note it
# if it fails or runs out of time (124), and go on with the next
run() {
  local name=$1; shift
  "$@" 2>&1 | grep --line-buffered -v "^epoch .*\] loss"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "!!! $name failed (exit $rc)"; FAILED+=("$name:$rc"); }
}
machine() {
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  echo "commit: ${RESNET_SCRATCH_COMMIT:-unknown (pass RESNET_SCRATCH_COMMIT=\$(git rev-parse HEAD))}"
  echo "data: $RESNET_SCRATCH_DATA; external: $RESNET_SCRATCH_EXTERNAL"
}
# pack NAME FOLDER: the folder without checkpoints as $OUT/NAME.tar.gz (paths relative to it)
pack() {
  tar czf "$OUT/$1.tar.gz" -C "$2" --exclude='*.safetensors' --exclude='.lock' --exclude='*.tmp' . \
    && ls -l "$OUT/$1.tar.gz"
}
finish() {
  step "done: ${#FAILED[@]} step(s) failed ${FAILED[*]:-}"
  [ ${#FAILED[@]} -eq 0 ]
}
