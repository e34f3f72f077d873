# pe-audit's index in the store and --shard: a second audit measures
# nothing again, an audit of a grown set measures only the new images, the
# outputs with and without the index are the same bytes, shards together
# print exactly the unsharded audit (pairwise matches across shards are
# kept), and bad --shard values, --index-only misuse and a read-only store.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
classes="$HERE/../../examples/fashion-mnist.classes"
pe-ingest -q --set test --classes "$classes" $fm > all.keys || fail "ingest"
head -300 all.keys > clean.in
pe-inject -q --from test --to clean --keep < clean.in || fail "clean subset"
tail -n +301 all.keys | cut -f1 | pe-ls --set test - | awk -F'\t' '$2 == "Sandal"' | head -2 > targets.keys
pe-ls --set clean --label Bag | head -4 > refs.keys
pe-craft -q --targets targets.keys --target-class Bag --labels test --references refs.keys \
    --count 16 --seed 5 > p.lines || fail "craft"
pe-inject -q --from clean --to poisoned < p.lines || fail "inject"
n=$(( 300 + $(cut -f1 p.lines | sort -u | wc -l) ))

# without the index: every image measured, the store opened read-only
expect_rc 0 pe-audit --set poisoned --no-index --all
cp out noindex.txt
err_has "$n images in 'poisoned'"
grep -q "measured" err && fail "--no-index reported the index"

# the first audit measures every image and keeps the records; the second
# measures none; the outputs are the bytes of the --no-index audit
expect_rc 0 pe-audit --set poisoned --all
err_has "($n measured, 0 from the store's index)"
cmp -s out noindex.txt || fail "the first indexed audit differs from --no-index"
expect_rc 0 pe-audit --set poisoned --all
err_has "(0 measured, $n from the store's index)"
cmp -s out noindex.txt || fail "an audit from the index differs from --no-index"
# the other hash mode has records of its own
expect_rc 0 pe-audit --set poisoned --hash imagehash --scan phash
err_has "($n measured, 0 from the store's index)"

# a grown set: only the new images are measured
tail -n +301 all.keys | head -50 | cut -f1 > more.keys
pe-inject -q --from poisoned --to grown < more.keys || fail "grow"
expect_rc 0 pe-audit --set grown --all
err_has "(50 measured, $n from the store's index)"
cp out grown.txt
expect_rc 0 pe-audit --set grown --all --no-index
cmp -s out grown.txt || fail "the incremental audit differs from a full one"

# shards: each image in exactly one shard, the union is the full output,
# and the composite and recurring scans still match across shards
: > shards.txt
for i in 0 1 2; do
    expect_rc 0 pe-audit --set grown --all --shard $i/3
    err_has "shard $i/3:"
    cat out >> shards.txt
done
LC_ALL=C sort shards.txt > shards.sorted
LC_ALL=C sort grown.txt > grown.sorted
cmp -s shards.sorted grown.sorted || fail "the shards together differ from the full audit"
# the shard of a key is its first 16 hex digits modulo n
$PY - grown.txt <<'PYEOF' || fail "shard rule"
import subprocess, sys
keys = sorted({l.split("\t")[0] for l in open(sys.argv[1])})
for i in range(3):
    got = subprocess.run(["pe-audit", "--set", "grown", "--all", "--scan", "size",
                          "--shard", "%d/3" % i], capture_output=True, text=True, check=True)
    mine = {l.split("\t")[0] for l in got.stdout.splitlines()}
    want = {k for k in keys if int(k[:16], 16) % 3 == i}
    assert mine == want, (i, len(mine), len(want))
PYEOF
# a poison's composite match (its reference) lies in another shard for
# some poisons: their shards still find them
expect_rc 0 pe-audit --set grown --scan composite --shard 0/2 --truth --json
cp out s0.json
expect_rc 0 pe-audit --set grown --scan composite --shard 1/2 --truth --json
cp out s1.json
$PY - s0.json s1.json <<'PYEOF' || fail "composite matches across shards"
import json, sys
found = cross = 0
for f in sys.argv[1:]:
    ls = [json.loads(l) for l in open(f)]
    summ = ls[-1]
    i, n = map(int, summ["shard"].split("/"))
    assert summ["images"] > summ["shard_images"] > 0, summ
    for l in ls[:-1]:
        if l["poison"]:
            found += 1
            cross += int(l["match"][:16], 16) % n != i
assert found >= 10 and cross > 0, (found, cross)
PYEOF

# --index-only: records of one shard kept, nothing printed
export PE_STORE="$T/s2.lmdb"
pe-ingest -q --set test --classes "$classes" $fm > /dev/null || fail "ingest 2"
pe-inject -q --from test --to small --keep < clean.in || fail "small"
expect_rc 0 pe-audit --set small --index-only --shard 1/2
[ -s out ] && fail "--index-only printed on stdout"
err_has "index of 'small', shard 1/2: "
m=$(sed -n 's/.*: \([0-9]*\) images, \([0-9]*\) measured.*/\2/p' err)
[ -n "$m" ] && [ "$m" -gt 100 ] && [ "$m" -lt 200 ] || fail "shard 1/2 measured $m of 300"
expect_rc 0 pe-audit --set small --scan size
err_has "($(( 300 - m )) measured, $m from the store's index)"

# pe-rm --gc deletes an image's records with it (LMDB's mdb_stat counts)
if command -v mdb_stat > /dev/null; then
    entries() { mdb_stat -s audit "$PE_STORE" | awk '/Entries:/ {print $2}'; }
    [ "$(entries)" = 300 ] || fail "audit records: $(entries), want 300"
    pe-rm small || fail "rm small"
    pe-rm --gc > /dev/null 2>&1 || fail "gc"
    [ "$(entries)" = 300 ] || fail "gc deleted the records of images still in 'test'"
    pe-rm test && pe-rm --gc > /dev/null 2>&1 || fail "gc 2"
    [ "$(entries)" = 0 ] || fail "records left after their images went: $(entries)"
    pe-inject -q --from test --to small --keep < clean.in 2>/dev/null && fail "test is gone"
    pe-ingest -q --set test --classes "$classes" $fm > /dev/null || fail "ingest 3"
    pe-inject -q --from test --to small --keep < clean.in || fail "small 2"
else
    echo "skip: the gc check (no mdb_stat: lmdb-utils)"
fi

# bad input
for bad in 3/3 1/0 x/2 2 -1/3 1/65537; do
    usage_error pe-audit --set small --shard $bad
    err_has "--shard takes I/N"
done
usage_error pe-audit --set small --index-only --no-index
usage_error pe-audit --set small --index-only --json
usage_error pe-audit --set small --shard 0/2 --report r.html
[ -e r.html ] && fail "a report was written"
# a store this user may read but not write (its data file read-only, the
# lock file shared, as LMDB needs) is still audited, from its index
expect_rc 0 pe-audit --set small --index-only
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
    chmod 755 "$T" "$T/s2.lmdb"
    chmod 644 "$T/s2.lmdb/data.mdb"
    chmod 666 "$T/s2.lmdb/lock.mdb"
    as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
    expect_rc 0 as_nobody "$BIN/pe-audit" -S "$T/s2.lmdb" --set small --scan size
    err_has "(0 measured, 300 from the store's index)"
    expect_rc 1 as_nobody "$BIN/pe-audit" -S "$T/s2.lmdb" --set small --index-only
    err_has "s2.lmdb"
else
    echo "skip: the read-only store check (needs root and setpriv to act as another user)"
fi
exit 0
