# Shared helpers of the CLI tests (sourced). Each test runs with BIN (the
# programs' folder) and T (a fresh temp folder) set, PATH gets BIN first,
# and the test's exit status is its verdict: `fail` exits 1 at once.
set -u
PATH="$BIN:$PATH"
export PATH
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
cd "$T" || exit 1

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_rc WANT CMD...: runs CMD with stdout in $T/out, stderr in $T/err.
expect_rc() {
    want=$1
    shift
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" != "$want" ]; then
        echo "--- stdout" >&2; head -20 "$T/out" >&2
        echo "--- stderr" >&2; head -20 "$T/err" >&2
        fail "exit $got, want $want: $*"
    fi
}

# usage_error CMD...: exit 2, empty stdout, a message on stderr.
usage_error() {
    expect_rc 2 "$@"
    [ -s "$T/out" ] && fail "stdout not empty for usage error: $*"
    [ -s "$T/err" ] || fail "no message for usage error: $*"
    return 0
}

# err_has TEXT: stderr of the last expect_rc contains TEXT.
err_has() {
    grep -qF -- "$1" "$T/err" || { cat "$T/err" >&2; fail "stderr lacks '$1'"; }
}

out_has() {
    grep -qF -- "$1" "$T/out" || { head -20 "$T/out" >&2; fail "stdout lacks '$1'"; }
}

# golden NAME FILE: FILE equals tests/cli/golden/NAME (PE_GOLDEN_UPDATE=1
# rewrites it instead).
golden() {
    g="$HERE/golden/$1"
    if [ "${PE_GOLDEN_UPDATE:-}" = 1 ]; then
        cp "$2" "$g"
        return 0
    fi
    diff -u "$g" "$2" >&2 || fail "output differs from golden $1"
}

# no raw control bytes (other than newline) in a file
no_controls() {
    if LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177]')" "$1"; then
        od -c "$1" | head -20 >&2
        fail "raw control bytes in $1"
    fi
}

# count_images STORE: images in the store
count_images() {
    pe-ls -S "$1" --stats | awk -F'\t' '$1 == "images" {print $2}'
}

# make_images DIR: a small deterministic labeled folder (written by PIL)
make_images() {
    $PY - "$1" <<'PYEOF'
import os, sys
from PIL import Image
root = sys.argv[1]
for cls, (r, g, b) in {"cat": (200, 30, 30), "dog": (30, 200, 30)}.items():
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    for i in range(3):
        w, h = 40 + 8 * i, 24 + 4 * i
        im = Image.new("RGB", (w, h))
        im.putdata([((r + x * 3 + i) % 256, (g + y * 5) % 256, (b + x * y) % 256)
                    for y in range(h) for x in range(w)])
        ext = ["png", "jpg", "tif"][i]
        im.save(os.path.join(root, cls, "%s%d.%s" % (cls, i, ext)),
                **({"quality": 90} if ext == "jpg" else {}))
PYEOF
}

# strip_metadata IN OUT: OUT is the safetensors file IN without its
# __metadata__ (a PyTorch-style file); meta.txt gets "MEAN STD SIZE CHANNELS"
# from IN's metadata (first channel's mean and std).
strip_metadata() {
    $PY - "$1" "$2" <<'PYEOF' || fail "writing the metadata-free file"
import json, struct, sys
d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n])
meta = h.pop("__metadata__")
open("meta.txt", "w").write("%s %s %s %s\n" % (meta["mean"].split(",")[0],
                                             meta["std"].split(",")[0], meta["size"], meta["channels"]))
hb = json.dumps(h, separators=(",", ":")).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + d[8 + n:])
PYEOF
}
