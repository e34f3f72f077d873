#!/bin/sh
# The main job on the default store (make demo): ingest Fashion-MNIST's
# training and test sets (Debian package dataset-fashion-mnist) with their
# class names into $PE_STORE (default ./pe.lmdb), check the store, and
# print a summary. Re-running replaces the two sets.
set -eu
BIN=${1:-build/bin}
PATH="$(cd "$BIN" && pwd):$PATH"
export PATH
here=$(cd "$(dirname "$0")/.." && pwd)
fm=/usr/share/datasets/fashion-mnist
store=${PE_STORE:-./pe.lmdb}
echo "pe demo: store $store"
if [ -d "$store" ]; then
    pe-rm -S "$store" -f train test
fi
pe-ingest -S "$store" --set train --classes "$here/examples/fashion-mnist.classes" \
    "$fm/train-images-idx3-ubyte.gz" >/dev/null
pe-ingest -S "$store" --set test --classes "$here/examples/fashion-mnist.classes" \
    "$fm/t10k-images-idx3-ubyte.gz" >/dev/null
pe-rm -S "$store" --gc
echo "--- sets (name, distinct images, total, classes)"
pe-ls -S "$store" --sets
echo "--- store"
pe-ls -S "$store" --stats
echo "--- consistency"
pe-ls -S "$store" --check | tail -1
echo "--- per class in test"
for c in $(seq 0 9); do
    printf '%s\t%s\n' "$(sed -n "$((c + 1))p" "$here/examples/fashion-mnist.classes")" \
        "$(pe-ls -S "$store" --set test --label "$c" | wc -l)"
done
echo "--- five bags from the test set"
pe-ls -S "$store" --set test --label Bag -l | head -5
