#!/bin/sh
# train-fashion-mnist.sh - SimCLR pre-training of pe's `small` encoder on
# Fashion-MNIST (Debian package dataset-fashion-mnist) with the kNN monitor
# after every epoch: the pe side of bench/torch_train.py, which runs the same
# configuration in PyTorch.
#
# Usage: [EPOCHS=E] [TRAIN_LIMIT=N] [TEST_LIMIT=N] [SEED=S] [THREADS=J] \
#            sh examples/train-fashion-mnist.sh [OUTDIR]
#   The pe programs must be on PATH (PATH=$PWD/build/bin:$PATH after make).
#   EPOCHS       training epochs (default 20)
#   TRAIN_LIMIT  train on the first N images of the training file, in file
#                order (default 0: all 60000)
#   TEST_LIMIT   score the first N images of the test file, in file order
#                (default 2000; 0: all 10000)
#   BANK_LIMIT   kNN memory bank: the first N training images, set train-N
#                (default 0: the training set itself)
#   SEED         pe-train --seed (default 1)
#   THREADS      pe-train -j (default: pe-train's, the online CPUs)
#   Store: $PE_STORE when set (the sets are made when missing and reused when
#   present), else a temporary store removed at the end.
#   OUTDIR (default .) receives fm-small.safetensors (the checkpoint) and
#   fm-small.log (one JSON line per epoch; emptied first when it exists).
#
# Sets. The full files go into sets train and test (with the class names of
# fashion-mnist.classes). A limit N makes set train-N (or test-N) from a copy
# of the IDX file cut to its first N images and labels, so the subset is the
# first N images in file order: the images bench/torch_train.py --train-limit
# and --test-limit take. (pe-train --knn-limit N would score the first N test
# images in key order, which is another subset; `pe-ls --set train | head -n N`
# likewise lists a key-order subset.) The images are the same bytes as those
# of train and test, so the store holds them once.
#
# The memory bank of the kNN monitor is the training set (train-N with a
# limit) or, with BANK_LIMIT, its first N images (bench/torch_train.py
# --bank-limit N); its test images the test set (test-N); k 200, T 0.5.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
classes=$here/fashion-mnist.classes
EPOCHS=${EPOCHS:-20}
TRAIN_LIMIT=${TRAIN_LIMIT:-0}
TEST_LIMIT=${TEST_LIMIT:-2000}
BANK_LIMIT=${BANK_LIMIT:-0}
SEED=${SEED:-1}
THREADS=${THREADS:-}
outdir=${1:-.}

for p in pe-ingest pe-ls pe-train; do
    command -v "$p" >/dev/null 2>&1 || {
        echo "$0: $p not on PATH (try: make && PATH=\$PWD/build/bin:\$PATH)" >&2
        exit 1
    }
done
[ -r "$fm/train-images-idx3-ubyte.gz" ] || {
    echo "$0: no Fashion-MNIST in $fm (apt-get install dataset-fashion-mnist)" >&2
    exit 1
}
for v in "$EPOCHS" "$TRAIN_LIMIT" "$TEST_LIMIT" "$BANK_LIMIT" "$SEED"; do
    case $v in
    '' | *[!0-9]*) echo "$0: EPOCHS, TRAIN_LIMIT, TEST_LIMIT, BANK_LIMIT and SEED take numbers" >&2; exit 2 ;;
    esac
done
if [ "$TRAIN_LIMIT" -gt 60000 ] || [ "$BANK_LIMIT" -gt 60000 ] || [ "$TEST_LIMIT" -gt 10000 ]; then
    echo "$0: Fashion-MNIST has 60000 training and 10000 test images" >&2
    exit 2
fi
[ -d "$outdir" ] || { echo "$0: $outdir: no such folder" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pe-example.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
PE_STORE=${PE_STORE:-$work/pe.lmdb}
export PE_STORE

have_set() {
    [ -d "$PE_STORE" ] && pe-ls --sets | cut -f1 | grep -qx "$1"
}

# be32 N: N as 4 bytes, big-endian (the IDX header's count); the format
# strings are octal escapes built on purpose.
# shellcheck disable=SC2059
be32() {
    printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))"
    printf "\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"
}

# subset SET PREFIX N: set SET from the first N images of PREFIX-images-idx3-ubyte.gz
# and PREFIX-labels-idx1-ubyte.gz. An IDX images file is a 16-byte header
# (magic 00 00 08 03, count, rows 28, columns 28) and count x 784 bytes; a
# labels file an 8-byte header (magic 00 00 08 01, count) and count bytes.
subset() {
    gzip -dc "$fm/$2-images-idx3-ubyte.gz" | tail -c +17 > "$work/body"
    gzip -dc "$fm/$2-labels-idx1-ubyte.gz" | tail -c +9 > "$work/lbody"
    {
        printf '\000\000\010\003'; be32 "$3"; be32 28; be32 28
        dd if="$work/body" bs=784 count="$3" 2>/dev/null
    } > "$work/$1-images-idx3-ubyte"
    {
        printf '\000\000\010\001'; be32 "$3"
        dd if="$work/lbody" bs="$3" count=1 2>/dev/null
    } > "$work/$1-labels-idx1-ubyte"
    rm -f "$work/body" "$work/lbody"
    pe-ingest -q --set "$1" --classes "$classes" \
        --labels "$work/$1-labels-idx1-ubyte" "$work/$1-images-idx3-ubyte" > "$work/$1.keys"
    echo "ingested the first $(wc -l < "$work/$1.keys") images of $2 into set $1"
}

# 1. Ingest the full sets, then the subsets the limits ask for.
for pair in train:train-images-idx3-ubyte.gz test:t10k-images-idx3-ubyte.gz; do
    set_name=${pair%%:*}
    file=${pair#*:}
    if have_set "$set_name"; then
        echo "set $set_name is already in $PE_STORE"
        continue
    fi
    pe-ingest -q --set "$set_name" --classes "$classes" "$fm/$file" > "$work/$set_name.keys"
    echo "ingested $(wc -l < "$work/$set_name.keys") images into set $set_name"
done
train_set="train"
test_set="test"
if [ "$TRAIN_LIMIT" -gt 0 ] && [ "$TRAIN_LIMIT" -lt 60000 ]; then
    train_set=train-$TRAIN_LIMIT
    if have_set "$train_set"; then
        echo "set $train_set is already in $PE_STORE"
    else
        subset "$train_set" train "$TRAIN_LIMIT"
    fi
fi
bank_set=
if [ "$BANK_LIMIT" -gt 0 ] && { [ "$TRAIN_LIMIT" -eq 0 ] || [ "$BANK_LIMIT" -lt "$TRAIN_LIMIT" ]; } &&
    [ "$BANK_LIMIT" -lt 60000 ]; then
    bank_set=train-$BANK_LIMIT
    if have_set "$bank_set"; then
        echo "set $bank_set is already in $PE_STORE"
    else
        subset "$bank_set" train "$BANK_LIMIT"
    fi
fi
if [ "$TEST_LIMIT" -gt 0 ] && [ "$TEST_LIMIT" -lt 10000 ]; then
    test_set=test-$TEST_LIMIT
    if have_set "$test_set"; then
        echo "set $test_set is already in $PE_STORE"
    else
        subset "$test_set" t10k "$TEST_LIMIT"
    fi
fi
echo "--- sets"
pe-ls --sets

# 2. Train: the small model at 28x28, batch 256, Adam lr 1e-3 wd 1e-6,
#    temperature 0.5, the SimCLR augmentations (pe-train's defaults), the
#    normalisation computed from the training set; kNN monitor after every
#    epoch. pe-train appends to its log, so start it empty.
: > "$outdir/fm-small.log"
echo "--- pe-train --set $train_set --epochs $EPOCHS --knn-set $test_set"
set -- --set "$train_set" --arch small --size 28 --batch 256 --epochs "$EPOCHS" --seed "$SEED" \
    -o "$outdir/fm-small.safetensors" --log "$outdir/fm-small.log" --knn-set "$test_set"
if [ -n "$bank_set" ]; then set -- "$@" --knn-bank "$bank_set"; fi
if [ -n "$THREADS" ]; then set -- "$@" -j "$THREADS"; fi
pe-train "$@"

# 3. The curve: epoch, mean loss, kNN accuracy, images/s, training seconds.
echo "--- $outdir/fm-small.log"
cat "$outdir/fm-small.log"
