# pe-craft and pe-inject: composites checked pixel by pixel with PIL, counts
# and rates recorded, reproducibility, --distinct, --remove, and bad inputs
# that store nothing.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
classes="$HERE/../../examples/fashion-mnist.classes"
pe-ingest -q --set test --classes "$classes" $fm > all.keys || fail "ingest"
pe-ls --set test --label Sandal | head -2 > targets.keys
pe-ls --set test --label Bag | head -5 > refs.keys
[ "$(wc -l < targets.keys)" = 2 ] && [ "$(wc -l < refs.keys)" = 5 ] || fail "picking keys"
make_images rgb
pe-ingest -q --set rgb rgb > rgb.keys || fail "ingest rgb"
n0=$(count_images "$PE_STORE")
pe-ls --set test > test.before

# 12 poisons for 2 targets: one line each, target and reference named
expect_rc 0 pe-craft --targets targets.keys --target-class Bag --labels test \
    --references refs.keys --count 12 --seed 3
cp out p.lines
[ "$(wc -l < p.lines)" = 12 ] || fail "want 12 lines: $(cat p.lines)"
err_has "12 poisoning inputs"
awk -F'\t' 'NF != 3 {exit 1}' p.lines || fail "want KEY TARGET REFERENCE"
[ "$(cut -f2 p.lines | sort | uniq -c | awk '{print $1}' | sort | tr '\n' ' ')" = "6 6 " ] ||
    fail "the budget is split evenly: $(cut -f2 p.lines | sort | uniq -c)"
cut -f2 p.lines | sort -u | cmp - "$(cut -f1 targets.keys | sort > t.sorted; echo t.sorted)" ||
    fail "targets in the output"
cut -f3 p.lines | sort -u | comm -23 - "$(cut -f1 refs.keys | sort > r.sorted; echo r.sorted)" |
    grep -q . && fail "a reference that was not given"
# reproducible; another seed gives other draws
expect_rc 0 pe-craft -q --targets targets.keys --target-class 8 --references refs.keys \
    --count 12 --seed 3
cmp -s out p.lines || fail "same seed, other poisons"
expect_rc 0 pe-craft -q --targets targets.keys --target-class 8 --references refs.keys \
    --count 12 --seed 4
cmp -s out p.lines && fail "another seed made the same poisons"

# every composite is target beside reference at 2:1, checked with PIL on
# exported PNGs; provenance names attack, target and reference
cut -f1 p.lines | sort -u > p.keys
cut -f1 p.keys | pe-export --flat -o png - 2>/dev/null || fail "export poisons"
cut -f1 targets.keys refs.keys | sort -u | pe-export --flat -o png - 2>/dev/null || fail "export inputs"
pe-ls -l --json - < p.keys > p.json || fail "pe-ls poisons"
$PY - p.lines p.json png <<'PYEOF' || fail "composite pixels or provenance"
import json, sys, os
from PIL import Image
lines = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
info = {j["key"]: j for j in map(json.loads, open(sys.argv[2]))}
def img(k):
    return Image.open(os.path.join(sys.argv[3], k + ".png"))
for p, t, r in lines:
    ops = [s["ops"] for s in info[p]["sources"] if s["source"] == "pe-craft"]
    mine = [o for o in ops if "target=%s target_class=8 reference=%s" % (t, r) in o]
    assert mine and all("attack=poisonedencoder version=1 seed=3 " in o for o in mine), ops
    o = dict(kv.split("=", 1) for kv in mine[0].split())
    P, T, R = img(p), img(t), img(r)
    assert T.size == R.size == (28, 28)
    if o["layout"] == "lr":
        assert P.size == (56, 28)
        a, b = (0, 28) if o["order"] == "target-first" else (28, 0)
        assert P.crop((a, 0, a + 28, 28)).tobytes() == T.tobytes()
        assert P.crop((b, 0, b + 28, 28)).tobytes() == R.tobytes()
    else:
        assert P.size == (28, 56)
        a, b = (0, 28) if o["order"] == "target-first" else (28, 0)
        assert P.crop((0, a, 28, a + 28)).tobytes() == T.tobytes()
        assert P.crop((0, b, 28, b + 28)).tobytes() == R.tobytes()
PYEOF

# pe-inject: the copy holds the poisons with their counts; the source is unchanged
expect_rc 0 pe-inject --from test --to test+p < p.lines
err_has "plus 12 ("
pe-ls --set test | cmp -s - test.before || fail "the source set changed"
pe-ls --sets --json > sets.json
distinct=$(wc -l < p.keys)
$PY - sets.json "$distinct" <<'PYEOF' || fail "set header or attributes"
import json, sys
s = {j["set"]: j for j in map(json.loads, open(sys.argv[1]))}
n = s["test+p"]
a = dict(l.split("=", 1) for l in n["attrs"].splitlines())
assert n["total"] == 10012 and n["distinct"] == 10000 + int(sys.argv[2]), n
assert a["injected"] == "12" and a["injected_distinct"] == sys.argv[2] and a["source"] == "test", a
assert abs(float(a["rate_over_clean"]) - 12 / 10000) < 1e-9, a
assert abs(float(a["rate_over_poisoned"]) - 12 / 10012) < 1e-9, a
assert a["rate_over_target_class"] == "8:0.012", a  # 12 over the 1000 bags
assert n["classes"] == s["test"]["classes"]
PYEOF
# the recorded injected count equals the sum of the poisons' counts
sum=$(pe-ls -l --set test+p - < p.keys | awk -F'\t' '{s += $3} END {print s}')
[ "$sum" = 12 ] || fail "sum of poison counts $sum, want 12"
# --remove undoes it; the poisons leave the set, nothing else does
expect_rc 0 pe-inject --from test+p --to test+p-clean --remove < p.keys
err_has "minus 12 ("
pe-ls --set test+p-clean | cmp -s - test.before || fail "--remove did not restore the set"
# --keep: the subset of the keys listed (a pre-training subset)
head -100 all.keys > k.in
expect_rc 0 pe-inject --from test --to first100 --keep < k.in
err_has "keeping 100 (100 distinct)"
pe-ls --set first100 | cut -f1 > k100
head -100 all.keys | cut -f1 | LC_ALL=C sort | cmp -s - k100 || fail "--keep kept other keys"
expect_rc 1 pe-inject --from first100 --to z --keep < p.keys
err_has "not in set 'first100'"
usage_error pe-inject --from test --to z --keep --remove
expect_rc 0 pe-inject --from test --to empty --keep < /dev/null
pe-ls --sets | grep -q "^empty	0	0" || fail "--keep of no keys: an empty set"
expect_rc 0 pe-inject --from test --to same < /dev/null
# an existing set is not overwritten without --force
expect_rc 1 pe-inject --from test --to test+p < p.lines
err_has "set 'test+p' exists"
expect_rc 0 pe-inject -q --from test --to test+p --force < p.lines
# a key not in the set
expect_rc 1 pe-inject --from test --to x --remove < p.keys
err_has "not in set 'test'"
expect_rc 0 pe-inject -q --from test --to x --remove --missing-ok < p.keys
# an unknown key
echo 0123456789abcdef0123456789abcdef > bogus.keys
expect_rc 1 pe-inject --from test --to y < bogus.keys
err_has "line 1: image 0123456789abcdef0123456789abcdef is not in the store"
expect_rc 1 pe-inject --from nosuch --to y < p.keys
err_has "no set 'nosuch'"
usage_error pe-inject --from test --to test
usage_error pe-inject --from test
pe-ls --sets | cut -f1 | grep -qx y && fail "a failed inject left a set"

# budgets: a rate of the pre-training set, per target, distinct
expect_rc 0 pe-craft --targets targets.keys --target-class 8 --references refs.keys \
    --rate 0.001 --for test
[ "$(wc -l < out)" = 10 ] || fail "rate 0.001 of 10000 is 10 poisons"
err_has "|P|/|D| 0.1%"
expect_rc 0 pe-craft -q --targets targets.keys --target-class 8 --references refs.keys \
    --per-target 3
[ "$(wc -l < out)" = 6 ] || fail "--per-target 3 for 2 targets"
expect_rc 0 pe-craft --targets targets.keys --target-class 8 --references refs.keys \
    --count 60 --distinct --set poisons
[ "$(cut -f1 out | sort -u | wc -l)" = 60 ] || fail "--distinct made duplicates"
pe-ls --sets | grep -q "^poisons	60	60" || fail "--set records the poisons"
# options: gap, fill, layouts, fit (and the bad inputs below store nothing)
expect_rc 0 pe-craft -q --targets targets.keys --target-class 8 --references refs.keys \
    --count 2 --layouts lr --gap 4 --fill 255
cut -f1 out | pe-ls -l - | cut -f4 | sort -u > sizes
[ "$(cat sizes)" = "60x28x1" ] || fail "lr with a gap of 4: $(cat sizes)"
cut -f1 targets.keys | sed 's/$/	Bag/' > t8.keys
expect_rc 0 pe-craft -q --targets t8.keys --references refs.keys --labels test --count 5
n1=$(count_images "$PE_STORE")

# bad inputs: a clear error, nothing stored
expect_rc 1 pe-craft --targets bogus.keys --target-class 8 --references refs.keys --count 5
err_has "target 0123456789abcdef0123456789abcdef is not in the store"
expect_rc 1 pe-craft --targets targets.keys --target-class 8 --references bogus.keys --count 5
err_has "reference 0123456789abcdef0123456789abcdef is not in the store"
# per-line classes: references are classed by their own field
cut -f1 targets.keys | sed 's/$/	Dress/' > t3.keys
cut -f1 targets.keys | sed 's/$/	Bag/' > t8.keys
expect_rc 1 pe-craft --targets t3.keys --references refs.keys --labels test --count 5
err_has "no reference of target class 3"
expect_rc 1 pe-craft --targets t8.keys --references refs.keys --count 5
err_has "targets: line 1: class 'Bag' is not a number"
expect_rc 1 pe-craft --targets targets.keys --target-class Bag --references refs.keys --count 5
err_has "class 'Bag' is not a number"
expect_rc 1 pe-craft --targets targets.keys --target-class Nope --labels test \
    --references refs.keys --count 5
err_has "no class 'Nope' in set 'test'"
# a colour reference for gray targets
cut -f1 rgb.keys | head -1 > rgbref.keys
expect_rc 2 pe-craft --targets targets.keys --target-class 8 --references rgbref.keys --count 5
err_has "channels"
# without --target-class (the targets' own field is their true label, Sandal, which has no reference)
expect_rc 1 pe-craft --targets targets.keys --references refs.keys --count 5 --labels test
err_has "no reference of target class 5"
[ "$(count_images "$PE_STORE")" = "$n1" ] || fail "a failed craft stored images"
usage_error pe-craft --targets targets.keys --references refs.keys
usage_error pe-craft --targets targets.keys --references refs.keys --count 0
usage_error pe-craft --targets targets.keys --references refs.keys --rate 2 --for test
usage_error pe-craft --targets targets.keys --references refs.keys --rate 0.1
usage_error pe-craft --targets targets.keys --references refs.keys --count 3 --per-target 2
usage_error pe-craft --targets targets.keys --references refs.keys --count 3 --layouts xy
usage_error pe-craft --targets targets.keys --references refs.keys --count 3 --jitter 2
usage_error pe-craft --targets - --references - --count 3
[ "$n0" -lt "$n1" ] || fail "image counts"
exit 0
