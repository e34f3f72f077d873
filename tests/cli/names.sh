# Attacker-controlled names (file names, folder labels, archive members,
# class names) never break the line formats, never reach the terminal raw,
# and never make pe-export write outside its folder or overwrite a file.
. "$(dirname "$0")/lib.sh"
export PE_STORE="$T/s.lmdb"
$PY - src <<'PYEOF'
import os, sys
from PIL import Image
root = sys.argv[1].encode()
labels = [b"tab\there", b"nl\nthere", b"esc\x1b[31mred", b"bad\xff\xfeutf8", b"..",
          b"-rf", b"x" * 255, b"back\\slash", b"quote\"'<b>"]
files = [b"a\tb.png", b"new\nline.png", b"\x1b]0;title\x07.png", b"\xc0\xaf.png", b"ok.png"]
n = 0
for l in labels:
    d = os.path.join(root, b"L" + l if l == b".." else l)
    os.makedirs(d, exist_ok=True)
    for f in files:
        im = Image.new("L", (8, 8), n % 256)
        im.putpixel((n % 8, 0), 255 - n % 256)
        im.save(os.path.join(d, f), format="PNG")
        n += 1
PYEOF
expect_rc 0 pe-ingest --set hostile src
[ "$(wc -l < "$T/out")" = 45 ] || fail "45 lines expected, got $(wc -l < "$T/out")"
no_controls "$T/out"
no_controls "$T/err"
awk -F'\t' 'NF != 3 || length($1) != 32 || $1 !~ /^[0-9a-f]+$/ {bad = 1} END {exit bad}' "$T/out" ||
    fail "a line does not have KEY LABEL SOURCE"
out_has 'tab\there'
out_has 'nl\nthere'
out_has 'esc\x1b[31mred'
out_has 'bad\xff\xfeutf8'
out_has 'back\\slash'
# JSON stays valid with every name in it
pe-ls --set hostile --json > j.out || fail "pe-ls --json"
pe-ls --sets --json > s.out || fail "pe-ls --sets --json"
$PY - j.out s.out <<'PYEOF' || fail "invalid NDJSON"
import json, sys
for p in sys.argv[1:]:
    for line in open(p, encoding="utf-8"):
        json.loads(line)
PYEOF
no_controls j.out
pe-ls --sets > s.txt
no_controls s.txt

# pe-export: class names that try to escape, from a classes file
printf '../../escape\n.\n\n/abs\nok name\n_unlabeled\n9\nnormal\n' > classes.txt
printf 'a\nb\na\n' > dup.txt
expect_rc 1 pe-ingest --set dup --classes dup.txt img
err_has "class 'a' named twice"
mkdir img && $PY -c "
from PIL import Image
for i in range(8):
    Image.new('L', (4, 4), 10 * i).save('img/%d.png' % i)
"
for i in 0 1 2 3 4 5 6 7; do
    pe-ingest -q --set "evil$i" --classes classes.txt --label $i img/$i.png >/dev/null ||
        fail "ingest with class $i"
    pe-export -o ex --set "evil$i" 2>>"$T/err" || fail "export of class $i"
done
find ex -mindepth 2 | sort > tree.txt
# everything inside ex/, one level of folders, plain names only
[ -e escape ] || [ -e ../escape ] || [ -e /abs ] && fail "export wrote outside"
awk -F/ 'NF != 3 {exit 1}' tree.txt || fail "unexpected depth: $(cat tree.txt)"
cut -d/ -f2 tree.txt | sort -u > dirs.txt
printf '0\n1\n2\n3\n5\n6\nnormal\nok name\n' | diff - dirs.txt ||
    fail "label folders: $(cat dirs.txt)"
# no overwrite: exporting again fails, names the file, leaves it intact
before=$(sha1sum ex/normal/*.png)
expect_rc 1 pe-export -o ex --set evil7
err_has "exists; not overwritten"
[ "$before" = "$(sha1sum ex/normal/*.png)" ] || fail "a file was overwritten"
ls -a ex/normal | grep -q tmp && fail "a temporary file was left"
# a link planted where a label folder goes is refused, not followed
mkdir elsewhere && mkdir ex2 && ln -s ../elsewhere ex2/normal
expect_rc 1 pe-export -o ex2 --set evil7
[ -z "$(ls elsewhere)" ] || fail "export followed a link"
# the output folder itself as a link is refused
ln -s elsewhere ex3
expect_rc 1 pe-export -o ex3 --set evil7
[ -z "$(ls elsewhere)" ] || fail "export followed the -o link"
exit 0
