# kill -9 in the middle of an ingest leaves the store readable and
# consistent: every key printed before the kill is stored with its info,
# every set entry has its record, set counts match; a re-run completes.
# Also: a reader works while the writer runs.
. "$(dirname "$0")/lib.sh"
fm=/usr/share/datasets/fashion-mnist
[ -f $fm/train-images-idx3-ubyte.gz ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
export PE_STORE="$T/s.lmdb"
# small batches so that the kill lands between many commits
: > keys
pe-ingest --set fm --batch 64 $fm/train-images-idx3-ubyte.gz > keys 2>err &
pid=$!
i=0
readers=0
while [ "$(wc -l < keys)" -lt 3000 ] && [ $i -lt 600 ]; do
    # a reader while the writer runs
    if [ -d "$PE_STORE" ] && pe-ls --stats >/dev/null 2>rerr; then readers=$((readers + 1)); fi
    sleep 0.02
    i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
n=$(wc -l < keys)
[ "$n" -ge 3000 ] || fail "the ingest printed only $n keys before the kill"
[ "$n" -lt 60000 ] || fail "the ingest finished before the kill; nothing tested"
[ "$readers" -gt 0 ] || fail "no reader succeeded during the ingest: $(cat rerr)"
# a partial last line would be a half-printed key: the kill is between writes,
# yet check that every full line is well-formed
sed '$d' keys | awk -F'\t' 'NF != 3 {exit 1}' || fail "malformed key line"
expect_rc 0 pe-ls --check
out_has "problems	0"
# every key printed is in img and info
sed '$d' keys | cut -f1 | pe-ls --json > info.out || fail "a printed key is not in the store"
[ "$(grep -c '"occurrences":1,' info.out)" = "$(sed '$d' keys | wc -l)" ] || fail "info missing"
# the set was not published half-way
expect_rc 0 pe-ls --sets
[ -s "$T/out" ] && fail "a half-written set is visible: $(cat "$T/out")"
# re-run: completes, full set, consistent; the dead writer's staging set is collected
expect_rc 0 pe-ingest --set fm $fm/train-images-idx3-ubyte.gz
[ "$(wc -l < "$T/out")" = 60000 ] || fail "re-run printed $(wc -l < "$T/out") keys"
err_has "60000 images:"
expect_rc 0 pe-ls --sets
out_has "fm	60000	60000"
expect_rc 0 pe-rm --gc
expect_rc 0 pe-ls --check
out_has "problems	0"
out_has "sets	1"
exit 0
