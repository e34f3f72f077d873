# Checkpoints cross between pe and PyTorch both ways: pe-train writes one
# step of each architecture and PyTorch loads it (strict, torchvision's
# names; width 1 into torchvision's own resnet18) and computes the same
# features; PyTorch writes random encoders and pe computes the same
# features. tests/ref/interop.py compares; the build's test_interop runs
# pe's forward. Skipped (exit 0) only when PyTorch is not installed.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
$PY -c 'import torch, torchvision' 2>/dev/null ||
    { echo "skip: $PY cannot import torch and torchvision (python3-torch, python3-torchvision)"; exit 0; }
TI="$BIN/../tests/test_interop"
[ -x "$TI" ] || fail "no $TI (make builds it)"
REF="$HERE/../ref/interop.py"

# 16 Fashion-MNIST images: a 16-image IDX file cut from the t10k one
{ printf '\000\000\010\003\000\000\000\020\000\000\000\034\000\000\000\034'
  gzip -dc $fm | tail -c +17 | head -c 12544; } > tiny-idx3-ubyte
[ "$(wc -c < tiny-idx3-ubyte)" = 12560 ] || fail "cutting the IDX file"
pe-ingest -q --set tiny tiny-idx3-ubyte >/dev/null || fail "ingest"

# one step of each architecture (2 views of 4 images); resnet18 on the gray
# images replicated to 3 channels at 32x32
one="--set tiny --batch 4 --max-steps 1 -j 2"
expect_rc 0 pe-train $one --arch small --size 28 -o small.st
expect_rc 0 pe-train $one --arch resnet18 --width 0.125 --channels 3 --size 32 -o r8.st
expect_rc 0 pe-train $one --arch resnet18 --channels 3 --size 32 --optim sgd -o r1.st
mkdir work

# pe -> PyTorch
for c in small.st r8.st r1.st; do
    $PY "$REF" pe2torch "$TI" $c work || fail "pe -> PyTorch: $c"
done
# PyTorch -> pe
$PY "$REF" torch2pe "$TI" small 1 1 28 work || fail "PyTorch -> pe: small"
$PY "$REF" torch2pe "$TI" resnet18 0.125 3 32 work || fail "PyTorch -> pe: resnet18 width 0.125"

# another architecture's file is refused, naming the tensor
$PY -c 'import numpy; numpy.zeros(2 * 3 * 32 * 32, "<f4").tofile("x.f32")' || fail "input"
expect_rc 1 "$TI" small 1 3 32 work/torch_resnet18.safetensors x.f32 2 y.f32
err_has "no tensor '0.weight'"
expect_rc 1 "$TI" resnet18 0.25 3 32 work/torch_resnet18.safetensors x.f32 2 y.f32
err_has "conv1.weight"
exit 0
