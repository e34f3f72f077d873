#!/bin/sh
# bench/audit-quality.sh - pe-audit's quality and duplicate scans against
# cleanvision on planted defects (docs/results.md, "Quality scans against
# cleanvision"): bench/audit_quality.py makes a tinted (colour) Fashion-MNIST
# set of QUALITY_CLEAN clean PNG files plus QUALITY_PER each of dark, light,
# blurry, grayscale and near-duplicate ones; pe-ingest + pe-audit --scan
# quality,dup and cleanvision's Imagelab.find_issues() run on the same files
# at their default thresholds (each under /usr/bin/time -v; pe-audit with
# --no-index, measuring every image, as cleanvision does), pe-audit once
# more per defect type with --truth (that type's keys); then the table of
# recall per defect type and false positives per 10,000 clean images.
# Prints Markdown on stdout; progress on stderr.
#
#   sh bench/audit-quality.sh
#
# Environment (all optional):
#   QUALITY_CLEAN  clean images (default 5000)
#   QUALITY_PER    images per defect type (default 100)
#   QUALITY_SEED   seed of the draws (default 1)
#   QUALITY_RADII  other pe-audit --radius values whose near-duplicate row is
#                  printed too (default "0 2 4 6"; empty: none)
#   AUDIT_OUT      working folder (default ${TMPDIR:-/tmp}/pe-audit-bench);
#                  this script uses AUDIT_OUT/quality/
#   AUDIT_VENV     the peers' virtualenv (default bench/.venv; made by
#                  bench/peers-venv.sh when missing)
#   FASHION_MNIST  the dataset folder (default /usr/share/datasets/fashion-mnist)
set -eu

cd "$(dirname "$0")/.."
PY=/usr/bin/python3
TIME=/usr/bin/time
CLEAN=${QUALITY_CLEAN:-5000}
PER=${QUALITY_PER:-100}
SEED=${QUALITY_SEED:-1}
RADII=${QUALITY_RADII-0 2 4 6}
OUT=${AUDIT_OUT:-${TMPDIR:-/tmp}/pe-audit-bench}/quality
FM=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
BIN=build/bin

say() { echo "audit-quality: $*" >&2; }
die() { echo "audit-quality: $*" >&2; exit 1; }
# timed DIR NAME CMD...: bench/timed.sh
. bench/timed.sh

[ -x $BIN/pe-audit ] || die "build/ is missing: run 'make' first"
$PY -c 'import PIL' 2>/dev/null || die "$PY lacks PIL: sh scripts/install-deps.sh"
VPY=$(sh bench/peers-venv.sh)
rm -rf "$OUT"
mkdir -p "$OUT"
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say "making the set in $OUT/files"
$PY bench/audit_quality.py make "$OUT" --clean "$CLEAN" --per "$PER" --seed "$SEED" --fm "$FM"
timed "$OUT" pe-ingest $BIN/pe-ingest -S "$OUT/q.lmdb" --set q "$OUT/files"
cp "$OUT/pe-ingest.out" "$OUT/q.lines"
timed "$OUT" pe-audit $BIN/pe-audit --no-index -S "$OUT/q.lmdb" --set q --scan quality,dup --all --json
timed "$OUT" cleanvision "$VPY" bench/audit_peers.py cleanvision "$OUT/files" --out "$OUT/cleanvision.tsv"

# --truth per defect type: that type's keys
for t in dark light blurry grayscale neardup; do
    awk -F'\t' -v t=$t '$2 == t { print $1 }' "$OUT/truth.tsv" > "$OUT/$t.stems"
    awk -F'\t' 'NR == FNR { want[$1] = 1; next }
        { n = $NF; sub(/.*\//, "", n); sub(/\.png$/, "", n); if (n in want) print $1 }' \
        "$OUT/$t.stems" "$OUT/q.lines" > "$OUT/$t.keys"
    $BIN/pe-audit --no-index -q -S "$OUT/q.lmdb" --set q --scan quality,dup --truth "$OUT/$t.keys" --json |
        tail -n 1 > "$OUT/$t.json"
done
for r in $RADII; do
    $BIN/pe-audit --no-index -q -S "$OUT/q.lmdb" --set q --scan quality,dup --radius "$r" --all --json \
        > "$OUT/pe-audit-r$r.jsonl"
done
ELAPSED=$(($(date +%s) - T0))
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

$PY - "$OUT" "$LOAD0" "$LOAD1" "$ELAPSED" <<'EOF'
import os, sys
out, load0, load1, elapsed = sys.argv[1:5]
def tv(name):
    t = {}
    for line in open(os.path.join(out, name + ".time")):
        k, _, v = line.strip().rpartition(": ")
        t[k] = v
    w = t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    return wall, float(t["User time (seconds)"]) + float(t["System time (seconds)"]), \
        int(t["Maximum resident set size (kbytes)"]) / 1024
print("Load average %s at the start, %s at the end; %s s in all." % (load0, load1, elapsed))
print()
print("| command | wall s | CPU s | peak RSS MiB |")
print("|---|---:|---:|---:|")
for name, label in (("pe-ingest", "pe-ingest (the PNGs)"), ("pe-audit", "pe-audit --no-index --scan quality,dup"),
                    ("cleanvision", "cleanvision find_issues()")):
    print("| %s | %.2f | %.2f | %.1f |" % ((label,) + tv(name)))
print()
EOF
$PY bench/audit_quality.py score "$OUT" --pe-lines "$OUT/q.lines" --pe-json "$OUT/pe-audit.out" \
    --cleanvision "$OUT/cleanvision.tsv" \
    --truth-json "$OUT/dark.json" "$OUT/light.json" "$OUT/blurry.json" "$OUT/grayscale.json" "$OUT/neardup.json"
if [ -n "$RADII" ]; then
    echo
    echo "pe-audit's phash scan at other radii (--radius R; the default is 8):"
    echo
    echo "| radius | near duplicates found | clean images flagged (per 10,000) |"
    echo "|---:|---:|---:|"
    for r in $RADII; do
        $PY bench/audit_quality.py score "$OUT" --pe-lines "$OUT/q.lines" --pe-json "$OUT/pe-audit-r$r.jsonl" \
            --cleanvision "$OUT/cleanvision.tsv" | awk -F'|' -v r="$r" '$2 ~ /neardup/ { print "| " r " |" $4 "|" $5 "|" }'
    done
fi
echo
echo "cleanvision: \`$(tail -n 1 "$OUT/cleanvision.out")\`"
