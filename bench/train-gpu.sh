#!/bin/sh
# GPU training-step benchmark: pe's step on the CUDA backend
# (bench/train_step.c, DEVICE cuda) beside PyTorch's on the same GPU
# (bench/torch_cuda_step.py), same model, input, batch and precision, in
# the same invocation; then a real pe-train run on the GPU to show whether
# the data pipeline keeps up (pe-train reports the seconds it waited for
# data). Run from the repository root on a machine with a GPU, after
# `make` (the build must have found nvcc):
#   sh bench/train-gpu.sh          (STEPS=50, PRECISIONS="fp32 tf32 bf16")
# Targets (issue: CUDA backend): at least PyTorch's images/s for resnet18
# at 32x32 batch 256, the loader waiting under 10% of the run, device
# memory no higher than PyTorch's max_memory_allocated.
set -eu
cd "$(dirname "$0")/.."
STEPS=${STEPS:-50}
PRECISIONS=${PRECISIONS:-fp32 tf32 bf16}
out=bench/out
mkdir -p $out
[ -f build/libpe.a ] && [ -f build/ldlibs ] || { echo "run make first" >&2; exit 1; }
grep -q cudart build/ldlibs || { echo "build/ has no CUDA backend (nvcc was not found)" >&2; exit 1; }
cc -O2 -D_GNU_SOURCE -DPE_BENCH_CUDA -Ilib -Iformats -Ikernels -I"${CUDA_HOME:-/usr/local/cuda}/include" \
    bench/train_step.c build/libpe.a $(cat build/ldlibs) -o $out/train_step_gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "date: $(date -u +%Y-%m-%d), steps: $STEPS (after warm-up)"
for prec in $PRECISIONS; do
    echo "--- resnet18 32x32x3 batch 256, $prec"
    $out/train_step_gpu resnet18 32 3 256 "$STEPS" 1 cuda "$prec"
    for fmt in nchw nhwc; do
        python3 bench/torch_cuda_step.py resnet18 32 3 256 "$STEPS" "$prec" "$fmt"
    done
done
# the data pipeline: pe-train on synthetic 32x32 RGB images, 4 epochs
echo "--- pe-train --device cuda: time waiting for data"
W=$(mktemp -d)
python3 - "$W/img" <<'PYEOF'
import os, random, sys
random.seed(1)
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
for i in range(8192):
    with open(os.path.join(root, "%05d.ppm" % i), "wb") as f:
        f.write(b"P6\n32 32\n255\n" + bytes(random.getrandbits(8) for _ in range(32 * 32 * 3)))
PYEOF
build/bin/pe-ingest -q -S "$W/s.lmdb" --set syn "$W/img" > /dev/null
build/bin/pe-train -S "$W/s.lmdb" --set syn --arch resnet18 --size 32 --batch 256 --epochs 4 \
    --device cuda -o "$W/enc.st"
rm -rf "$W"
