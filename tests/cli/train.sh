# pe-train on a tiny set with a tiny model: plumbing, the checkpoint's
# contents, byte-identical reruns, N epochs straight = k epochs + --resume,
# the kNN log, and bad inputs.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -f $fm ] || { echo "skip: dataset-fashion-mnist not installed"; exit 0; }
pe-ingest -q --set all $fm > all.keys || fail "ingest"
# a 96-image labeled training set and a 64-image test set, via --from-store
head -96 all.keys > tr.keys
sed -n '97,160p' all.keys > te.keys
# build the small sets from PNG exports of the chosen keys (a real pipeline)
cut -f1 tr.keys | pe-export -o trimg --set all - 2>/dev/null || fail "export train"
cut -f1 te.keys | pe-export -o teimg --set all - 2>/dev/null || fail "export test"
pe-ingest -q --set tr trimg >/dev/null || fail "ingest train"
pe-ingest -q --set te teimg >/dev/null || fail "ingest test"

common="--set tr --arch small --size 16 --batch 16 --seed 7 -j 2 --crop-scale 0.5,1"
expect_rc 0 pe-train $common --epochs 2 -o a.st --log a.log --knn-set te --knn-k 5
err_has "2 epochs, 12 steps"
[ -s a.st ] || fail "no checkpoint"
[ "$(wc -l < a.log)" = 3 ] || fail "log lines (epoch 0, 1, 2): $(cat a.log)"
$PY - a.st a.log <<'PYEOF' || fail "checkpoint or log content"
import json, struct, sys
d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n])
meta = h.pop("__metadata__")
assert meta["arch"] == "small" and meta["epochs_done"] == "2" and meta["step"] == "12", meta
for k in ["0.weight", "1.running_mean", "1.num_batches_tracked", "5.4.weight",
          "head.0.weight", "head.1.weight", "head.3.bias", "optimizer.exp_avg.0.weight"]:
    assert k in h, k
assert h["1.num_batches_tracked"]["dtype"] == "I64" and h["1.num_batches_tracked"]["shape"] == []
assert h["0.weight"]["shape"] == [16, 1, 3, 3]
lines = [json.loads(l) for l in open(sys.argv[2])]
assert lines[0]["epoch"] == 0 and lines[0]["steps"] == 0 and "loss" not in lines[0], lines[0]
assert [e["epoch"] for e in lines] == [0, 1, 2], lines
for e in lines:
    assert 0 <= e["knn_acc"] <= 1, e
    assert e["epoch"] == 0 or e["loss"] > 0, e
PYEOF
# the same run again: byte-identical checkpoint
expect_rc 0 pe-train $common --epochs 2 -o b.st
cmp a.st b.st || fail "the same seed and threads gave another checkpoint"
# 1 epoch, then --resume to 2: the same as 2 straight
expect_rc 0 pe-train $common --epochs 1 -o c.st
expect_rc 0 pe-train $common --epochs 2 --resume c.st -o c.st
cmp a.st c.st || fail "1 epoch + resume differs from 2 epochs straight"
# --max-steps inside an epoch, then --resume: the same as straight through
expect_rc 0 pe-train $common --epochs 2 --max-steps 3 -o m.st
expect_rc 0 pe-train $common --epochs 2 --resume m.st -o m.st
cmp a.st m.st || fail "a stop inside an epoch + resume differs from 2 epochs straight"
# a resume with nothing left still writes its output
expect_rc 0 pe-train $common --epochs 2 --resume a.st -o n.st
[ -s n.st ] || fail "no -o from a finished resume"
# a resume with other options is refused
expect_rc 2 pe-train $common --epochs 3 --lr 0.002 --resume a.st -o z.st
err_has "takes the same options"
# another seed: another checkpoint
expect_rc 0 pe-train --set tr --arch small --size 16 --batch 16 --seed 8 -j 2 --epochs 1 -o d.st
cmp -s c.st d.st && fail "seed has no effect"

# a NaN loss (inputs blown up by a denormal std) stops the run, names the
# step, and leaves the last good checkpoint as it was
cp a.st keep.st
expect_rc 1 pe-train $common --epochs 2 --mean 0 --std 1e-45 -o keep.st
err_has "the loss is NaN at epoch 1"
cmp a.st keep.st || fail "a diverged run replaced the checkpoint"

# bad inputs: clear errors, nonzero exit, no checkpoint
usage_error pe-train --set tr
usage_error pe-train --set tr -o x.st --batch 1
usage_error pe-train --set tr -o x.st --lr -1
usage_error pe-train --set tr -o x.st --arch vgg
usage_error pe-train --set tr -o x.st --device gpu
err_has "--device gpu"
usage_error pe-train --set tr -o x.st --precision fp64
err_has "fp64"
usage_error pe-train --set tr -o x.st --world 2 --rank 2 --rendezvous rv
PE_DEVICE=gpu expect_rc 2 pe-train $common --epochs 1 -o x.st
err_has "PE_DEVICE"
usage_error pe-train --set tr -o x.st --sync-bn
err_has "--sync-bn"
PE_WORLD_SIZE=two usage_error pe-train --set tr -o x.st
err_has "PE_WORLD_SIZE"
# --device cuda where none can run: a clear error before any work, nothing
# written (the GPU machine runs tests/gpu/train.sh instead)
if ! "$BIN/../tests/test_cuda" >/dev/null 2>&1; then
    expect_rc 1 pe-train $common --epochs 1 -o x.st --device cuda
    grep -qE "no CUDA backend|no GPU found" "$T/err" || fail "--device cuda: $(cat "$T/err")"
    expect_rc 1 pe-eval -e a.st --train te --test te --device cuda
    grep -qE "no CUDA backend|no GPU found" "$T/err" || fail "pe-eval --device cuda: $(cat "$T/err")"
    # a group of ranks needs the CUDA backend
    expect_rc 1 pe-train $common --epochs 1 -o x.st --world 2 --rank 1 --rendezvous rv --device cpu
    grep -qi "cuda" "$T/err" || fail "--world on the CPU: $(cat "$T/err")"
fi
usage_error pe-train --set tr -o x.st --width 2
expect_rc 1 pe-train --set tr --size 16 --batch 16 -o no/such/dir/x.st
err_has "no/such/dir/x.st"
expect_rc 1 pe-train --set nope -o x.st
err_has "no such set"
expect_rc 1 pe-train --set te -o x.st --batch 128
err_has "fewer than one batch"
expect_rc 1 pe-train --set tr --arch resnet18 --width 0.125 --size 16 --batch 16 --resume a.st -o x.st
err_has "architecture"
[ -e x.st ] && fail "a failed run wrote a checkpoint"
echo "garbage" > bad.st
expect_rc 1 pe-train $common --epochs 2 --resume bad.st -o y.st
err_has "bad.st"
exit 0
