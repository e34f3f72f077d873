#!/bin/sh
# make-coarse-sets.sh - a second downstream task on Fashion-MNIST: the same
# images under 5 coarse classes (tops, bottoms, dresses and coats, footwear,
# bags; the mapping and its reasons are in fashion-mnist-coarse.map).
#
# Usage: [FASHION_MNIST=DIR] [THREADS=J] sh examples/make-coarse-sets.sh [STORE]
#   STORE    the store (default $PE_STORE, else ./pe.lmdb, as every pe program)
#   FASHION_MNIST  the dataset files (default /usr/share/datasets/fashion-mnist,
#            Debian's dataset-fashion-mnist)
#   THREADS  pe-ingest -j (default: pe-ingest's, the online CPUs)
#   The pe programs must be on PATH (PATH=$PWD/build/bin:$PATH after make).
#
# It makes the labeled sets train-coarse (60000 images) and test-coarse
# (10000) from train-images-idx3-ubyte.gz and t10k-images-idx3-ubyte.gz with
# the class names of fashion-mnist-coarse.classes. A set that exists already
# is left as it is (and said so), so the script can be run again. The labels
# files are rewritten (header kept, each label byte mapped by `tr` per the
# .map file) and given to pe-ingest with --labels; the images files are the
# package's own, so the pixels, hence the keys, are those of the sets train
# and test that ingest-and-look.sh and train-fashion-mnist.sh make: the store
# holds each image once, and the new sets only carry other labels.
#
# Evaluating both tasks. pe-eval takes several tasks, the i-th --train with
# the i-th --test; the fine sets come from
#   pe-ingest --set train --classes examples/fashion-mnist.classes \
#       /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz  (and t10k -> test)
# Clean accuracy of one encoder on both tasks:
#   pe-eval -e enc.safetensors --train train --test test \
#       --train train-coarse --test test-coarse
# Targets: pe-eval gives each target line to the FIRST task, in command-line
# order, whose test set holds the key (pe-eval(1), Targets; lib/eval.c,
# target_line). test and test-coarse hold the same keys, so with both tasks
# every target goes to the first one listed, whatever its class field says:
#   - its class (the line's field, or --target-class) is looked up among the
#     names of THAT task's test set (a name first, then a decimal id), so a
#     coarse name on a key of task 1 (fine) is an error, "set 'test' has no
#     class 'bags'", and a bare id like 4 silently means Coat there;
#   - a key listed twice is an error ("is a target already"), even with
#     classes of two different tasks: one key cannot be a target of both
#     tasks in one run;
#   - a target is left out of the clean accuracy of its own task only; in
#     the other task it counts as an ordinary test image.
# So there are two ways to attack both tasks:
#   1. One run, one targets file (KEY<TAB>CLASS, classes by name) holding the
#      targets of both tasks: make the test sets disjoint on the targets by
#      removing each task's targets from the other task's test set, so that
#      every key is held by exactly one test set:
#        cut -f1 coarse-pairs.tsv | pe-inject --from test --to test-fine --remove
#        cut -f1 fine-pairs.tsv | pe-inject --from test-coarse --to test-coarse-t --remove
#        cat fine-pairs.tsv coarse-pairs.tsv > pairs.tsv
#        pe-eval -e enc.safetensors --train train --test test-fine \
#            --train train-coarse --test test-coarse-t --targets pairs.tsv --json
#      (This also keeps one task's targets out of the other's clean accuracy.)
#   2. One run per task's targets, that task listed first:
#        pe-eval -e enc.safetensors --train train --test test \
#            --train train-coarse --test test-coarse --targets fine-pairs.tsv
#        pe-eval -e enc.safetensors --train train-coarse --test test-coarse \
#            --train train --test test --targets coarse-pairs.tsv
#      (or one task each; --cache FILE saves extracting the features again).
# train and train-coarse are different sets to pe-eval (it shares features
# between tasks only for a set named twice, and its cache fingerprint covers
# the labels), so two tasks extract the features of the same images twice.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
fine_classes=$here/fashion-mnist.classes
classes=$here/fashion-mnist-coarse.classes
map=$here/fashion-mnist-coarse.map
THREADS=${THREADS:-}
if [ $# -gt 1 ]; then
    echo "usage: $0 [STORE]" >&2
    exit 2
fi
store=${1:-${PE_STORE:-./pe.lmdb}}

for p in pe-ingest pe-ls; do
    command -v "$p" >/dev/null 2>&1 || {
        echo "$0: $p not on PATH (try: make && PATH=\$PWD/build/bin:\$PATH)" >&2
        exit 1
    }
done
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
    t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -r "$fm/$f" ] || {
        echo "$0: no $f in $fm (apt-get install dataset-fashion-mnist)" >&2
        exit 1
    }
done
case $THREADS in
*[!0-9]*) echo "$0: THREADS takes a number" >&2; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/pe-coarse.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# The map, checked against both class files, as two tr operands: FROM lists
# the fine ids 0..9 as octal escapes, TO the coarse id of each.
tr_ops=$(awk -F'\t' -v fine="$fine_classes" -v coarse="$classes" '
    BEGIN {
        while ((getline l < fine) > 0) fname[nf++] = l
        while ((getline l < coarse) > 0) cname[nc++] = l
    }
    /^#/ || /^[ \t]*$/ { next }
    {
        if (NF != 4 || $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9]+$/) bad("not FINE<TAB>COARSE<TAB>NAME<TAB>NAME")
        if ($1 + 0 >= nf) bad("fine id " $1 " out of range")
        if ($2 + 0 >= nc) bad("coarse id " $2 " out of range")
        if ($1 in to) bad("fine id " $1 " given twice")
        if ($3 != fname[$1 + 0]) bad("fine class " $1 " is " fname[$1 + 0] ", not " $3)
        if ($4 != cname[$2 + 0]) bad("coarse class " $2 " is " cname[$2 + 0] ", not " $4)
        to[$1 + 0] = $2 + 0
    }
    function bad(m) { printf "%s: line %d: %s\n", FILENAME, FNR, m > "/dev/stderr"; err = 1; exit 1 }
    END {
        if (err) exit 1
        for (i = 0; i < nf; i++) if (!(i in to)) { print "map: no line for fine id " i > "/dev/stderr"; exit 1 }
        for (i = 0; i < nf; i++) { f = f sprintf("\\%03o", i); t = t sprintf("\\%03o", to[i]) }
        print f; print t
    }' "$map") || { echo "$0: bad map $map" >&2; exit 1; }
from=$(printf '%s\n' "$tr_ops" | sed -n 1p)
to=$(printf '%s\n' "$tr_ops" | sed -n 2p)

have_set() {
    [ -d "$store" ] && pe-ls -S "$store" --sets | cut -f1 | grep -qx "$1"
}

# coarse SET PREFIX: set SET from PREFIX-images-idx3-ubyte.gz with the labels
# of PREFIX-labels-idx1-ubyte.gz mapped. A labels file is an 8-byte header
# (magic 00 00 08 01, count, big-endian) and one byte per image: the header
# is copied (its 08 must not be mapped), every label byte translated.
coarse() {
    gzip -dc "$fm/$2-labels-idx1-ubyte.gz" > "$work/fine"
    magic=$(od -An -tx1 -N4 "$work/fine" | tr -d ' \n')
    [ "$magic" = 00000801 ] || { echo "$0: $2-labels-idx1-ubyte.gz: not an IDX labels file" >&2; exit 1; }
    n=$(od -An -tu1 -j4 -N4 "$work/fine" | awk '{print (($1 * 256 + $2) * 256 + $3) * 256 + $4}')
    body=$(($(wc -c < "$work/fine") - 8))
    [ "$body" -eq "$n" ] || { echo "$0: $2-labels: header says $n labels, file holds $body" >&2; exit 1; }
    odd=$(tail -c +9 "$work/fine" | tr -d "$from" | wc -c)
    [ "$odd" -eq 0 ] || { echo "$0: $2-labels: $odd labels outside the map" >&2; exit 1; }
    {
        dd if="$work/fine" bs=8 count=1 2>/dev/null
        tail -c +9 "$work/fine" | tr "$from" "$to"
    } > "$work/$1-labels-idx1-ubyte"
    set_name=$1
    images=$fm/$2-images-idx3-ubyte.gz
    set -- -q -S "$store" --set "$set_name" --classes "$classes" \
        --labels "$work/$set_name-labels-idx1-ubyte"
    if [ -n "$THREADS" ]; then set -- "$@" -j "$THREADS"; fi
    pe-ingest "$@" "$images" > "$work/$set_name.keys"
    echo "ingested $(wc -l < "$work/$set_name.keys") images into set $set_name"
}

for pair in train-coarse:train test-coarse:t10k; do
    name=${pair%%:*}
    if have_set "$name"; then
        echo "set $name is already in $store"
    else
        coarse "$name" "${pair#*:}"
    fi
done
echo "--- images per class of test-coarse"
pe-ls -S "$store" --set test-coarse | cut -f2 | sort | uniq -c
