# The whole attack chain on a tiny set with a tiny model, in seconds:
# ingest -> subsets (pe-inject --keep) -> pe-craft | pe-inject -> pe-train
# clean and poisoned with one normalisation -> pe-eval of both. It checks
# plumbing and outputs, not attack strength.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
pe-ingest -q --set all --classes "$HERE/../../examples/fashion-mnist.classes" $fm > all.keys ||
    fail "ingest"
head -200 all.keys > pre.in
sed -n '201,700p' all.keys > probe.in
sed -n '701,900p' all.keys > test.in
pe-inject -q --from all --to pre --keep < pre.in || fail "pre"
pe-inject -q --from all --to probe --keep < probe.in || fail "probe"
pe-inject -q --from all --to test --keep < test.in || fail "test"
pe-ls --set test --label Sandal | head -2 > targets.keys
pe-ls --set probe --label Bag | head -3 > refs.keys
expect_rc 0 pe-craft --targets targets.keys --target-class Bag --labels all \
    --references refs.keys --per-target 10 --for pre
cp out poisons.lines
err_has "20 poisoning inputs"
expect_rc 0 pe-inject --from pre --to pre+p < poisons.lines
err_has "'pre' plus 20"
opts="--arch small --size 16 --batch 32 --epochs 1 --seed 3 -j 2"
expect_rc 0 pe-train --set pre $opts -o clean.st
mean=$(head -c 65536 clean.st | tr -d '\000' | grep -ao '"mean":"[^"]*"' | cut -d'"' -f4)
std=$(head -c 65536 clean.st | tr -d '\000' | grep -ao '"std":"[^"]*"' | cut -d'"' -f4)
[ -n "$mean" ] && [ -n "$std" ] || fail "no normalisation in the clean checkpoint"
expect_rc 0 pe-train --set pre+p $opts --mean "$mean" --std "$std" -o poisoned.st
head -c 65536 poisoned.st | tr -d '\000' | grep -aq "\"mean\":\"$mean\"" ||
    fail "the poisoned encoder has another normalisation"
head -c 65536 poisoned.st | tr -d '\000' | grep -aq '"set":"pre+p"' || fail "set in metadata"
for e in clean poisoned; do
    expect_rc 0 pe-eval -e $e.st --train probe --test test -t targets.keys --target-class Bag \
        --json -q
    cp out $e.json
done
$PY - clean.json poisoned.json targets.keys <<'PYEOF' || fail "reports"
import json, sys
keys = {l.split("\t")[0] for l in open(sys.argv[3])}
for f in sys.argv[1:3]:
    recs = [json.loads(l) for l in open(f)]
    task = [r for r in recs if r["type"] == "task"]
    tg = [r for r in recs if r["type"] == "target"]
    assert len(task) == 1 and task[0]["targets"] == 2 and task[0]["clean_images"] == 198, task
    assert 0 <= task[0]["clean_accuracy"] <= 1 and 0 <= task[0]["asr"] <= 1
    assert {t["key"] for t in tg} == keys
    assert all(t["target_class"] == "Bag" and t["true_class"] == "Sandal" for t in tg), tg
    assert all(1 <= t["rank"] <= 10 and -1 <= t["cos_target"] <= 1 for t in tg), tg
PYEOF
exit 0
