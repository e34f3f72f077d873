# Dataset containers through pe-ingest: IDX (Fashion-MNIST, labels found
# beside), CIFAR-10/100 batches, STL-10 X/y files, tar and tar.gz archives,
# another store (--from-store): counts, labels, sources.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
$PY - <<'PYEOF'
import io, os, tarfile
from PIL import Image
# CIFAR-10: 5 records, label i, planar RGB with pixel (0,0) = (i, 100+i, 200+i)
with open("data_batch_1", "wb") as f:
    for i in range(5):
        planes = bytearray(3072)
        planes[0], planes[1024], planes[2048] = i, 100 + i, 200 + i
        f.write(bytes([i]) + bytes(planes))
# CIFAR-100: coarse 3, fine 42
with open("train.bin", "wb") as f:
    for i in range(4):
        planes = bytearray(3072); planes[5] = i
        f.write(bytes([3, 42]) + bytes(planes))
# STL-10: 3 images, labels 1..3 (reported 0..2)
with open("train_X.bin", "wb") as f:
    for i in range(3):
        img = bytearray(96 * 96 * 3); img[0] = i; img[96] = 50  # column-major: (row 0, col 1)
        f.write(bytes(img))
open("train_y.bin", "wb").write(bytes([1, 2, 3]))
# tar with two images, a non-image member, a folder; and the same gzipped
os.makedirs("t/sub")
for i in range(2):
    Image.new("RGB", (10 + i, 7), (i * 50, 20, 30)).save("t/sub/%d.png" % i)
open("t/sub/meta.json", "w").write("{}")
with tarfile.open("shard.tar", "w") as tf:
    tf.add("t/sub", arcname="sub")
with tarfile.open("shard.tar.gz", "w:gz") as tf:
    tf.add("t/sub", arcname="sub")
PYEOF
expect_rc 0 pe-ingest --set c10 data_batch_1
[ "$(wc -l < "$T/out")" = 5 ] || fail "cifar10 count"
[ "$(cut -f2 "$T/out" | tr '\n' ' ')" = "0 1 2 3 4 " ] || fail "cifar10 labels: $(cat "$T/out")"
out_has "data_batch_1#4"
k=$(sed -n 3p "$T/out" | cut -f1)
pe-export --pnm "$k" > c.ppm || fail "export"
$PY -c "
import sys
d = open('c.ppm', 'rb').read()
assert d.startswith(b'P6\n32 32\n255\n'), d[:20]
assert d[13:16] == bytes([2, 102, 202]), d[13:16]
" || fail "CIFAR planar -> HWC"
expect_rc 0 pe-ingest --set c100 --format cifar100 train.bin
[ "$(cut -f2 "$T/out" | sort -u)" = 42 ] || fail "cifar100 fine label"
expect_rc 0 pe-ingest --set c100c --format cifar100 --coarse train.bin
[ "$(cut -f2 "$T/out" | sort -u)" = 3 ] || fail "cifar100 coarse label"
expect_rc 0 pe-ingest --set stl train_X.bin
[ "$(cut -f2 "$T/out" | tr '\n' ' ')" = "0 1 2 " ] || fail "stl10 labels: $(cat "$T/out")"
expect_rc 0 pe-ls --set stl -l
out_has "96x96x3"
expect_rc 0 pe-ingest --set shard shard.tar
[ "$(wc -l < "$T/out")" = 2 ] || fail "tar: $(cat "$T/out")"
out_has "shard.tar#sub/0.png"
err_has "1 ignored"
expect_rc 0 pe-ingest --set shardgz --label web shard.tar.gz
[ "$(cut -f2 "$T/out" | sort -u)" = web ] || fail "tar.gz --label"
cut -f1 "$T/out" > gzkeys
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -f "$fm" ]; then
    expect_rc 0 pe-ingest --set fm --classes "$HERE/../../examples/fashion-mnist.classes" "$fm"
    [ "$(wc -l < "$T/out")" = 10000 ] || fail "idx count"
    expect_rc 0 pe-ls --set fm --label Sandal
    [ "$(wc -l < "$T/out")" = 1000 ] || fail "idx labels"
fi
# --from-store: a set with its labels, counts and class names into a new store
expect_rc 0 pe-ingest -S copy.lmdb --from-store "$PE_STORE" --from-set c10 --set c10
[ "$(wc -l < "$T/out")" = 5 ] || fail "from-store count"
pe-ls --set c10 > a.txt
pe-ls -S copy.lmdb --set c10 > b.txt
cmp a.txt b.txt || fail "from-store changed keys or labels"
expect_rc 0 pe-ls -S copy.lmdb --check
expect_rc 1 pe-ingest -S copy.lmdb --from-store "$PE_STORE" --from-set nope --set x
err_has "no such set"
# --from-store alone merges every image of the other store, once
expect_rc 0 pe-ingest -S merged.lmdb --set all --from-store "$PE_STORE"
[ "$(wc -l < "$T/out")" = "$(count_images "$PE_STORE")" ] || fail "merge count"
[ "$(count_images merged.lmdb)" = "$(count_images "$PE_STORE")" ] || fail "merged store"
exit 0
