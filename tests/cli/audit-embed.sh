# pe-audit --encoder: the embedding scans (outlier, embdup, mislabel) with
# a tiny `small` encoder (3 steps of pe-train at size 16) on 300
# Fashion-MNIST images with plants: JPEG copies of three images (near
# duplicates), JPEG copies of two trousers ingested as "Bag" (mislabeled),
# and one inverted image (an outlier). Checks that each scan finds its
# plants (self-scored with --truth FILE), the line and JSON outputs and
# their evidence, identical reruns whatever the threads, the report's
# sections, a metadata-free encoder file, and bad inputs (missing or
# broken encoder, wrong channels, an RGB set for a gray encoder, too many
# images, options without --encoder) failing with an empty stdout.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
classes="$HERE/../../examples/fashion-mnist.classes"
pe-ingest -q --set test --classes "$classes" $fm > all.keys || fail "ingest"
head -300 all.keys > base.in
pe-inject -q --from test --to base --keep < base.in || fail "base subset"
pe-train --set base --size 16 --batch 16 --seed 7 -j 2 --max-steps 3 -o enc.st 2>/dev/null ||
    fail "train"

# the plants, written by Pillow from exports of base images
awk -F'\t' '$2 == "Trouser"' base.in | head -2 > mis.src
awk -F'\t' '$2 == "Sneaker" || $2 == "Pullover" || $2 == "Dress"' base.in | head -3 > dup.src
awk -F'\t' '$2 == "Shirt"' base.in | head -1 > inv.src
cat mis.src dup.src inv.src | cut -f1 | pe-export -o ex --set base - 2>/dev/null || fail "export"
$PY - <<'PYEOF' || fail "writing the plants"
import os
from PIL import Image, ImageOps
files = {f.split(".")[0]: os.path.join(d, f) for d, _, fs in os.walk("ex") for f in fs}
os.makedirs("plant")
for name in ("mis", "dup", "inv"):
    for i, line in enumerate(open(name + ".src")):
        key, cls = line.split("\t")[:2]
        im = Image.open(files[key])
        if name == "inv":
            ImageOps.invert(im).save("plant/inv%d.png" % i)
        else:
            im.save("plant/%s%d.jpg" % (name, i), quality=95)
        # a trouser's copy gets the wrong label
        open("plant/%s%d.label" % (name, i), "w").write("Bag" if name == "mis" else cls)
PYEOF
pe-inject -q --from base --to audited < /dev/null || fail "copy of base"
for f in plant/*.jpg plant/*.png; do
    pe-ingest -q --set audited --append --label "$(cat "${f%.*}.label")" "$f" || fail "ingest $f"
done > planted.keys
[ "$(wc -l < planted.keys)" = 6 ] || fail "planted: $(cat planted.keys)"
grep 'plant/mis' planted.keys | cut -f1 > mis.keys
grep 'plant/dup' planted.keys | cut -f1 > dup.keys
grep 'plant/inv' planted.keys | cut -f1 > inv.keys

# every scan finds its plants; scored with --truth FILE
au="--set audited -e enc.st -j 2"
expect_rc 0 pe-audit $au --scan embed --all --json
cp out all.json
err_has "306 images in 'audited'"
err_has "encoder enc.st (small, 128 features), 10 neighbours"
err_has "'audited': features of 306 images in"
$PY - all.json <<'PYEOF' || fail "the embedding scans on the plants"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
summ = lines[-1]
assert summ["type"] == "summary" and summ["images"] == 306, summ
assert (summ["encoder"], summ["encoder_arch"], summ["features"], summ["neighbours"]) == \
    ("enc.st", "small", 128, 10), summ
s = {x["scan"]: x for x in summ["scans"]}
assert list(s) == ["outlier", "embdup", "mislabel"], list(s)
assert s["mislabel"]["threshold"] == 0.9, s
assert 0 < s["outlier"]["threshold"] < 1 and 0 < s["embdup"]["threshold"] < 1, s
keys = lambda f: [l.rstrip("\n").split("\t")[0] for l in open(f)]
mis, dup, inv = keys("mis.keys"), keys("dup.keys"), keys("inv.keys")
origin = {}  # plant -> the base image it copies
for name in ("mis", "dup"):
    for plant, src in zip(keys(name + ".keys"), keys(name + ".src")):
        origin[plant] = src
by = {}
for l in lines[:-1]:
    assert l["type"] == "finding" and 0 <= l["score"] <= 1, l
    by.setdefault(l["scan"], {})[l["key"]] = l
assert all(len(v) == 306 for v in by.values()), {k: len(v) for k, v in by.items()}
# evidence: k neighbours, nearest first, similarities descending
for l in by["outlier"].values():
    assert l["k"] == 10 and len(l["neighbours"]) == 10 and l["key"] not in l["neighbours"], l
    sim = l["similarities"]
    assert sim == sorted(sim, reverse=True), sim
    assert abs(l["mean_distance"] - min(1, max(0, sum(1 - x for x in sim) / 10))) < 1e-6, l
# outlier: the inverted image is the farthest from the rest
top = max(by["outlier"].values(), key=lambda l: l["score"])
assert top["key"] == inv[0] and top["suspect"], top
# embdup: each copy is clustered with its original, one of the two kept
sus = {k for k, l in by["embdup"].items() if l["suspect"]}
for plant, src in origin.items():
    a, b = by["embdup"][plant], by["embdup"][src]
    assert a["cluster_size"] == 2 and a["representative"] == b["representative"], (a, b)
    assert a["representative"] in (plant, src) and len({plant, src} & sus) == 1, (a, b)
    assert a["nearest"] == src and b["nearest"] == plant and a["score"] >= a["threshold"], a
assert len(sus) == 5, sus  # the five copies' pairs and nothing else
# mislabel: the trousers labeled Bag have the highest score, 1: every
# neighbour disagrees, and most are trousers
best = max(l["score"] for l in by["mislabel"].values())
for k in mis:
    l = by["mislabel"][k]
    assert l["score"] == best == 1 and l["suspect"], l
    assert (l["label_class"], l["neighbour_label_class"]) == ("Bag", "Trouser"), l
    assert l["disagree"] == l["labeled_neighbours"] == 10 and origin[k] in l["neighbours"], l
print("outlier top %s; embdup threshold %.9g, %d suspects; mislabel: %d images at 1" % (
    top["key"], s["embdup"]["threshold"], len(sus),
    sum(l["score"] == 1 for l in by["mislabel"].values())), file=sys.stderr)
PYEOF
# --truth FILE scores each scan on its plants
for scan in mislabel:mis outlier:inv; do
    expect_rc 0 pe-audit $au --scan "${scan%:*}" --truth "${scan#*:}.keys" --json -q
    $PY -c 'import json, sys
s = json.loads(open(sys.argv[1]).readlines()[-1])["scans"][0]
assert s["scan"] == sys.argv[2] and s["recall"] == 1.0 and s["auc"] >= 0.9, s
print("%s: recall %.3f, precision %.3f, ROC AUC %.4f" % (sys.argv[2], s["recall"], s["precision"], s["auc"]),
      file=sys.stderr)' out "${scan%:*}" || fail "--truth on the $scan plants"
done

# lines: KEY<TAB>SCAN<TAB>SCORE with six decimals, key order, the same
# suspects as the JSON; the same bytes again, with one thread or two
expect_rc 0 pe-audit $au --scan embed
cp out lines.txt
awk -F'\t' 'NF != 3 || length($1) != 32 || $3 !~ /^[01]\.[0-9][0-9][0-9][0-9][0-9][0-9]$/ {exit 1}' \
    lines.txt || fail "malformed line: $(head -3 lines.txt)"
cut -f1 lines.txt | LC_ALL=C sort -c 2>/dev/null || fail "not in key order"
[ "$(wc -l < lines.txt)" = "$(grep -c '"suspect":true' all.json)" ] || fail "lines and JSON differ"
expect_rc 0 pe-audit --set audited -e enc.st -j 1 --scan embed
cmp -s out lines.txt || fail "-j 1 and -j 2 differ"
# another batch blocks the BLAS's matrix products differently on some
# machines: the same scores to rounding, not always the same bits
expect_rc 0 pe-audit $au --scan embed --all --json -b 7
$PY - all.json out <<'PYEOF' || fail "--batch 7 changed the scores of a small encoder"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
moved = 0
for x, y in zip(a, b):
    if x["type"] != "finding":
        continue
    assert (x["key"], x["scan"]) == (y["key"], y["scan"]), (x["key"], y["key"])
    if x["scan"] == "mislabel":
        # votes of neighbours: a near tie among the 10th and 11th can swap
        moved += x["score"] != y["score"]
    else:
        assert abs(x["score"] - y["score"]) <= 1e-5, (x["key"], x["scan"], x["score"], y["score"])
n = sum(1 for x in a if x.get("scan") == "mislabel")
assert moved <= n // 50, ("mislabel scores moved", moved, "of", n)
print("batch 7: mislabel scores moved", moved, "of", n)
PYEOF
# the other scans are unchanged by an encoder
expect_rc 0 pe-audit --set audited --scan dup,quality,poison
cp out plain.txt
expect_rc 0 pe-audit $au --scan dup,quality,poison,embed
tab=$(printf '\t')
grep -v -e "${tab}outlier${tab}" -e "${tab}embdup${tab}" -e "${tab}mislabel${tab}" out > rest.txt
cmp -s rest.txt plain.txt || fail "--encoder changed the other scans"
# options: k, a threshold, embdup's from a similarity
expect_rc 0 pe-audit $au --scan outlier,embdup -k 3 --threshold outlier=0.5 --threshold embdup=0.99 --json -q
$PY -c 'import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
s = {x["scan"]: x for x in L[-1]["scans"]}
assert L[-1]["neighbours"] == 3 and s["outlier"]["threshold"] == 0.5 and s["outlier"]["suspects"] == 0, s
assert s["embdup"]["threshold"] == 0.99 and s["embdup"]["suspects"] > 5, s
assert all(len(l["neighbours"]) == 3 for l in L[:-1] if l["scan"] == "outlier")' out ||
    fail "-k and --threshold"

# the report: a section per scan, with the plants and their neighbours
expect_rc 0 pe-audit $au --scan embed --report r.html
$PY - r.html mis.keys inv.keys <<'PYEOF' || fail "report"
import re, sys
html = open(sys.argv[1], encoding="utf-8").read()
for sec, must in (("outliers", sys.argv[3]), ("embdup", None), ("mislabels", sys.argv[2])):
    body = re.search(r'<section id="%s">(.*?)</section>' % sec, html, re.S).group(1)
    assert body.count("<img") >= 3 and "Not run" not in body, sec
    for k in (open(must).read().split() if must else []):
        assert k in body, (sec, k)
assert "neighbours" in html and 'href="#mislabels"' in html
PYEOF
expect_rc 0 pe-audit --set audited --scan phash --report r0.html
grep -q '<section id="outliers">' r0.html || fail "no outliers section without an encoder"

# keys on stdin carry no labels: mislabel does not run
cut -f1 base.in | head -50 > stdin50.keys
expect_rc 0 pe-audit -e enc.st -j 2 --scan embed < stdin50.keys
err_has "mislabel: no image of 'stdin' has a label; not run"
expect_rc 1 pe-audit -e enc.st -j 2 --scan mislabel < stdin50.keys
err_has "the mislabel scan needs labels"
[ -s out ] && fail "stdout not empty"

# a PyTorch-style file: the same tensors without metadata
strip_metadata enc.st pt.st
read -r mean std size ch < meta.txt
expect_rc 2 pe-audit --set audited -e pt.st --scan embed
err_has "pt.st: no pe-train metadata"
[ -s out ] && fail "stdout not empty"
expect_rc 0 pe-audit --set audited -e pt.st -j 2 --scan embed --arch small --size "$size" \
    --channels "$ch" --mean "$mean" --std "$std"
cmp -s out lines.txt || fail "the metadata-free file audits differently"

# bad inputs: a clear error before any image is scanned, nothing on stdout
bad() { # rc text args...
    want=$1 text=$2
    shift 2
    expect_rc "$want" pe-audit "$@"
    err_has "$text"
    [ -s out ] && fail "stdout not empty: $*"
    grep -q "features of" err && fail "features were computed: $*"
    return 0
}
bad 1 "no-such.st: No such file or directory" --set audited -e no-such.st
echo garbage > junk.st
bad 1 "junk.st" --set audited -e junk.st
bad 1 "the encoder takes 1 input channels, not 3 (--channels)" --set audited -e enc.st --channels 3
bad 2 "a checkpoint of architecture 'small', not 'resnet18'" --set audited -e enc.st --arch resnet18
bad 1 "not a regular file" --set audited -e .
mkdir rgb
make_images rgb || fail "RGB images"
pe-ingest -q --set rgb rgb > /dev/null || fail "ingest RGB"
bad 1 "is RGB; the encoder enc.st takes 1 channel (gray images)" --set rgb -e enc.st
bad 1 "306 images: the embedding scans compare every pair" --set audited -e enc.st --embed-max 300
grep -q "images in" err && fail "scanned before refusing --embed-max"
bad 1 "no set 'nosuch'" --set nosuch -e enc.st
usage_error pe-audit --set audited --scan outlier
err_has "the embedding scans (outlier, embdup, mislabel) need --encoder FILE"
usage_error pe-audit --set audited --arch small
err_has "--arch describes the encoder: give --encoder FILE"
usage_error pe-audit --set audited -e enc.st --scan phash
usage_error pe-audit --set audited -e enc.st -k 0
usage_error pe-audit --set audited -e enc.st -k 257
usage_error pe-audit --set audited -e enc.st --size 4
usage_error pe-audit --set audited -e enc.st --channels 2
usage_error pe-audit --set audited -e enc.st --std 0
usage_error pe-audit --set audited -e enc.st --width 2 --arch small
usage_error pe-audit --set audited -e enc.st --threshold embdup=1.5
usage_error pe-audit --set audited -e enc.st --embed-max 0
usage_error pe-audit --set audited -e
exit 0
