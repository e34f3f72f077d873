#!/bin/sh
# fmnist-attack.sh - the PoisonedEncoder experiment on Fashion-MNIST, by the
# protocol of docs/results.md: clean and poisoned SimCLR encoders (same seeds,
# options and normalisation), a linear probe on the frozen features, clean
# accuracy and attack success per (target, target class) pair.
#
# Usage: [VAR=value ...] sh examples/fmnist-attack.sh [--full] [WORKDIR]
#   The pe programs must be on PATH (PATH=$PWD/build/bin:$PATH after make).
#   WORKDIR (default ./fmnist-attack.work) holds the store (unless PE_STORE
#   is set), checkpoints, logs and results; a rerun resumes: finished
#   encoders are kept, unfinished ones continue from their checkpoint
#   (pe-train --resume), finished evaluations are kept.
#   --full     the paper's scale: resnet18, all 60,000 training images but
#              the reference pool, 200 epochs (a GPU job; days on 2 cores)
# Variables (defaults in brackets):
#   N_PRE [5000]       pre-training set: the first N_PRE training images
#   REF_FROM [50000]   reference pool: training images REF_FROM+1..60000
#                      (disjoint from the pre-training set)
#   N_TARGETS [10]     (target, target class) pairs
#   PER_TARGET [50]    poisoning inputs per target (50 of 5000 = 1% each)
#   N_REFS [5]         references per target class
#   EPOCHS [20]        pre-training epochs
#   SEEDS ["1 2 3"]    pre-training seeds (clean and poisoned share them)
#   CROP [0.08,1]      RandomResizedCrop scale range
#   ARCH [small]  WIDTH [1, resnet18's width multiplier]  SIZE [28]
#   BATCH [256]  THREADS [pe-train's default]
#   TARGET_SEED [2026] seed of the target, class and reference draws
#   CRAFT_SEED [1]     pe-craft --seed
#   PROBE [linear]     pe-eval --probe
#   TAG [default]      names this configuration's encoders and reports
#   CLEAN_TAG [TAG]    the clean encoders to train or reuse (a sweep that
#                      changes only the poisons reuses the default's)
#   PAIRS_FROM [default] the configuration whose first clean encoder picked
#                      the targets (every sweep attacks the same pairs)
#   STOP_AFTER []      stop after a stage: data, clean, craft, poisoned
#   POISONED_SET []    train on this existing set instead of crafting one
#                      (examples/audit-poisons.sh ASR=1 makes adaptive ones)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
classes=$here/fashion-mnist.classes
full=0
if [ "${1:-}" = --full ]; then
    full=1
    shift
fi
work=${1:-./fmnist-attack.work}
N_PRE=${N_PRE:-5000}
REF_FROM=${REF_FROM:-50000}
N_TARGETS=${N_TARGETS:-10}
PER_TARGET=${PER_TARGET:-50}
N_REFS=${N_REFS:-5}
EPOCHS=${EPOCHS:-20}
SEEDS=${SEEDS:-1 2 3}
CROP=${CROP:-0.08,1}
ARCH=${ARCH:-small}
WIDTH=${WIDTH:-1}
SIZE=${SIZE:-28}
BATCH=${BATCH:-256}
THREADS=${THREADS:-}
TARGET_SEED=${TARGET_SEED:-2026}
CRAFT_SEED=${CRAFT_SEED:-1}
PROBE=${PROBE:-linear}
TAG=${TAG:-default}
CLEAN_TAG=${CLEAN_TAG:-$TAG}
PAIRS_FROM=${PAIRS_FROM:-default}
STOP_AFTER=${STOP_AFTER:-}
if [ $full = 1 ]; then
    ARCH=resnet18
    N_PRE=50000
    PER_TARGET=500
    EPOCHS=200
    SIZE=32
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
export PE_STORE=${PE_STORE:-$work/store.lmdb}
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
stop_after() { [ "$STOP_AFTER" = "$1" ] && { log "stopping after $1"; exit 0; }; return 0; }
have_set() { pe-ls --sets 2>/dev/null | cut -f1 | grep -qxF "$1"; }

# A deterministic pseudo-random rank of each key for a seed, in plain awk
# (no awk's rand(): mawk and gawk differ): a polynomial hash of the seed and
# the key's hex digits modulo a prime. Input KEY[<TAB>...], output
# RANK<TAB>line.
rank() {
    awk -F'\t' -v seed="$1" 'BEGIN { hex = "0123456789abcdef" }
    {
        h = seed % 2147483647
        for (i = 1; i <= 32; i++)
            h = (h * 131 + index(hex, substr($1, i, 1))) % 2147483647
        printf "%010d\t%s\n", h, $0
    }'
}

# 1. data: train and test with class names; the pre-training set and the
# disjoint reference pool, as subsets of train in file order
for pair in train:train-images-idx3-ubyte.gz test:t10k-images-idx3-ubyte.gz; do
    name=${pair%%:*}
    if ! have_set "$name"; then
        pe-ingest -q --set "$name" --classes "$classes" "$fm/${pair#*:}" > "$work/$name.keys"
        log "ingested $(wc -l < "$work/$name.keys") images into set $name"
    fi
    [ -s "$work/$name.keys" ] || pe-ls --set "$name" > "$work/$name.keys"
done
pre=pre-$N_PRE
if ! have_set "$pre"; then
    # file order: pe-ingest printed the keys in input order
    head -n "$N_PRE" "$work/train.keys" | pe-inject -q --from train --to "$pre" --keep
fi
pool=refpool-$REF_FROM
if ! have_set "$pool"; then
    head -n "$N_PRE" "$work/train.keys" | cut -f1 | LC_ALL=C sort -u > "$work/pre.sorted"
    tail -n +"$((REF_FROM + 1))" "$work/train.keys" | cut -f1 | LC_ALL=C sort -u |
        LC_ALL=C comm -23 - "$work/pre.sorted" | pe-inject -q --from train --to "$pool" --keep
fi
stop_after data

common="--arch $ARCH --size $SIZE --batch $BATCH --epochs $EPOCHS --crop-scale $CROP"
[ "$ARCH" = resnet18 ] && common="$common --width $WIDTH"
[ -n "$THREADS" ] && common="$common -j $THREADS"
cfg=$TAG
ccfg=$CLEAN_TAG
epochs_done() { # checkpoint -> epochs_done from its metadata, or 0
    [ -f "$1" ] || { echo 0; return; }
    meta "$1" epochs_done
}
meta() { # checkpoint key -> value (from the safetensors JSON header)
    head -c 65536 "$1" | tr -d '\000' | grep -ao "\"$2\":\"[^\"]*\"" | head -1 | cut -d'"' -f4
}
train() { # set out seed [extra options]
    set_=$1 out=$2 seed=$3
    shift 3
    d=$(epochs_done "$out")
    if [ "${d:-0}" -ge "$EPOCHS" ]; then
        log "$out: done ($d epochs)"
        return 0
    fi
    resume=""
    [ -f "$out" ] && resume="--resume $out"
    log "training $out on $set_ (seed $seed, from epoch ${d:-0})"
    start=$(date +%s)
    # shellcheck disable=SC2086
    pe-train --set "$set_" $common --seed "$seed" -o "$out" --log "$out.log" $resume "$@"
    echo "$(( $(date +%s) - start ))" >> "$out.seconds"
}

# 2. clean encoders; the normalisation of every encoder is the clean set's,
# computed by the first clean run
for s in $SEEDS; do
    first=${first:-$s}
    if [ "$s" = "$first" ]; then
        train "$pre" "$work/clean-$ccfg-s$s.safetensors" "$s"
        mean=$(meta "$work/clean-$ccfg-s$s.safetensors" mean)
        std=$(meta "$work/clean-$ccfg-s$s.safetensors" std)
    else
        train "$pre" "$work/clean-$ccfg-s$s.safetensors" "$s" --mean "$mean" --std "$std"
    fi
done
stop_after clean

# 3. targets: test images the first clean encoder's probe classifies
# correctly, ranked by the seeded hash; the target class drawn from the
# other nine classes by a second hash; references: the first N_REFS images of
# each target class in the pool, ranked by the hash
pairs=$work/pairs-$PAIRS_FROM-t$N_TARGETS.tsv
refs=$work/refs-$PAIRS_FROM-t$N_TARGETS.tsv
# fewer targets than a configuration already drew: its first lines (the
# draw ranks the candidates, so the first N of a larger draw are the draw of N)
if [ ! -s "$pairs" ] && [ "$PAIRS_FROM" != "$TAG" ]; then
    for f in "$work/pairs-$PAIRS_FROM"-t*.tsv; do
        if [ -s "$f" ] && [ "$(wc -l < "$f")" -ge "$N_TARGETS" ]; then
            head -n "$N_TARGETS" "$f" > "$pairs.tmp" && mv "$pairs.tmp" "$pairs"
            break
        fi
    done
fi
if [ ! -s "$pairs" ]; then
    [ "$PAIRS_FROM" = "$TAG" ] || { log "no $pairs: run the $PAIRS_FROM configuration first"; exit 1; }
    pred=$work/pred-clean-$ccfg-s$first.tsv
    pe-eval -q --encoder "$work/clean-$ccfg-s$first.safetensors" --train train --test test \
        --probe "$PROBE" --cache "$work/feat-clean-$ccfg-s$first.st" --predictions "$pred" > /dev/null
    # KEY TRUE PRED (class ids)
    awk -F'\t' '$2 == $3' "$pred" | rank "$TARGET_SEED" | LC_ALL=C sort | head -n "$N_TARGETS" |
        cut -f2- | rank "$((TARGET_SEED + 1))" |
        awk -F'\t' '{ print $2 "\t" ($3 + 1 + $1 % 9) % 10 }' > "$pairs.tmp"
    mv "$pairs.tmp" "$pairs"
fi
if [ ! -s "$refs" ]; then
    for c in $(cut -f2 "$pairs" | sort -un); do
        pe-ls --set "$pool" --label "$c" | rank "$TARGET_SEED" | LC_ALL=C sort |
            head -n "$N_REFS" | cut -f2 | awk -v c="$c" '{ print $1 "\t" c }'
    done > "$refs.tmp"
    mv "$refs.tmp" "$refs"
fi
# the poisoned set depends on the pairs and the poisons only
poisoned=${POISONED_SET:-pre-$N_PRE+$PAIRS_FROM-t${N_TARGETS}x$PER_TARGET-c$CRAFT_SEED}
if [ -n "${POISONED_SET:-}" ]; then
    have_set "$poisoned" || { log "no set $poisoned (POISONED_SET)"; exit 1; }
elif ! have_set "$poisoned"; then
    pe-craft --targets "$pairs" --references "$refs" --per-target "$PER_TARGET" \
        --seed "$CRAFT_SEED" --for "$pre" > "$work/$poisoned.lines"
    pe-inject --from "$pre" --to "$poisoned" < "$work/$poisoned.lines"
fi
stop_after craft

# 4. poisoned encoders, same seeds, options and normalisation
for s in $SEEDS; do
    train "$poisoned" "$work/poisoned-$cfg-s$s.safetensors" "$s" --mean "$mean" --std "$std"
done
stop_after poisoned

# 5. evaluation: the same probe, train and test sets, and pairs for all
for kind in clean poisoned; do
    for s in $SEEDS; do
        etag=$cfg
        [ $kind = clean ] && etag=$ccfg
        enc=$work/$kind-$etag-s$s.safetensors
        out=$work/eval-$kind-$cfg-s$s.json
        [ -s "$out" ] && continue
        pe-eval -q --encoder "$enc" --train train --test test --probe "$PROBE" \
            --cache "$work/feat-$kind-$etag-s$s.st" --targets "$pairs" --json > "$out.tmp"
        mv "$out.tmp" "$out"
    done
done
/usr/bin/python3 "$here/attack_table.py" "$work" "$cfg" $SEEDS
