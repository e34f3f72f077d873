# Bad inputs: each rejected with its name and the reason, nothing of it
# stored, the rest of the run goes on, exit 3 (some inputs rejected).
. "$(dirname "$0")/lib.sh"
make_images good
mkdir bad
head -c 300 good/cat/cat1.jpg > bad/truncated.jpg
: > bad/empty.png
head -c 2000 /dev/urandom > bad/random.png
echo "hello, I am text" > bad/text.jpg
$PY - bad/bomb.png <<'PYEOF'
import struct, sys, zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\0" * 1000)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
PYEOF
printf 'GIF89a\001\000\001\000\000\000\000;' > bad/anim.gif.png
mkfifo bad/fifo.png
ln -s ../good/cat/cat0.png bad/link.png
export PE_STORE="$T/s.lmdb"

expect_rc 3 pe-ingest --set mixed good bad
[ "$(wc -l < "$T/out")" = 6 ] || fail "only the 6 good images print: $(cat "$T/out")"
err_has "bad/truncated.jpg: "
err_has "truncated"
err_has "bad/empty.png: empty file"
err_has "bad/random.png: not a recognised image format"
err_has "bad/text.jpg: not a recognised image format"
err_has "bad/bomb.png: "
err_has "pixel limit"
err_has "bad/anim.gif.png: not a recognised image format"
err_has "bad/fifo.png: skipped: not a regular file (fifo)"
err_has "bad/link.png: skipped: a symbolic link"
err_has "6 rejected"
[ "$(count_images "$PE_STORE")" = 6 ] || fail "rejected inputs reached the store"
expect_rc 0 pe-ls --sets
out_has "mixed	6	6"
# --follow takes the link (already present), still skips the fifo
expect_rc 3 pe-ingest --set m2 --follow bad/link.png bad/fifo.png
[ "$(wc -l < "$T/out")" = 1 ] || fail "--follow: $(cat "$T/out")"
# a lower pixel limit rejects a good image, with the reason
expect_rc 3 pe-ingest --max-pixels 100 good/cat/cat0.png
err_has "good/cat/cat0.png: "
err_has "limit"
# a folder loop through links is detected
mkdir -p loop/a && ln -s .. loop/a/up
cp good/dog/dog0.png loop/a/
expect_rc 3 pe-ingest --follow loop
err_has "folder loop"
# a missing path
expect_rc 3 pe-ingest no/such/file.png
err_has "no/such/file.png: No such file or directory"
# a whole bad dataset file (IDX with a wrong count) is one rejected input
printf '\000\000\010\003\000\000\000\011\000\000\000\002\000\000\000\002abcd' > bad-images-idx3-ubyte
expect_rc 3 pe-ingest --format idx bad-images-idx3-ubyte
err_has "bad-images-idx3-ubyte: "
[ "$(count_images "$PE_STORE")" = 6 ] || fail "a bad IDX stored images"
exit 0
