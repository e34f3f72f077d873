# pe-train --dp-clip (DP-SGD on groups of images) on a tiny Fashion-MNIST
# set with a tiny model: the epsilon printed, logged and recorded with the
# other DP metadata, byte-identical reruns, N epochs straight = k epochs +
# --resume (at an epoch end and inside one), --dp-epsilon's noise
# multiplier (a run with it as --dp-noise is the same run), resume refused
# across DP settings, no noise (epsilon infinite), the delta warning, and
# the usage errors. The step's arithmetic is test_dpsgd.c's.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
pe-ingest -q --set all $fm > all.keys || fail "ingest"
head -96 all.keys > tr.in
pe-inject -q --from all --to tr --keep < tr.in || fail "tr"

# meta FILE KEY: one metadata entry of a safetensors file
cat > meta.py <<'PYEOF'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]
print(json.loads(d[8:8 + n])["__metadata__"].get(sys.argv[2], "-"))
PYEOF
meta() { $PY meta.py "$1" "$2"; }

common="--set tr --size 16 --batch 16 --seed 7 -j 2"
dp="--dp-clip 1 --dp-noise 1 --dp-group 8"

# ---- a run: epsilon printed, logged, recorded ------------------------------
expect_rc 0 pe-train $common $dp --epochs 2 -o a.st --log a.log
err_has "2 epochs, 12 steps"
err_has "DP: epsilon "
err_has "at delta 1e-05 after 12 steps (noise multiplier 1, clip 1, groups of 8, sampling rate 0.166667; RDP accounting with a sensitivity of 2 clips per image"
[ "$(meta a.st dp_clip)" = 1 ] || fail "dp_clip $(meta a.st dp_clip)"
[ "$(meta a.st dp_noise)" = 1 ] || fail "dp_noise $(meta a.st dp_noise)"
[ "$(meta a.st dp_delta)" = 1.0000000000000001e-05 ] || fail "dp_delta $(meta a.st dp_delta)"
[ "$(meta a.st dp_group)" = 8 ] || fail "dp_group $(meta a.st dp_group)"
$PY - a.log a.st "$(cat err)" <<'PYEOF' || fail "epsilon in the log, the checkpoint and the summary"
import json, re, struct, sys
log = [json.loads(l) for l in open(sys.argv[1])]
assert [r["epoch"] for r in log] == [1, 2], log
e1, e2 = log[0]["dp_epsilon"], log[1]["dp_epsilon"]
assert 0 < e1 < e2 < 100, (e1, e2)      # it grows with the steps
assert all(0 <= r["dp_clipped"] <= 1 for r in log)
d = open(sys.argv[2], "rb").read()
meta = json.loads(d[8:8 + struct.unpack("<Q", d[:8])[0]])["__metadata__"]
assert float(meta["dp_epsilon"]) == e2, (meta["dp_epsilon"], e2)
printed = float(re.search(r"DP: epsilon (\S+)", sys.argv[3]).group(1))
assert abs(printed - e2) <= 1e-3 * e2, (printed, e2)
PYEOF

# ---- determinism and resume ------------------------------------------------
expect_rc 0 pe-train $common $dp --epochs 2 -o b.st
cmp a.st b.st || fail "the same DP run twice gave other bytes"
expect_rc 0 pe-train $common $dp --epochs 1 -o c.st
expect_rc 0 pe-train $common $dp --epochs 2 --resume c.st -o c.st
cmp a.st c.st || fail "DP: 1 epoch + resume differs from 2 epochs straight"
expect_rc 0 pe-train $common $dp --epochs 2 --max-steps 3 -o m.st
[ "$(meta m.st step)" = 3 ] || fail "step after --max-steps 3"
expect_rc 0 pe-train $common $dp --epochs 2 --resume m.st -o m.st
cmp a.st m.st || fail "DP: a stop inside an epoch + resume differs from 2 epochs straight"
# the thread count changes no tensor (the metadata records -j)
expect_rc 0 pe-train --set tr --size 16 --batch 16 --seed 7 -j 1 $dp --epochs 2 -o j1.st
$PY - a.st j1.st <<'PYEOF' || fail "DP: -j 1 and -j 2 trained other tensors"
import json, struct, sys
def body(p):
    d = open(p, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    h = json.loads(d[8:8 + n]); h.pop("__metadata__")
    return h, d[8 + n:]
assert body(sys.argv[1]) == body(sys.argv[2])
PYEOF

# ---- --dp-epsilon: the accountant's sigma, recorded -------------------------
expect_rc 0 pe-train $common --dp-clip 1 --dp-epsilon 8 --dp-group 8 --epochs 2 -o e.st
sigma=$(meta e.st dp_noise)
$PY - "$sigma" "$(meta e.st dp_epsilon)" <<'PYEOF' || fail "--dp-epsilon 8: sigma $sigma"
import sys
s, e = float(sys.argv[1]), float(sys.argv[2])
assert 0.6 < s < 6, s    # twice the accountant's (a sensitivity of 2 clips)
assert 7.9 <= e <= 8, e   # reached at the last step, and barely
PYEOF
expect_rc 0 pe-train $common --dp-clip 1 --dp-noise "$sigma" --dp-group 8 --epochs 2 -o n.st
cmp e.st n.st || fail "--dp-noise with --dp-epsilon's sigma is another run"

# ---- resume across DP settings: refused --------------------------------------
expect_rc 2 pe-train $common --dp-clip 1 --dp-noise 2 --dp-group 8 --epochs 2 --resume c.st -o x.st
err_has "dp_noise is 1, this run's 2"
expect_rc 2 pe-train $common --dp-clip 0.5 --dp-noise 1 --dp-group 8 --epochs 2 --resume c.st -o x.st
err_has "dp_clip is 1, this run's 0.5"
expect_rc 2 pe-train $common --dp-clip 1 --dp-noise 1 --dp-group 4 --epochs 2 --resume c.st -o x.st
err_has "dp_group is 8, this run's 4"
expect_rc 2 pe-train $common --epochs 2 --resume c.st -o x.st
err_has "dp_clip is 1, this run's unset"
expect_rc 0 pe-train $common --epochs 1 -o plain.st
expect_rc 2 pe-train $common $dp --epochs 2 --resume plain.st -o x.st
err_has "dp_clip is unset, this run's 1"
# --dp-epsilon over another number of epochs asks for another sigma
expect_rc 2 pe-train $common --dp-clip 1 --dp-epsilon 8 --dp-group 8 --epochs 3 --resume e.st -o x.st
err_has "dp_noise is $sigma"
[ -e x.st ] && fail "a refused resume wrote a checkpoint"

# ---- no noise: clipping only, epsilon infinite -------------------------------
expect_rc 0 pe-train $common --dp-clip 1 --dp-noise 0 --dp-group 16 --epochs 1 --max-steps 1 -o z.st
err_has "DP: epsilon inf"
[ "$(meta z.st dp_epsilon)" = inf ] || fail "dp_epsilon without noise: $(meta z.st dp_epsilon)"

# ---- a delta not below 1/n: a warning ----------------------------------------
expect_rc 0 pe-train $common $dp --dp-delta 0.05 --epochs 1 --max-steps 1 -o w.st
err_has "warning: --dp-delta 0.05 is not below 1/n"

# ---- usage errors -----------------------------------------------------------
usage_error pe-train $common --dp-noise 1 -o x.st
err_has "--dp-noise, --dp-epsilon, --dp-delta and --dp-group go with --dp-clip"
usage_error pe-train $common --dp-clip 1 --dp-noise 1 --dp-epsilon 2 -o x.st
err_has "exactly one of --dp-noise and --dp-epsilon"
usage_error pe-train $common --dp-clip 1 -o x.st
err_has "exactly one of --dp-noise and --dp-epsilon"
usage_error pe-train $common --dp-clip 1 --dp-noise 1 --dp-group 5 -o x.st
err_has "--dp-group 5 does not divide the batch (16)"
usage_error pe-train $common --dp-clip 1 --dp-noise 1 -o x.st
err_has "--dp-group 32 does not divide the batch (16)"
usage_error pe-train $common --dp-clip 0 --dp-noise 1 -o x.st
err_has "--dp-clip"
usage_error pe-train $common --dp-clip 1 --dp-noise 1 --dp-delta 1 -o x.st
err_has "--dp-delta"
usage_error pe-train $common --dp-clip 1 --dp-noise -1 -o x.st
err_has "--dp-noise"
usage_error pe-train $common $dp --method moco --moco-queue 32 -o x.st
err_has "--dp-clip trains --method simclr only"
# an epsilon no noise reaches: the accountant says so
usage_error pe-train $common --dp-clip 1 --dp-epsilon 1e-6 --dp-group 8 -o x.st
err_has "no noise multiplier up to 10000 reaches epsilon 1e-06"
[ -e x.st ] && fail "a usage error wrote a checkpoint"
exit 0
