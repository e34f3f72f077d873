# pe-eval on a tiny Fashion-MNIST store with a tiny encoder: the table and
# the NDJSON report, identical reruns, --predictions, the feature cache (reused, replaced
# when the encoder changes, a corrupt one ignored), the MLP probe, two
# tasks at once, a PyTorch-style file without metadata, and bad inputs
# (exit codes, messages naming the culprit, nothing on stdout, no cache).
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
pe-ingest -q --set all $fm > all.keys || fail "ingest"
# a 96-image labeled training set and a 64-image test set (class folders
# "0".."9" from PNG exports), as train.sh builds them
head -96 all.keys > tr.keys
sed -n '97,160p' all.keys > te.keys
cut -f1 tr.keys | pe-export -o trimg --set all - 2>/dev/null || fail "export train"
cut -f1 te.keys | pe-export -o teimg --set all - 2>/dev/null || fail "export test"
pe-ingest -q --set tr trimg >/dev/null || fail "ingest train"
pe-ingest -q --set te teimg >/dev/null || fail "ingest test"
pe-ingest -q --set ul trimg/0 >/dev/null || fail "ingest unlabeled"
pe-train --set tr --size 16 --batch 16 --seed 7 -j 2 --max-steps 3 -o enc.st 2>/dev/null || fail "train"
pe-train --set tr --size 16 --batch 16 --seed 8 -j 2 --max-steps 3 -o enc2.st 2>/dev/null || fail "train 2"

# targets: the first three test images, each naming a class of the test set
# other than its own (the third gets it from the shell, below)
pe-ls --set te > te.list
$PY - te.list > tg <<'PYEOF' || fail "choosing targets"
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
names = sorted({r[1] for r in rows})
other = lambda c: [n for n in names if n != c][0]
print("%s\t%s" % (rows[0][0], other(rows[0][1])))
print("%s\t%s" % (rows[1][0], other(rows[1][1])))
print(rows[2][0])
PYEOF
tc=$(awk -F'\t' 'NR == 3 {print $2}' te.list)
tclass=$(awk -F'\t' -v c="$tc" '$2 != c {print $2; exit}' te.list)
awk -F'\t' -v c="$tclass" 'NR == 3 {$0 = $0 "\t" c} {print}' tg > tg.full && mv tg.full tg
# --target-class overrides the lines' fields, so pe-ls output (whose field
# is the true class) serves as targets unchanged
head -1 te.list > tg.ls
oc=$(awk -F'\t' 'NR == 1 {c = $2} NR > 1 && $2 != c {print $2; exit}' te.list)
expect_rc 0 pe-eval -e enc.st --train tr --test te -j 2 -t tg.ls --target-class "$oc" --json -q
grep -q "\"target_class\":\"$oc\"" out || fail "--target-class did not override: $(cat out)"

ev="-e enc.st --train tr --test te -j 2"
expect_rc 0 pe-eval $ev -t tg
cp out table.out
out_has "task 1: train 'tr' (96 images), test 'te' (64 images), 10 classes"
out_has "probe           linear: l2 0.0001"
out_has "train accuracy"
out_has " of 61, targets excluded)"
out_has "95% Wilson interval"
for k in $(cut -f1 tg); do out_has "$k"; done
err_has "features of 96 images"

# the same as NDJSON, checked field by field
expect_rc 0 pe-eval $ev -t tg --json -q
cp out a.json
[ -s err ] && fail "-q printed: $(cat err)"
$PY - a.json tg te.list "$tclass" <<'PYEOF' || fail "JSON report"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
tg = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
truth = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[3]))
tasks = [r for r in recs if r["type"] == "task"]
tgts = [r for r in recs if r["type"] == "target"]
assert len(tasks) == 1 and len(tgts) == 3, recs
t = tasks[0]
assert recs[0] is t, "the task comes first"
assert (t["task"], t["train"], t["test"]) == (1, "tr", "te"), t
assert (t["train_images"], t["test_images"], t["classes"]) == (96, 64, 10), t
assert t["probe"] == "linear" and t["l2"] == 0.0001 and t["max_iterations"] == 200, t
assert 1 <= t["iterations"] <= 200 and t["memory"] == 10, t
assert t["iterations"] == 200 or t["gradient_norm"] < 1e-6, t
assert 0 <= t["train_correct"] <= 96 and abs(t["train_accuracy"] - t["train_correct"] / 96) < 1e-8
assert t["clean_images"] == 61 and abs(t["clean_accuracy"] - t["clean_correct"] / 61) < 1e-8, t
assert t["targets"] == 3 and t["successes"] == sum(r["success"] for r in tgts), t
assert abs(t["asr"] - t["successes"] / 3) < 1e-8
assert 0 <= t["asr_lo"] <= t["asr"] <= t["asr_hi"] <= 1, t
for i, r in enumerate(tgts):
    want = tg[i][1] if len(tg[i]) > 1 else sys.argv[4]
    assert r["task"] == 1 and r["key"] == tg[i][0] and r["line"] == i + 1, r
    assert r["true_class"] == truth[r["key"]] and r["target_class"] == want, r
    assert r["true_class"] != r["target_class"]
    assert r["success"] == (r["predicted"] == r["target"]), r
    assert (r["rank"] == 1) == r["success"] and 1 <= r["rank"] <= 10, r
    for c in ("cos_true", "cos_target"):
        assert -1.0001 <= r[c] <= 1.0001, r
PYEOF

# a rerun prints the same bytes; --predictions lists every test image
expect_rc 0 pe-eval $ev -t tg --json -q --predictions p.tsv
cmp -s out a.json || fail "a rerun differs"
$PY - p.tsv a.json te.list <<'PYEOF' || fail "predictions"
import json, sys
p = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
r = [json.loads(l) for l in open(sys.argv[2])]
te = [l.split("\t")[0] for l in open(sys.argv[3])]
assert [x[0] for x in p] == te, "keys in the test set's order"
t = r[0]
tg = {x["key"]: x for x in r[1:]}
assert sum(a == b for k, a, b in p if k not in tg) == t["clean_correct"]
for k, a, b in p:
    if k in tg:
        assert (int(a), int(b)) == (tg[k]["true"], tg[k]["predicted"])
PYEOF

# the cache: written, then reused with identical output
expect_rc 0 pe-eval $ev -t tg --cache c.st
err_has "written to the cache c.st"
cmp -s out table.out || fail "output with a new cache differs"
[ -s c.st ] || fail "no cache file"
cp c.st c1.st
expect_rc 0 pe-eval $ev -t tg --cache c.st
err_has "'tr': features of 96 images cached in c.st"
err_has "'te': features of 64 images cached in c.st"
grep -q "written to the cache" err && fail "an up-to-date cache was rewritten"
cmp -s out table.out || fail "output from the cache differs"
cmp -s c.st c1.st || fail "the cache changed"
# another probe on the cached features
expect_rc 0 pe-eval $ev -t tg --cache c.st --probe mlp \
    --probe-epochs 3 --json
err_has "cached in c.st"
$PY -c 'import json, sys
t = json.loads(open(sys.argv[1]).readline())
assert t["probe"] == "mlp" and t["epochs"] == 3 and t["lr"] == 0.0001 and t["batch"] == 64, t
assert t["hidden"] == [512, 256] and t["dropout"] == 0.5 and t["seed"] == 1, t' out ||
    fail "MLP report"
# another --batch: recomputed (features may vary in their last bits with
# it: how the BLAS blocks the products depends on the batch and the CPU),
# the same report but for the probe's iteration count and final gradient
expect_rc 0 pe-eval $ev -t tg --cache c.st -b 7
grep -q "cached in" err && fail "features of another --batch came from the cache"
grep -v '^  probe ' out > b7.cmp
grep -v '^  probe ' table.out > b256.cmp
cmp -s b7.cmp b256.cmp || fail "--batch 7 changed the report"
# another encoder: nothing reused, the cache replaced
expect_rc 0 pe-eval -e enc2.st --train tr --test te -j 2 --cache c.st
grep -q "cached in" err && fail "features of another encoder came from the cache"
err_has "written to the cache"
cmp -s c.st c1.st && fail "the cache was not replaced"
# a corrupt cache is ignored (and replaced), the output is right
echo garbage > c.st
expect_rc 0 pe-eval $ev -t tg --cache c.st
err_has "ignoring the cache"
cmp -s out table.out || fail "output with a corrupt cache differs"
cmp -s c.st c1.st || fail "the corrupt cache was not rewritten as before"

# two tasks: the second's test set is tr, so a tr key is its target
trk=$(pe-ls --set tr | head -1)
trc=$(pe-ls --set tr | awk -F'\t' -v c="$(echo "$trk" | cut -f2)" '$2 != c {print $2; exit}')
{ head -2 tg; printf '%s\t%s\n' "$(echo "$trk" | cut -f1)" "$trc"; } > tg2
expect_rc 0 pe-eval -e enc.st -j 2 --train tr --test te --train te --test tr -t tg2 --json -q
$PY -c 'import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert [(x["type"], x["task"]) for x in r] == [("task", 1), ("target", 1), ("target", 1),
    ("task", 2), ("target", 2)], r
assert r[3]["train"] == "te" and r[3]["test"] == "tr" and r[3]["clean_images"] == 95, r[3]
assert r[4]["line"] == 3, r[4]' out || fail "two tasks"

# a PyTorch-style file: the same tensors without metadata
strip_metadata enc.st pt.st
read -r mean std size ch < meta.txt
expect_rc 2 pe-eval -e pt.st --train tr --test te
err_has "pt.st: no pe-train metadata"
err_has "give --arch, --size, --channels, --mean and --std"
[ -s out ] && fail "stdout not empty"
expect_rc 0 pe-eval -e pt.st --train tr --test te -j 2 -t tg \
    --arch small --size "$size" --channels "$ch" --mean "$mean" --std "$std"
cmp -s out table.out || fail "the metadata-free file evaluates differently"

# bad inputs: a message naming the culprit, nothing on stdout, no cache
bad() { # rc text args...
    want=$1 text=$2
    shift 2
    expect_rc "$want" pe-eval "$@" --cache bad.st --predictions bad.tsv
    err_has "$text"
    [ -s out ] && fail "stdout not empty: $*"
    [ -e bad.st ] && fail "a failed run wrote the cache: $*"
    [ -e bad.tsv ] && fail "a failed run wrote predictions: $*"
    return 0
}
bad 1 "set 'nope': no such set" $ev --train nope --test te
bad 1 "set 'ul': image " -e enc.st --train ul --test te
bad 1 "is unlabeled" -e enc.st --train ul --test te
pe-ls --set tr | awk -F'\t' 'NR == 1 {c = $2} $2 == c' | pe-inject -q --from tr --to one --keep ||
    fail "one-class set"
bad 1 "the training set 'one' holds images of one class" $ev --train one --test te
bad 1 "no-such.st" -e no-such.st --train tr --test te
echo "garbage" > junk.st
bad 1 "junk.st" -e junk.st --train tr --test te
bad 1 "the encoder takes 1 input channels, not 3 (--channels)" $ev --channels 3
bad 2 "a checkpoint of architecture 'small', not 'resnet18'" $ev --arch resnet18
bad 1 "not a regular file" -e . --train tr --test te
expect_rc 1 pe-eval $ev --cache no/such/dir/c.st
err_has "cache no/such/dir/c.st: cannot write into its folder"
k0=$(head -1 tr.keys | cut -f1)
printf '%s\t%s\n' "$k0" "$tclass" > tbad
bad 1 "tbad: line 1: image $k0 is not in the test set 'te'" $ev -t tbad
head -1 te.list > tbad
bad 1 "line 1: image $(cut -f1 tbad) is of class '$(cut -f2 tbad)' already" $ev -t tbad
printf '%s\tnope\n' "$(head -1 tg | cut -f1)" > tbad
bad 1 "tbad: line 1: set 'te' has no class 'nope'" $ev -t tbad
cut -f1 tg > tbad
bad 1 "line 1: no target class" $ev -t tbad
{ head -1 tg; head -1 tg; } > tbad
bad 1 "line 2: image $(head -1 tg | cut -f1) is a target already (line 1)" $ev -t tbad
echo "xyz" > tbad
bad 1 "tbad: line 1: expected a key" $ev -t tbad
bad 1 "stdin: line 1: expected a key" $ev -t - < tbad
bad 2 "unknown option '--x'" $ev --x
bad 2 "they go in pairs" $ev --train te
bad 2 "--probe takes linear or mlp" $ev --probe svm
bad 2 "apply to --probe mlp" $ev --probe-epochs 3
bad 2 "apply to the linear probe" $ev --probe mlp --probe-l2 1
bad 2 "--target-class goes with --targets" $ev --target-class 3
bad 2 "name the encoder" --train tr --test te
usage_error pe-eval $ev --batch 0
usage_error pe-eval $ev --channels 2
usage_error pe-eval $ev --std 0
exit 0
