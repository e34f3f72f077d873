# Stores that must be refused, and a full disk: clear errors naming the
# store, nonzero exit, no damage to what was committed.
. "$(dirname "$0")/lib.sh"
make_images src
# not a store: a file, a folder of something else, a missing store (readers)
echo hi > afile
expect_rc 1 pe-ls -S afile --sets
err_has "afile: not a store"
mkdir other && echo x > other/data.mdb
expect_rc 1 pe-ls -S other --sets
err_has "other: not a store"
expect_rc 1 pe-ls -S missing.lmdb --sets
err_has "missing.lmdb: no store there"
[ -e missing.lmdb ] && fail "a reader created a store"
expect_rc 1 pe-ingest -S afile src
err_has "afile: not a store"
[ "$(cat afile)" = hi ] || fail "the file was changed"

# a store from a newer format version
pe-ingest -q -S new.lmdb --set s src >/dev/null || fail "ingest"
$PY - new.lmdb <<'PYEOF' || fail "python3-lmdb"
import lmdb, struct, sys
env = lmdb.open(sys.argv[1], max_dbs=8)
meta = env.open_db(b"meta")
with env.begin(write=True) as t:
    t.put(b"version", struct.pack("<I", 99), db=meta)
PYEOF
expect_rc 1 pe-ls -S new.lmdb --sets
err_has "new.lmdb: store format version 99 is newer than this pe"
expect_rc 1 pe-ingest -S new.lmdb src
err_has "version 99"
expect_rc 1 pe-export -S new.lmdb -o ex --set s
[ -e ex ] && fail "export made a folder for a refused store"

# a full disk (file size limit): the ingest fails naming the store, the
# committed part stays whole, and a later run with room completes
pe-ingest -q -S full.lmdb --set first src/cat >/dev/null || fail "first ingest"
before=$(pe-ls -S full.lmdb --sets)
$PY - big <<'PYEOF'
import os, sys
from PIL import Image
os.makedirs(sys.argv[1])
for i in range(40):
    im = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
    im.save(os.path.join(sys.argv[1], "%02d.png" % i))
PYEOF
size=$(du -k full.lmdb/data.mdb | cut -f1)
(ulimit -f $((size * 2 + 2048)); pe-ingest -S full.lmdb --set second --batch 8 big > o 2> e)
rc=$?
[ $rc = 1 ] || fail "full disk: exit $rc: $(cat e)"
grep -q "full.lmdb" e || fail "the error does not name the store: $(cat e)"
grep -qi "disk is full\|disk full\|map full" e || fail "the error does not say why: $(cat e)"
expect_rc 0 pe-ls -S full.lmdb --check
out_has "problems	0"
expect_rc 0 pe-ls -S full.lmdb --sets
[ "$(cat "$T/out")" = "$before" ] || fail "the sets changed: $(cat "$T/out")"
# printed keys (if any) are stored
[ -s o ] && { cut -f1 o | pe-ls -S full.lmdb >/dev/null || fail "a printed key is missing"; }
expect_rc 0 pe-ingest -S full.lmdb --set second big
expect_rc 0 pe-ls -S full.lmdb --check
exit 0
