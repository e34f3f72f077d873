# pe-train's in-run defenses (issue 7) on a tiny Fashion-MNIST set with a
# tiny model: --init (the encoder carried over exactly, the head rule, the
# provenance, a resume, errors), --crop-mode local (works, reproducible,
# changes the run, resume and --max-steps exact, resume checks the mode)
# and --stop-plateau (the rule recomputed from the log, -o = the best
# epoch, resume), and the combinations that are usage errors.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
pe-ingest -q --set all $fm > all.keys || fail "ingest"
head -96 all.keys > tr.in
sed -n '97,160p' all.keys > te.in
pe-inject -q --from all --to tr --keep < tr.in || fail "tr"
pe-inject -q --from all --to te --keep < te.in || fail "te"

# st.py: the tensors and metadata of safetensors files, with plain Python
cat > st.py <<'PYEOF'
import json, struct
def load(path):
    d = open(path, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    h = json.loads(d[8:8 + n])
    meta = h.pop("__metadata__", {})
    base = 8 + n
    t = {k: (v["dtype"], v["shape"], d[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
         for k, v in h.items()}
    return t, meta, d
def save(path, tensors, meta=None):
    # tensors: name -> (dtype, shape, bytes), laid out in name order
    h, off, data = {}, 0, b""
    if meta:
        h["__metadata__"] = meta
    for k in sorted(tensors):
        dt, shape, b = tensors[k]
        h[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    j = json.dumps(h, separators=(",", ":")).encode()
    j += b" " * (-len(j) % 8)
    open(path, "wb").write(struct.pack("<Q", len(j)) + j + data)
def model(t):
    return {k: v for k, v in t.items() if not k.startswith("optimizer.")}
PYEOF

common="--set tr --size 16 --batch 16 --seed 7 -j 2"
knn="--knn-set te --knn-k 5"

# ---- --init --------------------------------------------------------------
# the source: 1 epoch from the seed
expect_rc 0 pe-train $common --epochs 1 -o src.st $knn --log src.log
# --epochs 0 writes the initial encoder: with --init, the file's tensors
# (parameters, running statistics, counters, head) bit for bit, a zero
# optimiser state, step 0, the file's normalisation, and the provenance
expect_rc 0 pe-train $common --epochs 0 --init src.st -o i0.st
grep -q "head starts fresh" err && fail "a note for a file with a head: $(cat err)"
$PY - src.st i0.st <<'PYEOF' || fail "--init --epochs 0 is not the source"
import sys; sys.path.insert(0, ".")
from st import load, model
s, sm, sb = load(sys.argv[1])
i, im, _ = load(sys.argv[2])
assert model(s) == model(i), [k for k in model(s) if s[k] != i.get(k)]
assert set(i) == set(s)
for k, (dt, shape, b) in i.items():
    if k.startswith("optimizer."):
        assert dt == "F32" and b == bytes(len(b)), k
assert im["step"] == "0" and im["epochs_done"] == "0", im
assert im["mean"] == sm["mean"] and im["std"] == sm["std"], (im, sm)
assert im["init"] == "src.st" and im["init_head"] == "file", im
assert len(im["init_xxh3_128"]) == 32, im
try:
    import xxhash
    assert im["init_xxh3_128"] == xxhash.xxh3_128_hexdigest(sb), im
except ImportError:
    print("skip: no Python xxhash; the recorded hash is not recomputed")
PYEOF
# fine-tuning continues: the epoch-0 kNN score is the source's last one
# (the same encoder and normalisation), the losses are finite, and the
# checkpoint records the steps and the provenance
expect_rc 0 pe-train $common --epochs 2 --init src.st -o f.st $knn --log f.log
$PY - src.log f.log f.st <<'PYEOF' || fail "--init run"
import json, math, sys; sys.path.insert(0, ".")
from st import load
src = [json.loads(l) for l in open(sys.argv[1])]
f = [json.loads(l) for l in open(sys.argv[2])]
assert f[0]["epoch"] == 0 and f[0]["knn_acc"] == src[-1]["knn_acc"], (f[0], src[-1])
assert [e["epoch"] for e in f] == [0, 1, 2], f
assert all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in f[1:]), f
_, m, _ = load(sys.argv[3])
assert m["step"] == "12" and m["epochs_done"] == "2" and m["init"] == "src.st", m
PYEOF
# the same again: byte-identical; 1 epoch + --resume: the same as 2 straight,
# the provenance kept
expect_rc 0 pe-train $common --epochs 2 --init src.st -o f2.st
cmp f.st f2.st || fail "an --init rerun gave another checkpoint"
expect_rc 0 pe-train $common --epochs 1 --init src.st -o r.st
expect_rc 0 pe-train $common --epochs 2 --resume r.st -o r.st
cmp f.st r.st || fail "--init 1 epoch + resume differs from 2 epochs straight"
# fine-tuning is not resuming: fresh optimiser, step 0
expect_rc 0 pe-train $common --epochs 2 --resume src.st -o c.st
cmp -s c.st f.st && fail "--init is the same as --resume"

# a file without a head (as torchvision-named encoders come) and one whose
# head has other shapes: the encoder from the file, the head from --seed
# (that of a fresh run), a note on stderr; no metadata: the normalisation
# is the set's
expect_rc 0 pe-train $common --epochs 0 -o fresh.st
$PY - src.st <<'PYEOF' || fail "writing the test files"
import sys; sys.path.insert(0, ".")
from st import load, save, model
s, m, _ = load(sys.argv[1])
enc = {k: v for k, v in model(s).items() if not k.startswith("head.")}
save("nohead.st", enc)
bad = dict(model(s))
dt, shape, b = bad["head.3.weight"]
bad["head.3.weight"] = (dt, [shape[0] * 2, shape[1] // 2], b)
save("badhead.st", bad)
wide = dict(model(s))
dt, shape, b = wide["0.weight"]
wide["0.weight"] = (dt, [shape[0], 3] + shape[2:], b * 3)
save("wide.st", wide, {"arch": "small"})
PYEOF
expect_rc 0 pe-train $common --epochs 0 --init nohead.st -o nh.st
err_has "no projection head in the file; the head starts fresh"
expect_rc 0 pe-train $common --epochs 0 --init badhead.st -o bh.st
err_has "head tensor 'head.3.weight' has another shape"
$PY - src.st fresh.st nh.st bh.st <<'PYEOF' || fail "--init head rule"
import sys; sys.path.insert(0, ".")
from st import load, model
s, _, _ = load(sys.argv[1])
fr, fm, _ = load(sys.argv[2])
for p in sys.argv[3:]:
    t, m, _ = load(p)
    for k, v in model(t).items():
        want = fr[k] if k.startswith("head.") else s[k]
        assert v == want, (p, k)
    assert m["init_head"] == "fresh" and m["mean"] == fm["mean"], (p, m)
PYEOF
# an encoder that does not fit: exit 1, the file and tensor named, no -o
expect_rc 1 pe-train $common --init wide.st -o x.st
err_has "tensor '0.weight' has another shape"
expect_rc 1 pe-train $common --channels 3 --init src.st -o x.st
err_has "src.st: tensor '0.weight' has another shape"
expect_rc 1 pe-train $common --arch resnet18 --width 0.125 --init src.st -o x.st
err_has "an encoder of architecture 'small'"
expect_rc 1 pe-train $common --init nope.st -o x.st
err_has "nope.st"
echo garbage > garbage.st
expect_rc 1 pe-train $common --init garbage.st -o x.st
err_has "garbage.st"
[ -e x.st ] && fail "a failed --init wrote a checkpoint"
usage_error pe-train $common --init src.st --resume src.st -o x.st

# ---- --crop-mode local ---------------------------------------------------
expect_rc 0 pe-train $common --epochs 2 --crop-mode local -o l1.st --log l1.log
expect_rc 0 pe-train $common --epochs 2 --crop-mode local -o l2.st
cmp l1.st l2.st || fail "local crops: the same seed gave another checkpoint"
expect_rc 0 pe-train $common --epochs 2 -o ind.st
cmp -s l1.st ind.st && fail "--crop-mode local had no effect"
expect_rc 0 pe-train $common --epochs 2 --crop-mode local --local-scale 0.3,0.6 -o l3.st
cmp -s l1.st l3.st && fail "--local-scale had no effect"
$PY - l1.st ind.st l3.st l1.log <<'PYEOF' || fail "local crop metadata"
import json, math, sys; sys.path.insert(0, ".")
from st import load
_, l, _ = load(sys.argv[1])
_, i, _ = load(sys.argv[2])
_, l3, _ = load(sys.argv[3])
assert l["crop_mode"] == "local" and l["local_scale"] == "0.2,0.5", l
assert i["crop_mode"] == "independent" and "local_scale" not in i, i
assert l3["local_scale"] == "0.3,0.6", l3
assert all(math.isfinite(json.loads(x)["loss"]) for x in open(sys.argv[4]))
PYEOF
# a stop inside an epoch and a resume: the same as straight through
expect_rc 0 pe-train $common --epochs 2 --crop-mode local --max-steps 4 -o lm.st
expect_rc 0 pe-train $common --epochs 2 --crop-mode local --resume lm.st -o lm.st
cmp l1.st lm.st || fail "local crops: --max-steps + resume differs from straight through"
# a resume takes the same crop mode and region scale
expect_rc 2 pe-train $common --epochs 3 --resume l1.st -o z.st
err_has "crop_mode is local, this run's independent"
expect_rc 2 pe-train $common --epochs 3 --crop-mode local --local-scale 0.3,0.6 --resume l1.st -o z.st
err_has "local_scale"
usage_error pe-train $common -o z.st --crop-mode loose
usage_error pe-train $common -o z.st --local-scale 0.2,0.5
usage_error pe-train $common -o z.st --crop-mode local --local-scale 0,0.5
usage_error pe-train $common -o z.st --crop-mode local --local-scale 0.6,0.5
usage_error pe-train $common -o z.st --crop-mode local --local-scale 0.5,1.5
usage_error pe-train $common -o z.st --crop-mode local --local-scale 0.5
[ -e z.st ] && fail "a refused run wrote a checkpoint"

# ---- --stop-plateau ------------------------------------------------------
expect_rc 0 pe-train $common --epochs 12 --stop-plateau 3 $knn --log p.log -o p.st
cp err p.err
best=$($PY - p.log p.st 12 3 <<'PYEOF'
import json, sys; sys.path.insert(0, ".")
from st import load
lines = [json.loads(l) for l in open(sys.argv[1])]
cap, n = int(sys.argv[3]), int(sys.argv[4])
assert lines[0]["epoch"] == 0 and "best_epoch" not in lines[0], lines[0]
# the rule, recomputed: trained epochs only, strictly better is better,
# stop after the first epoch n past the best, or at the cap
best, acc, stop = 0, None, None
for e in lines[1:]:
    if acc is None or e["knn_acc"] > acc:
        best, acc = e["epoch"], e["knn_acc"]
    assert e["best_epoch"] == best, (e, best)
    if e["epoch"] - best >= n or e["epoch"] == cap:
        stop = e["epoch"]
        break
assert stop == lines[-1]["epoch"], (stop, lines)
_, m, _ = load(sys.argv[2])
assert m["epochs_done"] == str(best) and m["stop_plateau"] == str(n), m
assert abs(float(m["knn_acc"]) - acc) < 6e-5, (m, acc)
print(best, stop)
PYEOF
) || fail "the plateau rule"
set -- $best
best=$1 stop=$2
echo "plateau: best epoch $best, stopped after $stop"
[ "$stop" -lt 12 ] && { grep -qF "stopped by --stop-plateau 3 after epoch $stop" p.err ||
    fail "no stop line: $(cat p.err)"; }
grep -qF "p.st holds epoch $best, the best" p.err || fail "no best line: $(cat p.err)"
# -o is the best epoch's checkpoint: the tensors of a plain run of that many
# epochs (Adam: the schedule does not depend on --epochs)
expect_rc 0 pe-train $common --epochs $best -o pb.st
$PY - p.st pb.st <<'PYEOF' || fail "-o is not the best epoch's encoder"
import sys; sys.path.insert(0, ".")
from st import load
a, _, _ = load(sys.argv[1])
b, _, _ = load(sys.argv[2])
assert a == b, [k for k in a if a[k] != b.get(k)]
PYEOF
# a resume of it ends the same way, with the same -o
expect_rc 0 pe-train $common --epochs 12 --stop-plateau 3 $knn --resume p.st -o p2.st
cmp p.st p2.st || fail "a resumed plateau run gave another -o"
# combinations
usage_error pe-train $common -o z.st --stop-plateau 2
usage_error pe-train $common -o z.st --stop-plateau 2 $knn --max-steps 3
usage_error pe-train $common -o z.st --stop-plateau 0 $knn
pe-ingest -q --unlabeled --set un $fm > /dev/null || fail "unlabeled ingest"
pe-inject -q --from un --to un64 --keep < te.in || fail "un64"
expect_rc 1 pe-train $common -o z.st --stop-plateau 2 --knn-set un64
err_has "the kNN set 'un64' is unlabeled"
[ -e z.st ] && fail "a refused run wrote a checkpoint"
exit 0
