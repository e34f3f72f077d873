# tests/gpu/train.sh - pe-train and pe-eval on a GPU, end to end, against
# the same runs on the CPU: the first steps' losses agree, a checkpoint
# moves between devices in both directions, the device's augmentation
# gives the host's bytes (a deterministic GPU run is byte-identical with
# either), tf32 and bf16 train, and pe-eval scores alike on both devices.
# Run by `make test-gpu` (tests/run.sh gpu) with BIN set; without a GPU it
# says why and exits 77 (a skip), or 1 under PE_REQUIRE_GPU=1.
T=${T:-$(mktemp -d)}
export T
. "$(dirname "$0")/../cli/lib.sh"
if ! "$BIN/../tests/test_cuda" >/dev/null 2>&1; then
    why=$("$BIN/../tests/test_cuda" 2>/dev/null | tail -n 1)
    echo "skip: ${why:-the CUDA op test fails or cannot run}"
    [ -n "${PE_REQUIRE_GPU:-}" ] && exit 1
    exit 77
fi
export PE_STORE="$T/s.lmdb"
# a labeled 512-image training set, a 300/100 pair for pe-eval: 8-bit PGM
# images in class folders (no data package needed on the GPU machine):
# each class a different blob position, with noise
$PY - <<'PYEOF' || fail "make images"
import os, random
random.seed(5)
for part, n in (("tr", 512), ("etr", 300), ("ete", 100)):
    for i in range(n):
        c = i % 4
        d = os.path.join(part, str(c))
        os.makedirs(d, exist_ok=True)
        cx, cy = 8 + 12 * (c % 2), 8 + 12 * (c // 2)
        px = bytes(min(255, max(0, int(200 * (abs(x - cx) + abs(y - cy) < 7) + random.gauss(30, 20))))
                   for y in range(28) for x in range(28))
        with open(os.path.join(d, "%d.pgm" % i), "wb") as f:
            f.write(b"P5\n28 28\n255\n" + px)
PYEOF
for s in tr etr ete; do pe-ingest -q --set $s $s >/dev/null || fail "ingest $s"; done

common="--set tr --arch resnet18 --size 32 --batch 64 --seed 3 --epochs 1 --max-steps 3"
# the last step's loss from a run's summary line ("... last loss X, ...")
loss() { sed -n 's/.*last loss \([0-9.e+-]*\).*/\1/p' "$1"; }
close() { # A B REL
    $PY -c 'import sys; a,b,r=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= r*abs(a) else 1)' "$1" "$2" "$3"
}

# the same run on both devices
expect_rc 0 pe-train $common --device cpu -o cpu.st
cp "$T/err" cpu.log
expect_rc 0 pe-train $common --device cuda -o gpu.st
cp "$T/err" gpu.log
[ -n "$(loss cpu.log)" ] || fail "no loss in: $(cat cpu.log)"
close "$(loss cpu.log)" "$(loss gpu.log)" 1e-3 ||
    fail "third step's loss: cpu $(loss cpu.log), cuda $(loss gpu.log)"

# a checkpoint resumes on the other device
expect_rc 0 pe-train $common --max-steps 5 --device cuda --resume cpu.st -o c2g.st
expect_rc 0 pe-train $common --max-steps 5 --device cpu --resume gpu.st -o g2c.st

# device augmentation = host augmentation, to the bit, under --deterministic
expect_rc 0 pe-train $common --device cuda --deterministic -o d1.st
expect_rc 0 pe-train $common --device cuda --deterministic -o d2.st
cmp -s d1.st d2.st || fail "two --deterministic runs differ"
PE_HOST_AUGMENT=1 expect_rc 0 pe-train $common --device cuda --deterministic -o d3.st
cmp -s d1.st d3.st || fail "device and host augmentation train differently"
# a group of one rank: NCCL's all-reduce (a mean over one) changes nothing
expect_rc 0 pe-train $common --device cuda --deterministic --world 1 --rank 0 \
    --rendezvous "$T/rv" -o d4.st
cmp -s d1.st d4.st || fail "a one-rank NCCL group trains differently"
[ -e "$T/rv" ] && fail "the rendezvous file was left behind"
# --sync-bn in a group of one: the group's statistics are this rank's, so
# the run follows the cuDNN batch norm's to rounding
expect_rc 0 pe-train $common --device cuda --deterministic --world 1 --rank 0 \
    --rendezvous "$T/rv" --sync-bn -o d6.st
cp "$T/err" d6.log
expect_rc 0 pe-train $common --device cuda --deterministic -o d7.st
cp "$T/err" d7.log
close "$(loss d7.log)" "$(loss d6.log)" 1e-3 || fail "--sync-bn loss $(loss d6.log), cuDNN's $(loss d7.log)"
# a leftover rendezvous file is refused
: > "$T/rv"
expect_rc 1 pe-train $common --device cuda --world 1 --rank 0 --rendezvous "$T/rv" -o d5.st
err_has "rendezvous"

# the other precisions train (finite losses), MoCo too
for p in tf32 bf16; do
    expect_rc 0 pe-train $common --device cuda --precision $p -o $p.st
    cp "$T/err" $p.log
    close "$(loss cpu.log)" "$(loss $p.log)" 5e-2 || fail "$p loss $(loss $p.log)"
done
expect_rc 0 pe-train $common --method moco --moco-queue 256 --device cuda -o moco.st

# pe-eval on both devices: the same accuracy up to one test image
expect_rc 0 pe-eval -e gpu.st --train etr --test ete --device cpu --json
a=$($PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["clean_accuracy"])' < "$T/out")
expect_rc 0 pe-eval -e gpu.st --train etr --test ete --device cuda --json
b=$($PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["clean_accuracy"])' < "$T/out")
close "$a" "$b" 0.011 || fail "pe-eval accuracy: cpu $a, cuda $b"
exit 0
