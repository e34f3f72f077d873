# The coarse Fashion-MNIST task (examples/make-coarse-sets.sh): the sets
# train-coarse and test-coarse hold the images of train and test (the store
# does not grow) under the 5 coarse classes of fashion-mnist-coarse.map,
# the script can be run again, a bad map is refused; then pe-eval with the
# fine and the coarse task at once on small subsets: two task objects (10
# and 5 classes), targets going to the first task whose test set holds them,
# and the recipes the script documents for giving targets to both tasks.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
ex=$HERE/../../examples
fm=/usr/share/datasets/fashion-mnist
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
    t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f $fm/$f ] || { echo "skip: dataset-fashion-mnist not installed ($fm/$f)"; exit 0; }
done
pe-ingest -q -j 1 --set train --classes "$ex/fashion-mnist.classes" $fm/train-images-idx3-ubyte.gz \
    > /dev/null 2>&1 || fail "ingest train"
pe-ingest -q -j 1 --set test --classes "$ex/fashion-mnist.classes" $fm/t10k-images-idx3-ubyte.gz \
    > /dev/null 2>&1 || fail "ingest test"
n0=$(count_images "$PE_STORE")
[ "$n0" = 70000 ] || fail "$n0 images after the fine sets, want 70000"

# 1. the sets, in the store named as the operand
expect_rc 0 env THREADS=1 sh "$ex/make-coarse-sets.sh" "$PE_STORE"
out_has "ingested 60000 images into set train-coarse"
out_has "ingested 10000 images into set test-coarse"
n1=$(count_images "$PE_STORE")
[ "$n1" = "$n0" ] || fail "the store grew from $n0 to $n1 images"
for s in train test; do
    pe-ls --set $s > $s.list || fail "ls $s"
    pe-ls --set $s-coarse > $s-coarse.list || fail "ls $s-coarse"
    cut -f1 $s.list > a.keys
    cut -f1 $s-coarse.list > b.keys
    cmp -s a.keys b.keys || fail "$s-coarse does not hold the keys of $s"
    # same key order, so pasted lines pair one image's fine and coarse labels:
    # the distinct pairs are exactly the map's
    paste $s.list $s-coarse.list | cut -f2,4 | LC_ALL=C sort -u > pairs.got
    grep -v '^#' "$ex/fashion-mnist-coarse.map" | cut -f3,4 | LC_ALL=C sort > pairs.want
    diff -u pairs.want pairs.got >&2 || fail "$s: fine -> coarse labels differ from the map"
done
pe-ls --sets > sets.out || fail "ls --sets"
grep -qxF "$(printf 'test-coarse\t10000\t10000\ttops,bottoms,dresses and coats,footwear,bags')" sets.out ||
    fail "test-coarse in pe-ls --sets: $(cat sets.out)"
grep -q "^train-coarse	60000	60000	" sets.out || fail "train-coarse in pe-ls --sets"
for c in "tops 3000 18000" "bottoms 1000 6000" "dresses and coats 2000 12000" \
    "footwear 3000 18000" "bags 1000 6000"; do
    name=${c% * *}
    nums=${c#"$name" }
    want_te=${nums% *}
    want_tr=${nums#* }
    got=$(pe-ls --set test-coarse --label "$name" | wc -l)
    [ "$got" -eq "$want_te" ] || fail "test-coarse: $got images of '$name', want $want_te"
    got=$(pe-ls --set train-coarse --label "$name" | wc -l)
    [ "$got" -eq "$want_tr" ] || fail "train-coarse: $got images of '$name', want $want_tr"
done

# 2. again: nothing made, nothing changed; PE_STORE when no operand
expect_rc 0 env THREADS=1 sh "$ex/make-coarse-sets.sh"
out_has "set train-coarse is already in $PE_STORE"
out_has "set test-coarse is already in $PE_STORE"
grep -q ingested out && fail "second run ingested: $(cat out)"
pe-ls --sets > sets2.out || fail "ls --sets"
cmp -s sets.out sets2.out || fail "second run changed the sets"
[ "$(count_images "$PE_STORE")" = "$n0" ] || fail "second run changed the images"
usage_error sh "$ex/make-coarse-sets.sh" a b

# 3. a map that disagrees with the class files is refused before any ingest
mkdir ex2 && cp "$ex/make-coarse-sets.sh" "$ex/fashion-mnist.classes" \
    "$ex/fashion-mnist-coarse.classes" "$ex/fashion-mnist-coarse.map" ex2/ || fail "copy"
sed 's/^4	2	Coat	/4	0	Coat	/' "$ex/fashion-mnist-coarse.map" > ex2/fashion-mnist-coarse.map
expect_rc 1 sh ex2/make-coarse-sets.sh "$T/bad.lmdb"
err_has "coarse class 0 is tops, not dresses and coats"
[ -e "$T/bad.lmdb" ] && fail "a bad map made a store"
grep -v '^9	' "$ex/fashion-mnist-coarse.map" > ex2/fashion-mnist-coarse.map
expect_rc 1 sh ex2/make-coarse-sets.sh "$T/bad.lmdb"
err_has "no line for fine id 9"

# 4. small subsets of both tasks (the same keys in each), a tiny encoder
head -500 train.list | cut -f1 > tr.keys
sed -n '501,700p' train.list | cut -f1 > pre.keys
head -200 test.list | cut -f1 > te.keys
for p in "train tr500 tr.keys" "train-coarse trc500 tr.keys" "train pre pre.keys" \
    "test te200 te.keys" "test-coarse tec200 te.keys"; do
    set -- $p
    pe-inject -q --from "$1" --to "$2" --keep < "$3" || fail "subset $2"
done
pe-train --set pre --size 16 --batch 16 --seed 5 -j 1 --max-steps 3 -o enc.st 2>/dev/null ||
    fail "train"
both="-e enc.st -j 1 -q --json --train tr500 --test te200 --train trc500 --test tec200"
coarse_first="-e enc.st -j 1 -q --json --train trc500 --test tec200 --train tr500 --test te200"

# both tasks, clean accuracy only
expect_rc 0 pe-eval $both
cp out both.json
$PY - both.json <<'PYEOF' || fail "two-task report"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["type"] for r in recs] == ["task", "task"], recs
a, b = recs
assert (a["task"], a["train"], a["test"], a["classes"]) == (1, "tr500", "te200", 10), a
assert (b["task"], b["train"], b["test"], b["classes"]) == (2, "trc500", "tec200", 5), b
for t in recs:
    assert t["train_images"] == 500 and t["test_images"] == 200 and t["clean_images"] == 200, t
    assert t["targets"] == 0 and t["asr"] is None, t
    assert 0 <= t["clean_accuracy"] <= 1, t
PYEOF

# targets: two sandals of the test subset for the fine task (to Bag), two
# tops (T-shirt/top, Pullover or Shirt) for the coarse task (to footwear)
awk -F'\t' 'NR == FNR {k[$1]; next} ($1 in k) && $2 == "Sandal"' te.keys test.list |
    head -2 | awk -F'\t' '{print $1 "\tBag"}' > fine.tsv
awk -F'\t' 'NR == FNR {k[$1]; next} ($1 in k) && $2 == "tops"' te.keys test-coarse.list |
    head -2 | awk -F'\t' '{print $1 "\tfootwear"}' > coarse.tsv
[ "$(wc -l < fine.tsv)" = 2 ] && [ "$(wc -l < coarse.tsv)" = 2 ] || fail "choosing targets"
cat fine.tsv coarse.tsv > pairs.tsv

# every key is in both test sets, so every target goes to the FIRST task:
# the coarse class names are looked up in te200 (fine), the fine ones in
# tec200 when the coarse task comes first
expect_rc 1 pe-eval $both -t pairs.tsv
err_has "line 3: set 'te200' has no class 'footwear'"
[ -s out ] && fail "stdout not empty on error"
expect_rc 1 pe-eval $coarse_first -t pairs.tsv
err_has "line 1: set 'tec200' has no class 'Bag'"
# a class id means the first task's class: 3 is footwear in the coarse task,
# Dress in the fine one
k=$(head -1 coarse.tsv | cut -f1)
printf '%s\t3\n' "$k" > id.tsv
expect_rc 0 pe-eval $both -t id.tsv
grep -q '"type":"target","task":1,.*"target_class":"Dress"' out || fail "id 3 in task 1: $(cat out)"
expect_rc 0 pe-eval $coarse_first -t id.tsv
grep -q '"type":"target","task":1,.*"target_class":"footwear"' out || fail "id 3 coarse: $(cat out)"
# one key cannot be a target of both tasks in one run
printf '%s\tBag\n%s\t4\n' "$k" "$k" > twice.tsv
expect_rc 1 pe-eval $both -t twice.tsv
err_has "line 2: image $k is a target already (line 1)"

# recipe 2: one run per task's targets, that task listed first
expect_rc 0 pe-eval $coarse_first -t coarse.tsv
cp out run2.json
$PY - run2.json coarse.tsv <<'PYEOF' || fail "coarse-first report"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
keys = [l.split("\t")[0] for l in open(sys.argv[2])]
tasks = [r for r in recs if r["type"] == "task"]
tg = [r for r in recs if r["type"] == "target"]
assert [t["classes"] for t in tasks] == [5, 10], tasks
assert tasks[0]["targets"] == 2 and tasks[0]["clean_images"] == 198, tasks[0]
assert tasks[1]["targets"] == 0 and tasks[1]["clean_images"] == 200, tasks[1]
assert [t["key"] for t in tg] == keys and all(t["task"] == 1 for t in tg), tg
assert all(t["true_class"] == "tops" and t["target_class"] == "footwear" for t in tg), tg
PYEOF

# recipe 1: one run, both tasks' targets, each task's targets removed from
# the other task's test set
cut -f1 coarse.tsv | pe-inject -q --from te200 --to te200-f --remove || fail "remove coarse targets"
cut -f1 fine.tsv | pe-inject -q --from tec200 --to tec200-t --remove || fail "remove fine targets"
expect_rc 0 pe-eval -e enc.st -j 1 -q --json --train tr500 --test te200-f \
    --train trc500 --test tec200-t -t pairs.tsv
cp out run1.json
$PY - run1.json fine.tsv coarse.tsv <<'PYEOF' || fail "one-run report"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
fine = [l.split("\t")[0] for l in open(sys.argv[2])]
coarse = [l.split("\t")[0] for l in open(sys.argv[3])]
assert [r["type"] for r in recs] == ["task", "target", "target", "task", "target", "target"], recs
a, b = recs[0], recs[3]
assert (a["test"], a["classes"], a["test_images"], a["targets"], a["clean_images"]) == \
    ("te200-f", 10, 198, 2, 196), a
assert (b["test"], b["classes"], b["test_images"], b["targets"], b["clean_images"]) == \
    ("tec200-t", 5, 198, 2, 196), b
ta, tb = recs[1:3], recs[4:6]
assert [t["key"] for t in ta] == fine and all(t["task"] == 1 for t in ta), ta
assert all(t["true_class"] == "Sandal" and t["target_class"] == "Bag" for t in ta), ta
assert [t["key"] for t in tb] == coarse and all(t["task"] == 2 for t in tb), tb
assert [t["line"] for t in tb] == [3, 4], tb
assert all(t["true_class"] == "tops" and t["target_class"] == "footwear" for t in tb), tb
for t in (a, b):
    assert 0 <= t["asr"] <= 1 and 0 <= t["clean_accuracy"] <= 1, t
PYEOF

# examples/fmnist-two-tasks.sh's pairs for the coarse task: a fine pair
# crossing coarse classes keeps its key with the target's coarse class
# (fine target given by id or by name), one inside a coarse class is
# dropped, an unknown class is refused
mkdir w2
bag=$(pe-ls --set test --label Bag | head -1 | cut -f1)
sandal=$(pe-ls --set test --label Sandal | head -1 | cut -f1)
tee=$(pe-ls --set test --label T-shirt/top | head -1 | cut -f1)
printf '%s\t5\n%s\tSneaker\n%s\tDress\n' "$bag" "$sandal" "$tee" > w2/pairs-default-t10.tsv
expect_rc 0 env MAP_ONLY=1 THREADS=1 sh "$ex/fmnist-two-tasks.sh" w2
err_has "2 of 3 pairs are attacks on the coarse task"
printf '%s\tfootwear\n%s\tdresses and coats\n' "$bag" "$tee" > want.tsv
cmp -s want.tsv w2/pairs-default-t10-coarse.tsv || fail "coarse pairs: $(cat w2/pairs-default-t10-coarse.tsv)"
printf '%s\tNoSuchClass\n' "$bag" > w2/pairs-default-t10.tsv
expect_rc 1 env MAP_ONLY=1 THREADS=1 sh "$ex/fmnist-two-tasks.sh" w2
err_has "unmapped pair $bag"
cmp -s want.tsv w2/pairs-default-t10-coarse.tsv || fail "a refused mapping changed the coarse pairs"
[ "$(ls w2)" = "$(printf 'pairs-default-t10-coarse.tsv\npairs-default-t10.tsv')" ] || fail "left behind: $(ls w2)"
exit 0
