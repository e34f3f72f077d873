#!/bin/sh
# The main job on the default store (make demo): ingest Fashion-MNIST's
# training and test sets (Debian package dataset-fashion-mnist) with their
# class names into $PE_STORE (default ./pe.lmdb), check the store, print a
# summary, then run the whole PoisonedEncoder chain on a small subset (craft,
# inject, pre-train a clean and a poisoned encoder, evaluate both) to show
# the plumbing and the report. At this size and length the demo says nothing
# about the attack's strength: docs/results.md does. Re-running replaces the
# sets and the encoders (in ./pe-demo/).
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

echo "--- the attack chain on a small subset (plumbing, not attack strength)"
demo=./pe-demo
mkdir -p "$demo"
pe-rm -S "$store" -f demo-pre demo-pre+poison demo-probe demo-test
pe-ls -S "$store" --set train | head -2000 | pe-inject -q -S "$store" --from train --to demo-pre --keep
pe-ls -S "$store" --set train | tail -5000 | pe-inject -q -S "$store" --from train --to demo-probe --keep
pe-ls -S "$store" --set test | head -2000 | pe-inject -q -S "$store" --from test --to demo-test --keep
# two sandals of the test subset as targets, to be seen as bags; five bags of
# the training images outside the pre-training subset as references
pe-ls -S "$store" --set demo-test --label Sandal | head -2 | cut -f1 > "$demo/targets.keys"
pe-ls -S "$store" --set demo-probe --label Bag | head -5 > "$demo/refs.keys"
pe-craft -S "$store" --targets "$demo/targets.keys" --target-class Bag --labels train \
    --references "$demo/refs.keys" --per-target 20 --for demo-pre > "$demo/poisons.lines"
pe-inject -S "$store" --from demo-pre --to demo-pre+poison < "$demo/poisons.lines"
opts="--arch small --size 28 --batch 128 --epochs 3 --seed 1"
rm -f "$demo"/clean.safetensors "$demo"/poisoned.safetensors
pe-train -S "$store" --set demo-pre $opts -o "$demo/clean.safetensors"
# the clean set's normalisation, from the checkpoint's JSON header
norm=$(head -c 65536 "$demo/clean.safetensors" | tr -d '\000' |
    grep -ao '"\(mean\|std\)":"[^"]*"' | sed 's/^"\([a-z]*\)":"\(.*\)"$/--\1 \2/' | tr '\n' ' ')
# shellcheck disable=SC2086
pe-train -S "$store" --set demo-pre+poison $opts $norm -o "$demo/poisoned.safetensors"
for enc in clean poisoned; do
    echo "--- pe-eval, $enc encoder"
    pe-eval -S "$store" --encoder "$demo/$enc.safetensors" --train demo-probe --test demo-test \
        --targets "$demo/targets.keys" --target-class Bag
done
