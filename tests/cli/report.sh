# pe-audit --report: the HTML report of a store whose file, folder and
# class names are hostile (HTML, "</script>", quotes, '&', a tab, bytes
# that are not UTF-8), with pe-craft poisons in it. Without a browser:
# the CSP, the elements and the escaping (tests/browser/check_html.py),
# the same stdout with and without a report, --report-max, and failures
# that leave no report behind. With Chromium, chromedriver and selenium:
# the page as a browser builds it (tests/browser/report_test.py), with a
# screenshot in $T; skipped with the reason when one is missing.
. "$(dirname "$0")/lib.sh"
B="$HERE/../browser"

# the same pixels under hostile and under plain names, each in a store
# with poisons: targets from eval, references from train's second class
for kind in hostile benign; do
    $PY "$B/make_hostile.py" "$kind" "$kind" || fail "writing the $kind images"
    export PE_STORE="$T/$kind.lmdb"
    pe-ingest -q --set train "$kind/train" > /dev/null || fail "$kind: ingest train"
    pe-ingest -q --set eval "$kind/eval" > ev.keys || fail "$kind: ingest eval"
    cut -f1 ev.keys | LC_ALL=C sort | head -2 > tg.keys
    if [ "$kind" = hostile ]; then cls="\"cls\" & 'x' <i class=pwn>"; else cls=c1; fi
    pe-ls --set train --label "$cls" | head -4 > rf.keys
    [ "$(wc -l < rf.keys)" = 4 ] || fail "$kind: references of '$cls'"
    pe-craft -q --targets tg.keys --target-class "$cls" --labels train --references rf.keys \
        --count 12 --seed 5 > p.lines || fail "$kind: craft"
    pe-inject -q --from train --to poisoned < p.lines || fail "$kind: inject"
    expect_rc 0 pe-audit --set poisoned --truth --against eval --json --report "$T/$kind.html"
    cp out "$kind.json"
    [ -s "$kind.html" ] || fail "$kind: no report"
done
export PE_STORE="$T/hostile.lmdb"
ls "$T" | grep -q '\.tmp\.' && fail "a temporary file was left: $(ls "$T")"
no_controls hostile.html

# without a browser: CSP, elements, escaping, the data block
$PY "$B/check_html.py" hostile.html benign.html hostile.json || fail "report HTML"

# the report changes nothing on stdout; an existing report is replaced
expect_rc 0 pe-audit --set poisoned --truth --against eval
cp out plain.out
echo old > again.html
expect_rc 0 pe-audit --set poisoned --truth --against eval --report again.html
cmp -s out plain.out || fail "stdout differs with --report"
cmp -s again.html hostile.html || fail "the same audit gave another report"
# keys on stdin
pe-ls --set poisoned > poisoned.keys
expect_rc 0 pe-audit --report stdin.html < poisoned.keys
grep -q '<title>pe-audit: stdin</title>' stdin.html || fail "report of stdin keys"

# --report-max bounds the thumbnails per section
expect_rc 0 pe-audit --set poisoned --report max0.html --report-max 0
grep -q '<img' max0.html && fail "--report-max 0 still shows images"
grep -q 'id="summary"' max0.html || fail "--report-max 0: no summary"
expect_rc 0 pe-audit --set poisoned --against eval --report max1.html --report-max 1
$PY - max1.html hostile.html <<'PYEOF' || fail "--report-max 1"
import re, sys
small, full = (open(p, encoding="utf-8").read() for p in sys.argv[1:3])
for sec in ("composites", "against", "seams"):
    body = re.search(r'<section id="%s">(.*?)</section>' % sec, small, re.S).group(1)
    assert body.count('<div class="row') <= 1, sec
    assert "1 of " in body, sec  # says how many were left out
assert small.count("<img") < full.count("<img") / 2, (small.count("<img"), full.count("<img"))
PYEOF

# failures: a clear error before the scans, exit 1, empty stdout, and no
# report or temporary file left behind
mkdir keep
echo old > keep/r.html
expect_rc 1 pe-audit --set nosuch --report keep/r.html
err_has "no set 'nosuch'"
[ -s out ] && fail "stdout not empty"
[ "$(cat keep/r.html)" = old ] || fail "a failed audit touched the existing report"
[ "$(ls keep)" = r.html ] || fail "left behind: $(ls keep)"
expect_rc 1 pe-audit --set nosuch --report keep/new.html
[ "$(ls keep)" = r.html ] || fail "left behind: $(ls keep)"
expect_rc 1 pe-audit --set poisoned --report "$T/nodir/r.html"
err_has "report $T/nodir/r.html: cannot create a file there: No such file or directory"
grep -q "images in" err && fail "the scans ran before the report path was checked"
[ -s out ] && fail "stdout not empty"
expect_rc 1 pe-audit --set poisoned --report keep
err_has "is a folder"
expect_rc 1 pe-audit --set poisoned --report plain.out/r.html
err_has "Not a directory"
echo 0123456789abcdef0123456789abcdef > unknown.keys
expect_rc 1 pe-audit --report keep/k.html < unknown.keys
[ "$(ls keep)" = r.html ] || fail "left behind: $(ls keep)"
usage_error pe-audit --set poisoned --report ''
usage_error pe-audit --set poisoned --report-max 10001
usage_error pe-audit --set poisoned --report-max -1
usage_error pe-audit --set poisoned --report-max x
usage_error pe-audit --set poisoned --report
ls "$T" | grep -q '\.tmp\.' && fail "a temporary file was left: $(ls "$T")"

# in a browser
missing=""
[ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
$PY -c 'import selenium' 2>/dev/null || missing="$missing python3-selenium"
if [ -n "$missing" ]; then
    echo "skip: browser part: not installed:$missing (scripts/install-deps.sh installs them)"
    exit 0
fi
timeout 90 $PY "$B/report_test.py" hostile.html benign.html "$T/report.png" ||
    fail "the report in Chromium"
exit 0
