# pe-train --method moco on a tiny set with a tiny model: the checkpoint's
# MoCo state (key encoder, queue, pointer), byte-identical reruns, N epochs
# straight = k epochs + --resume (at an epoch end and inside one), the key
# encoder's start (a copy of the query, also under --init) and momentum
# extremes, resume across methods refused, bad options, and pe-eval reading
# the query encoder. SimCLR's own checks are train.sh's.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
pe-ingest -q --set all $fm > all.keys || fail "ingest"
# a 96-image labeled training set and a 64-image test set, as train.sh
head -96 all.keys > tr.keys
sed -n '97,160p' all.keys > te.keys
cut -f1 tr.keys | pe-export -o trimg --set all - 2>/dev/null || fail "export train"
cut -f1 te.keys | pe-export -o teimg --set all - 2>/dev/null || fail "export test"
pe-ingest -q --set tr trimg >/dev/null || fail "ingest train"
pe-ingest -q --set te teimg >/dev/null || fail "ingest test"

# st.py FILE: the safetensors header and a tensor reader, for the checks below
cat > st.py <<'PYEOF'
import json, struct
def read(path):
    d = open(path, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    h = json.loads(d[8:8 + n])
    meta = h.pop("__metadata__")
    body = d[8 + n:]
    data = {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items()}
    return h, meta, data
def model_names(h):
    return [k for k in h if not k.startswith(("optimizer.", "moco."))]
PYEOF

simclr="--set tr --arch small --size 16 --batch 16 --seed 7 -j 2 --crop-scale 0.5,1"
common="$simclr --method moco --moco-queue 32"
expect_rc 0 pe-train $common --epochs 2 -o a.st --log a.log --knn-set te --knn-k 5
err_has "2 epochs, 12 steps"
[ "$(wc -l < a.log)" = 3 ] || fail "log lines (epoch 0, 1, 2): $(cat a.log)"
$PY - a.st <<'PYEOF' || fail "MoCo checkpoint content"
import sys; sys.path.insert(0, ".")
import st
h, meta, data = st.read(sys.argv[1])
assert meta["method"] == "moco" and meta["moco_queue"] == "32", meta
assert meta["moco_momentum"] == "0.999" and meta["temperature"] == "0.200000003", meta
# 12 steps of 16 keys into 32 rows: the pointer went round 6 times
assert meta["moco_ptr"] == "0" and meta["step"] == "12", meta
names = st.model_names(h)
assert "0.weight" in names and "head.3.bias" in names and "optimizer.exp_avg.0.weight" in h
for k in names:  # a key tensor for every model tensor, same shape and dtype
    kk = "moco.key." + k
    assert kk in h and h[kk]["shape"] == h[k]["shape"] and h[kk]["dtype"] == h[k]["dtype"], k
assert not [k for k in h if k.startswith("optimizer.moco")], "optimiser state for the key"
assert h["moco.queue"]["shape"] == [32, 128] and h["moco.queue"]["dtype"] == "F32"
import struct
assert struct.unpack("<q", data["moco.key.1.num_batches_tracked"])[0] == 12
# the key lags the query: different parameters, and its own running statistics
assert data["moco.key.0.weight"] != data["0.weight"]
assert data["moco.key.1.running_mean"] != data["1.running_mean"]
# every queue row is a unit vector (the last 32 keys)
q = struct.unpack("<%df" % (32 * 128), data["moco.queue"])
for i in range(32):
    s = sum(v * v for v in q[i * 128:(i + 1) * 128])
    assert abs(s - 1) < 1e-5, (i, s)
PYEOF

# the same run again (no kNN monitor: it changes nothing): the same bytes
expect_rc 0 pe-train $common --epochs 2 -o b.st
cmp a.st b.st || fail "the same seed and threads gave another MoCo checkpoint"
# 1 epoch, then --resume to 2: the same as 2 straight
expect_rc 0 pe-train $common --epochs 1 -o c.st
expect_rc 0 pe-train $common --epochs 2 --resume c.st -o c.st
cmp a.st c.st || fail "MoCo: 1 epoch + resume differs from 2 epochs straight"
# --max-steps inside an epoch (the pointer mid-queue), then --resume
expect_rc 0 pe-train $common --epochs 2 --max-steps 3 -o m.st
$PY - m.st <<'PYEOF' || fail "pointer after 3 steps"
import sys; sys.path.insert(0, ".")
import st
assert st.read(sys.argv[1])[1]["moco_ptr"] == "16"
PYEOF
expect_rc 0 pe-train $common --epochs 2 --resume m.st -o m.st
cmp a.st m.st || fail "MoCo: a stop inside an epoch + resume differs from 2 epochs straight"

# --method simclr is the default, unchanged: no MoCo entries
expect_rc 0 pe-train $simclr --epochs 1 -o s1.st
expect_rc 0 pe-train $simclr --method simclr --epochs 1 -o s2.st
cmp s1.st s2.st || fail "--method simclr differs from the default"
$PY - s1.st <<'PYEOF' || fail "a SimCLR checkpoint has MoCo entries"
import sys; sys.path.insert(0, ".")
import st
h, meta, _ = st.read(sys.argv[1])
assert not [k for k in h if k.startswith("moco.")] and not [k for k in meta if "moco" in k or k == "method"]
PYEOF

# the key starts as an exact copy of the query: fresh, and under --init
# (here a SimCLR checkpoint's encoder and head); m = 0 keeps it a copy of
# the query's parameters, m = 1 keeps the initial ones
expect_rc 0 pe-train $common --epochs 0 -o e0.st
expect_rc 0 pe-train $common --epochs 0 --init s1.st -o i0.st
expect_rc 0 pe-train $common --epochs 1 --moco-momentum 0 -o m0.st
expect_rc 0 pe-train $common --epochs 1 --moco-momentum 1 -o m1.st
$PY - e0.st i0.st s1.st m0.st m1.st <<'PYEOF' || fail "key encoder start or momentum"
import sys; sys.path.insert(0, ".")
import st
e0, i0, s1, m0, m1 = (st.read(p) for p in sys.argv[1:])
for h, meta, d in (e0, i0):
    for k in st.model_names(h):
        assert d["moco.key." + k] == d[k], k
for k in st.model_names(s1[0]):  # --init loaded the file, key included
    assert i0[2][k] == s1[2][k] and i0[2]["moco.key." + k] == s1[2][k], k
# the queue comes from the seed alone
assert e0[2]["moco.queue"] == i0[2]["moco.queue"]
for k, v in m0[0].items():
    if k.startswith(("optimizer.", "moco.")) or "running" in k or "num_batches" in k:
        continue
    assert m0[2]["moco.key." + k] == m0[2][k], k        # m = 0: the query's
    assert m1[2]["moco.key." + k] == e0[2][k], k        # m = 1: the start
PYEOF

# resume across methods, or with other MoCo options: refused, exit 2
expect_rc 2 pe-train $simclr --epochs 2 --resume c.st -o x.st
err_has "a checkpoint of a moco run, and this run's --method is simclr"
expect_rc 2 pe-train $common --epochs 2 --resume s1.st -o x.st
err_has "a checkpoint of a simclr run, and this run's --method is moco"
expect_rc 2 pe-train $simclr --method moco --moco-queue 48 --epochs 2 --resume c.st -o x.st
err_has "moco_queue is 32, this run's 48"
expect_rc 2 pe-train $common --moco-momentum 0.99 --epochs 2 --resume c.st -o x.st
err_has "moco_momentum is 0.999, this run's 0.98999999999999999"
[ -e x.st ] && fail "a refused resume wrote a checkpoint"

# bad options: usage errors, nothing written
usage_error pe-train $simclr --method moco --moco-queue 24 -o x.st
err_has "not a multiple of the batch"
usage_error pe-train $simclr --method moco --moco-momentum 1.5 -o x.st
err_has "--moco-momentum"
usage_error pe-train $simclr --method foo -o x.st
err_has "--method takes simclr or moco"
usage_error pe-train $simclr --moco-queue 32 -o x.st
err_has "go with --method moco"
usage_error pe-train $simclr --method moco --moco-queue 0 -o x.st
[ -e x.st ] && fail "a usage error wrote a checkpoint"

# pe-eval reads the query encoder under the usual names
expect_rc 0 pe-eval -e a.st --train tr --test te -j 2
out_has "task 1: train 'tr' (96 images), test 'te' (64 images), 10 classes"
out_has "clean accuracy"
exit 0
