#!/bin/sh
# fmnist-two-tasks.sh - the attack protocol's poisoned encoders scored on two
# downstream tasks at once: Fashion-MNIST's 10 classes (the protocol's task)
# and the same images in 5 coarse classes (examples/make-coarse-sets.sh,
# mapping in fashion-mnist-coarse.map).
#
# One poisoned encoder carries the poisons of all 10 (target, target class)
# pairs. A pair whose true and target classes fall in different coarse
# classes is also an attack on the coarse task (a Bag to be seen as a Sandal
# is bags -> footwear); a pair inside one coarse class (Sandal -> Sneaker,
# both footwear) is no attack there and is left out of the coarse task's
# targets. The coarse pairs are written to
# WORKDIR/pairs-default-t10-coarse.tsv (KEY<TAB>coarse class name).
#
# Usage: [ENCODERS="NAME ..."] sh examples/fmnist-two-tasks.sh WORKDIR
#   WORKDIR   examples/fmnist-attack.sh's work folder (its store, its
#             pairs-default-t10.tsv); the coarse sets are added to its store.
#   ENCODERS  checkpoints WORKDIR/NAME.safetensors whose fine-task report is
#             WORKDIR/NAME.json (examples/fmnist-defenses.sh's names);
#             default "def-simclr-clean-s1 def-simclr-none-s1".
#   MAP_ONLY  1: write the coarse pairs and stop (no evaluation).
# Writes WORKDIR/NAME-coarse.json (pe-eval --json on train-coarse and
# test-coarse with the coarse pairs; kept when newer than the checkpoint)
# and prints the table of both tasks (examples/two_task_table.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
work=$(cd "$1" && pwd)
. "$here/common.sh"
export PE_STORE=${PE_STORE:-$work/store.lmdb}
ENCODERS=${ENCODERS:-def-simclr-clean-s1 def-simclr-none-s1}
pairs=$work/pairs-default-t10.tsv
coarse=$work/pairs-default-t10-coarse.tsv
[ -s "$pairs" ] || { echo "$0: no $pairs: run examples/fmnist-attack.sh first" >&2; exit 1; }

sh "$here/make-coarse-sets.sh" "$PE_STORE" >&2

# KEY -> fine true class name (from the set test), then both mapped
cut -f1 "$pairs" | pe-ls --set test - > "$coarse.true" || { rm -f "$coarse.true"; exit 1; }
if ! awk -F'\t' '
    FILENAME == ARGV[1] { if ($0 !~ /^#/ && NF == 4) { byid[$1] = $4; byname[$3] = $4 } next }
    FILENAME == ARGV[2] { t[$1] = $2; next }
    {
        tc = ($1 in t) ? ((t[$1] in byname) ? byname[t[$1]] : byid[t[$1]]) : ""
        if (tc == "" || !($2 in byname)) { print "unmapped pair " $1 > "/dev/stderr"; bad = 1; exit 1 }
        if (byname[$2] != tc) print $1 "\t" tc
    }
    END { exit bad }' "$here/fashion-mnist-coarse.map" "$pairs" "$coarse.true" > "$coarse.tmp"; then
    rm -f "$coarse.tmp" "$coarse.true"
    exit 1
fi
mv "$coarse.tmp" "$coarse"
rm -f "$coarse.true"
echo "$(wc -l < "$coarse") of $(wc -l < "$pairs") pairs are attacks on the coarse task" >&2
[ "${MAP_ONLY:-0}" = 1 ] && exit 0

for n in $ENCODERS; do
    enc=$work/$n.safetensors
    out=$work/$n-coarse.json
    [ -s "$enc" ] || { echo "$0: no $enc" >&2; exit 1; }
    eval_json "$enc" "$out" train-coarse test-coarse "$coarse"
done
/usr/bin/python3 "$here/two_task_table.py" "$work" $ENCODERS
