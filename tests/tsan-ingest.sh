#!/bin/sh
# The threaded ingest under ThreadSanitizer (make SANITIZE=thread): a small
# folder of mixed formats plus an IDX slice, several threads, and a reader
# running beside the writer. Any reported race fails the run.
set -eu
BIN=$(cd "$1" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export TSAN_OPTIONS="halt_on_error=1:exitcode=97${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
/usr/bin/python3 - "$T/src" <<'PYEOF'
import os, sys
from PIL import Image
root = sys.argv[1]
for c in range(3):
    d = os.path.join(root, "c%d" % c)
    os.makedirs(d)
    for i in range(40):
        im = Image.new("RGB", (30 + i, 20 + c), ((i * 7) % 256, c * 80, 255 - i))
        im.putpixel((i % 30, 0), (1, 2, 3))
        fmt = ["png", "jpg", "tif", "bmp"][i % 4]
        im.save(os.path.join(d, "%d.%s" % (i, fmt)))
PYEOF
"$BIN/pe-ingest" -S "$T/s.lmdb" --set a -j 4 --batch 16 --size 16x16 "$T/src" > "$T/keys" 2>"$T/err" &
pid=$!
"$BIN/pe-ls" -S "$T/s.lmdb" --stats >/dev/null 2>&1 || true
wait $pid || { cat "$T/err"; exit 1; }
[ "$(wc -l < "$T/keys")" = 120 ] || { echo "expected 120 keys"; exit 1; }
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -f "$fm" ]; then
    "$BIN/pe-ingest" -S "$T/s.lmdb" --set fm -j 3 --batch 100 "$fm" > "$T/k2" 2>"$T/err" ||
        { cat "$T/err"; exit 1; }
    [ "$(wc -l < "$T/k2")" = 10000 ] || { echo "expected 10000 keys"; exit 1; }
fi
"$BIN/pe-ls" -S "$T/s.lmdb" --check >/dev/null
echo "tsan ingest: ok"
