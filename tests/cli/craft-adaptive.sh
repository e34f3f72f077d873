# pe-craft's adaptive poisons: --size (poisons of the clean images' size,
# each the composite squashed with Pillow's bilinear) and --perturb (each
# copy of a target rebuilt with PIL from the draws its record names, JPEG
# round trip included, bit for bit; no copy of a target placed twice), the
# composite's own draws unmoved by either, gray and RGB, and bad options
# that exit 2 and store nothing.
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
pe-ls --set rgb --label cat | head -2 > rgbt.keys
pe-ls --set rgb --label dog > rgbr.keys
A="--targets targets.keys --target-class 8 --references refs.keys"

# The checks, with PIL on exported PNGs and pe-ls's JSON records.
cat > adaptive.py <<'PYEOF'
import io, json, os, sys
import numpy as np
from PIL import Image

def load(lines, js):
    L = [l.rstrip("\n").split("\t") for l in open(lines)]
    recs = {}
    for j in map(json.loads, open(js)):
        recs[j["key"]] = [dict(kv.split("=", 1) for kv in s["ops"].split())
                          for s in j["sources"] if s["source"] == "pe-craft"]
    return L, recs

def img(k):
    im = Image.open(os.path.join("png", k + ".png"))
    im.load()
    return im

def record(recs, p, t, r, j):
    """poison j of target t, which the line p t r names"""
    mine = [o for o in recs[p] if o["target"] == t and o["reference"] == r
            and o["poison_index"] == str(j)]
    assert len(mine) == 1, (p, t, r, j, recs[p])
    return mine[0]

def rnd(x):
    return max(1, int(np.floor(x + 0.5)))

def perturb(T, o):
    """pe_craft_perturb, from the recorded draws: crop, resample, color, jpeg"""
    w, h = T.size
    if "crop" in o:
        l, t, r, b = map(int, o["crop"].split(","))
        T = T.crop((l, t, w - r, h - b)).resize((w, h), Image.BILINEAR)
    if "resample" in o:
        sw, sh = map(int, o["resample_size"].split("x"))
        assert (sw, sh) == (rnd(w * float(o["resample"])), rnd(h * float(o["resample"]))), o
        if (sw, sh) != (w, h):
            T = T.resize((sw, sh), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if "color" in o:
        off = [int(v) for v in o["color"].split(",")]
        assert len(off) == (1 if T.mode == "L" else 3), o
        a = np.asarray(T).astype(int) + (off[0] if T.mode == "L" else np.array(off))
        T = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), T.mode)
    if "jpeg" in o:
        b = io.BytesIO()
        T.save(b, "JPEG", quality=int(o["jpeg"]))
        T = Image.open(io.BytesIO(b.getvalue()))
        T.load()
    return T

def target_block(P, o, size):
    """the target's part of a composite (fit reference, no gap)"""
    s = float(o["scale"])
    tw, th = size if s == 1 else (rnd(size[0] * s), rnd(size[1] * s))
    first = o["order"] == "target-first"
    if o["layout"] == "lr":
        x, y = (0 if first else P.width - tw), 0
    else:
        x, y = 0, (0 if first else P.height - th)
    return P.crop((x, y, x + tw, y + th)), (tw, th)

def squash(native, sized, njs, sjs, w, h):
    """each --size poison is the same draw's native composite squashed"""
    N, _ = load(native, njs)
    S, recs = load(sized, sjs)
    assert len(N) == len(S) > 0
    for (pn, tn, rn), (ps, ts, rs) in zip(N, S):
        assert (tn, rn) == (ts, rs), "the draws moved"
        Pn, Ps = img(pn), img(ps)
        assert Ps.size == (w, h), Ps.size
        assert Pn.resize((w, h), Image.BILINEAR).tobytes() == Ps.tobytes(), ps
        assert all(o["size"] == "%dx%d" % (w, h) and o["composite"] == "%dx%d" % Pn.size
                   for o in recs[ps]), recs[ps]

def copies(lines, js, unperturbed=None):
    """each placed copy is the PIL rebuild of its recorded perturbation, and
    no copy of a target is placed twice"""
    L, recs = load(lines, js)
    seen, n = {}, {}
    if unperturbed:
        U = [l.rstrip("\n").split("\t") for l in open(unperturbed)]
        assert [l[1:] for l in U] == [l[1:] for l in L], "the draws moved"
    for p, t, r in L:
        j = n[t] = n.get(t, -1) + 1
        o = record(recs, p, t, r, j)
        assert "crop" in o or "resample" in o or "color" in o or "jpeg" in o, o
        P, T, R = img(p), img(t), img(r)
        blk, size = target_block(P, o, T.size)
        want = perturb(T, o)
        if size != T.size:
            want = want.resize(size, Image.BILINEAR)
        assert blk.tobytes() == want.tobytes(), (p, o)
        if "jpeg" in o and size == T.size:  # the draws alone can all be 0
            assert blk.tobytes() != T.tobytes(), "an unperturbed copy"
        b = blk.tobytes()
        assert b not in seen.setdefault(t, set()), "a copy of %s placed twice" % t
        seen[t].add(b)
    return n

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "squash":
        squash(*args[:4], int(args[4]), int(args[5]))
    elif cmd == "copies":
        n = copies(*args[:2], *args[2:3])
        print(" ".join(str(v + 1) for v in sorted(n.values())))
PYEOF

# export_png LINES JSON: the images of LINES (column 1) and the inputs as
# png/KEY.png (those not there yet: pe-export never overwrites), the
# records of LINES into JSON
export_png() {
    { cut -f1 "$1"; cut -f1 targets.keys refs.keys rgbt.keys rgbr.keys; } | sort -u > want.keys
    mkdir -p png
    ls png | sed 's/\.png$//' | sort > have.keys
    comm -23 want.keys have.keys > new.keys
    if [ -s new.keys ]; then
        pe-export --flat -o png - < new.keys 2>/dev/null || fail "export"
    fi
    cut -f1 "$1" | sort -u | pe-ls -l --json - > "$2" || fail "pe-ls records"
}

n0=$(count_images "$PE_STORE")
# the native poisons, then --size 28x28 from the same draws: 28x28 in the
# store, each the native composite squashed
expect_rc 0 pe-craft -q $A --count 12 --seed 3
cp out native.lines
expect_rc 0 pe-craft -q $A --count 12 --seed 3 --size 28x28
cp out sized.lines
cut -f1 sized.lines | pe-ls -l - | cut -f4 | sort -u > sizes
[ "$(cat sizes)" = "28x28x1" ] || fail "--size 28x28 made $(cat sizes)"
export_png native.lines native.json
export_png sized.lines sized.json
$PY adaptive.py squash native.lines sized.lines native.json sized.json 28 28 ||
    fail "--size 28x28 is not the composite squashed"
# --size same: the target's own size, whatever the jitter made
expect_rc 0 pe-craft -q $A --count 12 --seed 3 --size same --jitter 0.3 --gap 2
cut -f1 out | pe-ls -l - | cut -f4 | sort -u > sizes
[ "$(cat sizes)" = "28x28x1" ] || fail "--size same made $(cat sizes)"
expect_rc 0 pe-craft -q $A --count 4 --seed 3 --size 30x17
cut -f1 out | pe-ls -l - | cut -f4 | sort -u > sizes
[ "$(cat sizes)" = "30x17x1" ] || fail "--size 30x17 made $(cat sizes)"

# --perturb: the same draws as the native run (references, layouts), each
# placed copy the PIL rebuild of its record, and no two alike
expect_rc 0 pe-craft -q $A --count 12 --seed 3 --perturb resample=0.1,crop=2,jpeg=75,color=12
cp out pert.lines
export_png pert.lines pert.json
$PY adaptive.py copies pert.lines pert.json native.lines > counts ||
    fail "--perturb copies"
[ "$(cat counts)" = "6 6" ] || fail "poisons per target: $(cat counts)"
# the order of the list is not the order of application
expect_rc 0 pe-craft -q $A --count 12 --seed 3 --perturb color=12,jpeg=75,crop=2,resample=0.1
cmp -s out pert.lines || fail "the list's order changed the poisons"
# with --distinct, many copies per target, none twice (retries jitter the scale)
expect_rc 0 pe-craft -q $A --per-target 40 --seed 5 --distinct --perturb crop=1,color=3
cp out many.lines
[ "$(cut -f1 many.lines | sort -u | wc -l)" = 80 ] || fail "--distinct made duplicates"
export_png many.lines many.json
$PY adaptive.py copies many.lines many.json > counts || fail "--distinct --perturb copies"
[ "$(cat counts)" = "40 40" ] || fail "poisons per target: $(cat counts)"

# RGB: one colour offset a channel, JPEG's 4:2:0, --size same of a 40x24 target
R="--targets rgbt.keys --target-class dog --labels rgb --references rgbr.keys --per-target 4"
expect_rc 0 pe-craft -q $R --seed 2 --layouts lr --perturb color=30,jpeg=90,crop=3
cp out rgb.lines
export_png rgb.lines rgb.json
$PY adaptive.py copies rgb.lines rgb.json > counts || fail "RGB --perturb copies"
grep -q '"ops":"[^"]* color=[-+][0-9]*,[-+][0-9]*,[-+][0-9]* jpeg=90"' rgb.json ||
    fail "RGB records want three colour offsets"
expect_rc 0 pe-craft -q $R --seed 2 --size same
cut -f1 out | pe-ls -l - | cut -f4 | sort -u > sizes
cut -f1 rgbt.keys | pe-ls -l - | cut -f4 | sort -u > want
cmp -s sizes want || fail "--size same on RGB: $(cat sizes), want $(cat want)"

# bad options: exit 2 naming the option, empty stdout, nothing stored
n1=$(count_images "$PE_STORE")
usage_error pe-craft $A --count 4 --size 0x5
err_has "--size: '0x5'"
usage_error pe-craft $A --count 4 --size 28
usage_error pe-craft $A --count 4 --size 28x28x1
usage_error pe-craft $A --count 4 --size Same
usage_error pe-craft $A --count 4 --size 10000x10000
err_has "--size"
usage_error pe-craft $A --count 4 --perturb jpeg=0
err_has "--perturb: jpeg=0"
usage_error pe-craft $A --count 4 --perturb blur=3
err_has "--perturb: 'blur' is not a perturbation"
usage_error pe-craft $A --count 4 --perturb crop=2,crop=3
err_has "--perturb: crop is given twice"
usage_error pe-craft $A --count 4 --perturb crop=2 --perturb crop=1
usage_error pe-craft $A --count 4 --perturb resample=0
usage_error pe-craft $A --count 4 --perturb resample=0.95
usage_error pe-craft $A --count 4 --perturb color=256
usage_error pe-craft $A --count 4 --perturb jpeg=101
usage_error pe-craft $A --count 4 --perturb crop=2,
usage_error pe-craft $A --count 4 --perturb ""
usage_error pe-craft $A --count 4 --perturb crop
# found once the targets are read: still before anything is stored
usage_error pe-craft $A --count 4 --perturb crop=14
err_has "crop=14 needs sides over 28 pixels"
usage_error pe-craft $A --count 4 --perturb jpeg=75 --distinct
err_has "distinct target copies"
[ "$(count_images "$PE_STORE")" = "$n1" ] || fail "a refused craft stored images"
[ "$n0" -lt "$n1" ] || fail "image counts"
expect_rc 0 pe-craft --help
out_has "--size WxH|same"
out_has "--perturb LIST"
exit 0
