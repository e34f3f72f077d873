#!/bin/sh
# ingest-and-look.sh - the first steps with pe: ingest Fashion-MNIST (Debian
# package dataset-fashion-mnist) with its class names, list the sets, pick
# five bags, export them as PNG files and show their details.
#
# Usage: sh examples/ingest-and-look.sh [OUTDIR]
#   The pe programs must be on PATH (PATH=$PWD/build/bin:$PATH after make).
#   Store: $PE_STORE when set (sets train and test are made when missing and
#   reused when present), else a temporary store removed at the end.
#   OUTDIR: where the five PNG files go (must not hold them already: pe-export
#   never overwrites); default a temporary folder removed at the end.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
classes=$here/fashion-mnist.classes

for p in pe-ingest pe-ls pe-export; do
    command -v "$p" >/dev/null 2>&1 || {
        echo "$0: $p not on PATH (try: make && PATH=\$PWD/build/bin:\$PATH)" >&2
        exit 1
    }
done
[ -r "$fm/train-images-idx3-ubyte.gz" ] || {
    echo "$0: no Fashion-MNIST in $fm (apt-get install dataset-fashion-mnist)" >&2
    exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pe-example.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
PE_STORE=${PE_STORE:-$work/pe.lmdb}
export PE_STORE
out=${1:-$work/bags}

have_set() {
    [ -d "$PE_STORE" ] && pe-ls --sets | cut -f1 | grep -qx "$1"
}

# 1. Ingest. The labels files are found beside the images files; the class
#    names file names ids 0..9. pe-ingest prints KEY<TAB>LABEL<TAB>SOURCE per
#    image; here only the count is shown.
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

# 2. The sets: name, distinct images, total occurrences, class names.
echo "--- sets"
pe-ls --sets

# 3. Five bags. Set listings are in key order, so these are the five bags
#    with the smallest keys: a fixed, reproducible pick.
pe-ls --set train --label Bag | head -n 5 > "$work/bags.keys"
echo "--- five bags"
cat "$work/bags.keys"

# 4. Export them: one PNG per key, straight into the folder (--flat; keys
#    read from a pipe carry no set, so they would go to _unlabeled/).
pe-export -o "$out" --flat - < "$work/bags.keys"
echo "--- files in $out"
ls "$out"

# 5. Their details in the training set: key, label, count, WxHxC, source.
echo "--- pe-ls -l"
pe-ls --set train -l - < "$work/bags.keys"
