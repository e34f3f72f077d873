# pe-ingest on a labeled folder: golden lines (keys, labels, sources) in
# input order, duplicates counted, pe-ls views, --append, existing sets,
# canonicalisation options, --compress read back transparently.
. "$(dirname "$0")/lib.sh"
make_images src
cp src/cat/cat0.png src/cat/cat0-copy.png      # same pixels twice in one class
mkdir src/cat/sub && cp src/cat/cat1.jpg src/cat/sub/deep.jpg   # recursion
echo "not an image" > src/dog/notes.txt         # ignored by extension
export PE_STORE="$T/s.lmdb"

expect_rc 0 pe-ingest --set pets src
golden ingest-folder.out "$T/out"
err_has "8 images: 6 stored, 2 already present, 0 rejected"
err_has "1 ignored"
expect_rc 0 pe-ls --sets
golden ingest-sets.out "$T/out"
expect_rc 0 pe-ls --set pets --label dog
[ "$(wc -l < "$T/out")" = 3 ] || fail "dog label: $(cat "$T/out")"
expect_rc 0 pe-ls --set pets -l
awk -F'\t' '$3 == 2 {n++} END {exit n == 2 ? 0 : 1}' "$T/out" ||
    fail "the duplicated png and jpg should have count 2: $(cat "$T/out")"
# a key from a pipe, with --json: every source listed
key=$(head -1 "$T/out" | cut -f1)
echo "$key" | pe-ls --json > j.out || fail "pe-ls --json"
$PY -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' j.out ||
    fail "pe-ls --json is not NDJSON"

# the set exists: refused without --append, nothing changes
expect_rc 1 pe-ingest --set pets src
err_has "set 'pets' exists"
[ -s "$T/out" ] && fail "refused ingest printed keys"
expect_rc 0 pe-ingest --set pets --append src/cat/cat2.tif
expect_rc 0 pe-ls --sets
out_has "pets	6	9	cat,dog"  # one more occurrence of cat2.tif

# canonicalisation: gray 16x16, recorded in info
expect_rc 0 pe-ingest --set small --channels 1 --size 16x16 src
cut -f1 "$T/out" | pe-ls -l > l.out
awk -F'\t' '$4 != "16x16x1" {exit 1}' l.out || fail "not 16x16x1: $(cat l.out)"
cut -f1 "$T/out" | head -1 | pe-ls --json > j.out
grep -q '"ops":"decode=png channels=1 resize=16x16"' j.out || fail "ops not recorded: $(cat j.out)"
expect_rc 0 pe-ingest --set side --max-side 20 src/dog
cut -f1 "$T/out" | pe-ls -l > l.out
awk -F'\t' '{split($4, d, "x"); if (d[1] > 20 || d[2] > 20 || (d[1] != 20 && d[2] != 20)) exit 1}' l.out ||
    fail "max-side: $(cat l.out)"

# --compress: a second store holds the same keys, smaller, same pixels
expect_rc 0 pe-ingest -S c.lmdb --set pets --compress src
cut -f1 "$T/out" > ckeys
cut -f1 "$HERE/golden/ingest-folder.out" | diff - ckeys || fail "compressed keys differ"
k=$(head -1 ckeys)
pe-export -S c.lmdb "$k" > a.png && pe-export "$k" > b.png || fail "export"
cmp a.png b.png || fail "compressed record reads back different pixels"
pe-ls -S c.lmdb --json - < ckeys | grep -q '"encoding":"deflate"' || fail "not deflate"

# a closed pipe downstream (| head) leaves a complete, consistent set
# (10,000 lines are far more than a pipe buffer holds, so the write fails)
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -f $fm ]; then
    pe-ingest --set headed $fm 2>herr | head -1 > h1
    [ "$(wc -l < h1)" = 1 ] || fail "head got nothing"
    grep -q "standard output closed" herr || fail "no note about the closed output: $(cat herr)"
    expect_rc 0 pe-ls --check
    expect_rc 0 pe-ls --sets
    out_has "headed	10000	10000"
fi

# the same pixels under two labels: that occurrence alone is rejected
mkdir -p conflict/a conflict/b
cp src/cat/cat0.png conflict/a/x.png && cp src/cat/cat0.png conflict/b/y.png
cp src/dog/dog0.png conflict/b/z.png
expect_rc 3 pe-ingest --set conflict conflict
[ "$(wc -l < "$T/out")" = 2 ] || fail "conflict: $(cat "$T/out")"
err_has "conflict/b/y.png: the same pixels are already in set 'conflict' with label a, not b"
err_has "1 label conflict"
# stdin keys exported under their labels in a set
cut -f1 "$T/out" | pe-export -o exp --set conflict - 2>/dev/null || fail "export --set -"
[ -d exp/a ] && [ -d exp/b ] || fail "export by label: $(ls exp)"

# paths on stdin, NUL-separated too
find src/dog -name '*.png' | pe-ingest --unlabeled > o1 || fail "stdin paths"
[ "$(wc -l < o1)" = 1 ] || fail "stdin: $(cat o1)"
cut -f2 o1 | grep -qx -- - || fail "unlabeled should print '-'"
printf 'src/dog/dog0.png\0src/cat/cat0.png\0' | pe-ingest -0 --label 7 > o2 || fail "-0"
[ "$(cut -f2 o2 | sort -u)" = 7 ] || fail "--label 7: $(cat o2)"
exit 0
