#!/bin/sh
# bench/audit.sh - pe-audit's benchmarks (docs/performance.md, "Audit"):
#  hindex  the near-duplicate index (pe_hindex) at a million hashes:
#          bench/hindex.c builds it over HINDEX_N pHashes and queries every
#          one at each radius of HINDEX_RADII (and every HINDEX_EST_EVERY-th
#          one at each radius of HINDEX_EST_RADII: the cost per query where
#          all of them would take too long), on two sets: "real" (the
#          pHashes of Fashion-MNIST's 70,000 images and of augmented copies
#          of them) and "random" (uniform 64-bit values); before that, on a
#          HINDEX_VERIFY-hash sample of each, the pairs the index finds are
#          checked against a brute-force popcount scan (a mismatch stops the
#          script with exit 1).
#  audit   a full pe-audit of Fashion-MNIST's 70,000 images (default scans,
#          no encoder) on a fresh store, then the same audit again (the
#          per-image records kept by the first are read back), under
#          /usr/bin/time -v; with AUDIT_BREAKDOWN=1 also the scan groups dup,
#          quality and poison alone (from the records).
#  peers   the same images as PNG files (pe-export): pe-ingest + pe-audit
#          --scan phash against imagededup's PHash (max_distance_threshold
#          = pe's radius 8), and pe-audit --scan dup,quality against
#          cleanvision's Imagelab (default issue types), each under
#          /usr/bin/time -v, with the agreement of the near-duplicate pairs.
#          pe-audit runs with --no-index here: every image measured from its
#          pixels, nothing kept, as the peers do.
# Prints Markdown tables on stdout; progress on stderr.
#
#   sh bench/audit.sh
#
# Environment (all optional):
#   AUDIT_PARTS     parts to run, comma-separated (default hindex,audit,peers)
#   AUDIT_OUT       working folder (default ${TMPDIR:-/tmp}/pe-audit-bench):
#                   hash files (8 MB per million), stores, 70,000 PNGs,
#                   results/ with every tool's raw output
#   HINDEX_N        hashes per set (default 1000000)
#   HINDEX_RADII    radii at which every hash is queried (default 4,8: 8 is
#                   pe-audit's --radius; empty: none)
#   HINDEX_EST_RADII radii at which only a sample is queried (default 12:
#                   pe-audit's --score-radius, the radius its phash,
#                   composite and against scans query at; empty: none)
#   HINDEX_EST_EVERY the sample: every K-th hash (default 100)
#   HINDEX_VERIFY   hashes in the brute-force sample (default 50000)
#   HINDEX_THREADS  query threads (default 1, as pe-audit)
#   AUDIT_BREAKDOWN 1: also time the scan groups alone (default 0)
#   AUDIT_REPORT_ONLY 1: run nothing, print the tables of the parts named
#                   in AUDIT_PARTS from the results already in AUDIT_OUT
#   DEDUP_N         images given to imagededup, and to pe's phash scan beside
#                   it (default 70000: all; its search is O(N^2))
#   AUDIT_VENV      the peers' virtualenv (default bench/.venv; made by
#                   bench/peers-venv.sh when missing)
#   FASHION_MNIST   the dataset folder (default /usr/share/datasets/fashion-mnist)
# Needs: build/ from `make`, cc, /usr/bin/time, /usr/bin/python3; for the
# peers, network access to PyPI the first time (bench/peers-venv.sh).
set -eu

cd "$(dirname "$0")/.."
PY=/usr/bin/python3
TIME=/usr/bin/time
PARTS=${AUDIT_PARTS:-hindex,audit,peers}
OUT=${AUDIT_OUT:-${TMPDIR:-/tmp}/pe-audit-bench}
N=${HINDEX_N:-1000000}
RADII=${HINDEX_RADII-4,8}
EST_RADII=${HINDEX_EST_RADII-12}
EST_EVERY=${HINDEX_EST_EVERY:-100}
VERIFY=${HINDEX_VERIFY:-50000}
QT=${HINDEX_THREADS:-1}
BREAKDOWN=${AUDIT_BREAKDOWN:-0}
DEDUP_N=${DEDUP_N:-70000}
REPORT_ONLY=${AUDIT_REPORT_ONLY:-0}
FM=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
BIN=build/bin
RES=$OUT/results

say() { echo "audit-bench: $*" >&2; }
die() { echo "audit-bench: $*" >&2; exit 1; }
has() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
run() { [ "$REPORT_ONLY" != 1 ] && has "$1"; }
# timed DIR NAME CMD...: bench/timed.sh
. bench/timed.sh

[ -x $BIN/pe-audit ] && [ -f build/libpe.a ] || die "build/ is missing: run 'make' first"
[ -x $TIME ] || die "$TIME missing (apt-get install time)"
for f in train-images-idx3-ubyte.gz t10k-images-idx3-ubyte.gz; do
    [ -f "$FM/$f" ] || die "$FM/$f missing (package dataset-fashion-mnist)"
done
mkdir -p "$OUT" "$RES"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
say "working in $OUT; parts $PARTS"

[ "$REPORT_ONLY" = 1 ] || ${CC:-cc} -O2 -D_GNU_SOURCE -std=c11 -Wall -Wextra -Ilib -Iformats bench/hindex.c build/libpe.a \
    $(cat build/ldlibs) -o "$OUT/hindex"

# ---- 1. the index at a million
if run hindex; then
    rm -f "$RES"/hindex-*
    for set in real random; do
        say "generating $N $set hashes"
        "$OUT/hindex" gen $set "$N" "$OUT/$set.u64" --fm "$FM" > "$RES/hindex-gen-$set.out"
        "$OUT/hindex" stats "$OUT/$set.u64" >> "$RES/hindex-gen-$set.out"
        say "checking the index against brute force on $VERIFY of them"
        all=$RADII
        [ -n "$EST_RADII" ] && all=${all:+$all,}$EST_RADII
        "$OUT/hindex" verify "$OUT/$set.u64" "$VERIFY" "$all" > "$RES/hindex-verify-$set.out" || {
            cat "$RES/hindex-verify-$set.out" >&2
            die "the index and the brute-force scan disagree on the $set set (above)"
        }
        cat "$RES/hindex-verify-$set.out" >&2
        if [ -n "$RADII" ]; then
            timed "$RES" hindex-search-$set "$OUT/hindex" search "$OUT/$set.u64" "$RADII" -j "$QT"
            cat "$RES/hindex-search-$set.out" >&2
        fi
        if [ -n "$EST_RADII" ]; then
            timed "$RES" hindex-est-$set "$OUT/hindex" search "$OUT/$set.u64" "$EST_RADII" -j "$QT" \
                --every "$EST_EVERY"
            cat "$RES/hindex-est-$set.out" >&2
        fi
    done
fi

# ---- 2. a full audit of Fashion-MNIST
if run audit || run peers; then
    say "ingesting Fashion-MNIST into $OUT/fm.lmdb"
    rm -rf "$OUT/fm.lmdb"
    $BIN/pe-ingest -q -S "$OUT/fm.lmdb" --set fm \
        "$FM/train-images-idx3-ubyte.gz" "$FM/t10k-images-idx3-ubyte.gz" > "$OUT/fm.lines"
fi
if run audit; then
    rm -f "$RES"/audit-*
    # first audit of the fresh store: every image measured, its record kept;
    # the second reads the records back (pe-audit(1), INDEX)
    timed "$RES" audit-all $BIN/pe-audit -S "$OUT/fm.lmdb" --set fm
    timed "$RES" audit-again $BIN/pe-audit -S "$OUT/fm.lmdb" --set fm
    if [ "$BREAKDOWN" = 1 ]; then
        for g in dup quality poison; do
            timed "$RES" audit-$g $BIN/pe-audit -S "$OUT/fm.lmdb" --set fm --scan $g
        done
    fi
fi

# ---- 3. the peers on the same images as PNG files
if run peers; then
    rm -f "$RES"/peer-*
    VPY=$(sh bench/peers-venv.sh)
    say "exporting the images as PNG into $OUT/png"
    rm -rf "$OUT/png"
    $BIN/pe-export -S "$OUT/fm.lmdb" -s fm --flat -o "$OUT/png" 2> "$RES/peer-export.err"
    # pe from the files: ingest them, then the scans each peer has
    rm -rf "$OUT/png.lmdb"
    timed "$RES" peer-pe-ingest $BIN/pe-ingest -q -S "$OUT/png.lmdb" --set png "$OUT/png"
    # imagededup's search is O(N^2) in Python: DEDUP_N of the files (the
    # first in key order) for it and for pe's phash scan beside it
    ls "$OUT/png" | sort | head -n "$DEDUP_N" | sed 's/\.png$//' > "$OUT/dedup.keys"
    rm -rf "$OUT/png-dedup"
    mkdir "$OUT/png-dedup"
    sed 's/$/.png/' "$OUT/dedup.keys" | (cd "$OUT/png" && xargs ln -t ../png-dedup)
    timed "$RES" peer-pe-phash $BIN/pe-audit --no-index -S "$OUT/png.lmdb" --scan phash < "$OUT/dedup.keys"
    timed "$RES" peer-imagededup "$VPY" bench/audit_peers.py imagededup "$OUT/png-dedup" --radius 8 \
        --out "$OUT/imagededup.pairs"
    timed "$RES" peer-pe-dupquality $BIN/pe-audit --no-index -S "$OUT/png.lmdb" --set png --scan dup,quality
    timed "$RES" peer-cleanvision "$VPY" bench/audit_peers.py cleanvision "$OUT/png" \
        --out "$OUT/cleanvision.tsv"
    # agreement: pe's pairs within 8 from its hashes (untimed JSON runs)
    $BIN/pe-audit --no-index -q -S "$OUT/png.lmdb" --scan phash --all --json < "$OUT/dedup.keys" \
        > "$OUT/pe-phash.jsonl"
    $PY bench/audit_peers.py pe-pairs "$OUT/pe-phash.jsonl" "$OUT/hindex" 8 \
        --out "$OUT/pe.pairs" > "$RES/peer-pe-pairs.out"
    $PY bench/audit_peers.py compare "$OUT/pe.pairs" "$OUT/imagededup.pairs" \
        > "$RES/peer-compare.out"
    # cleanvision's near duplicates (equal imagehash pHashes) against pe's
    # pairs over all the files
    $BIN/pe-audit --no-index -q -S "$OUT/png.lmdb" --set png --scan phash --all --json > "$OUT/pe-phash-all.jsonl"
    $PY bench/audit_peers.py pe-pairs "$OUT/pe-phash-all.jsonl" "$OUT/hindex" 8 \
        --out "$OUT/pe-all.pairs" > "$RES/peer-pe-pairs-all.out"
    $PY bench/audit_peers.py compare "$OUT/pe-all.pairs" /dev/null \
        --cleanvision "$OUT/cleanvision.tsv" > "$RES/peer-compare-cleanvision.out"
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))

# ---- the tables
$PY - "$RES" "$PARTS" "$N" "$RADII" "$QT" "$LOAD0" "$LOAD1" "$ELAPSED" "$REPORT_ONLY" <<'EOF'
import json, os, re, sys
res, parts, n, radii, qt, load0, load1, elapsed, report_only = sys.argv[1:10]
parts = parts.split(",")

def kv(path):
    out = []
    for line in open(path):
        f = line.split()
        if f and "=" in f[1]:
            d = {"what": f[0]}
            d.update(x.split("=", 1) for x in f[1:] if "=" in x)
            d["verdict"] = f[-1] if "=" not in f[-1] else ""
            out.append(d)
    return out

def tv(name):
    t = {}
    for line in open(os.path.join(res, name + ".time")):
        k, _, v = line.strip().rpartition(": ")
        t[k] = v
    w = t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    cpu = float(t["User time (seconds)"]) + float(t["System time (seconds)"])
    return wall, cpu, int(t["Maximum resident set size (kbytes)"]) / 1024

def js(name):
    return json.loads(open(os.path.join(res, name + ".out")).read().strip().splitlines()[-1])

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
if report_only == "1":
    print("Machine: %s, nproc %d; tables printed from the results in %s." % (cpu, os.cpu_count(), res))
else:
    print("Machine: %s, nproc %d; load average %s at the start, %s at the end; %s s in all." % (
        cpu, os.cpu_count(), load0, load1, elapsed))
if "hindex" in parts:
    print()
    print("| set | hashes | radius | queries | threads | build s | query wall s | query CPU s | CPU us/query | pairs | with a neighbour | clusters | largest | peak RSS MiB (time -v) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in ("real", "random"):
        for name in ("hindex-search-", "hindex-est-"):
            if not os.path.exists(os.path.join(res, name + s + ".out")):
                continue
            rows = kv(os.path.join(res, name + s + ".out"))
            b = rows[0]
            _, _, rss = tv(name + s)
            for q in rows[1:]:
                est = q["what"] != "query"
                print("| %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
                    s, q["n"], q["radius"], q["queried"], " (sample)" if est else "", q["threads"],
                    b["wall_s"], q["wall_s"], q["cpu_s"], q["cpu_us_per_query"],
                    *(("-",) * 4 if est else (q["pairs"], q["with_neighbour"], q["clusters"], q["largest_cluster"])),
                    rss))
    print()
    print("| set | sample | radius | index pairs | brute-force pairs | checksums | verdict |")
    print("|---|---:|---:|---:|---:|---|---|")
    for s in ("real", "random"):
        for v in kv(os.path.join(res, "hindex-verify-%s.out" % s)):
            print("| %s | %s | %s | %s | %s | %s / %s | %s |" % (
                s, v["sample"], v["radius"], v["index_pairs"], v["brute_pairs"],
                v["index_checksum"], v["brute_checksum"], v["verdict"]))
    for s in ("real", "random"):
        g = kv(os.path.join(res, "hindex-gen-%s.out" % s))
        print("\nGenerating the %s set: %s s wall, %s s CPU on %s threads." % (s, g[0]["wall_s"], g[0]["cpu_s"], g[0]["threads"]))
        if len(g) > 1:
            st = g[1]
            print("Its %s distinct values (at most %s equal); per 16-bit block, values used / largest bucket / mean bucket a hash falls in: %s." % (
                st["distinct"], st["max_multiplicity"], ", ".join("%s / %s / %s" % (
                    st["block%d_values" % b], st["block%d_max" % b], st["block%d_mean_bucket" % b]) for b in range(4))))
if "audit" in parts:
    print()
    print("| pe-audit on Fashion-MNIST (70,000) | wall s | CPU s | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for name, label in (("audit-all", "default scans, fresh store"),
                        ("audit-again", "default scans again (records read back)"), ("audit-dup", "--scan dup"),
                        ("audit-quality", "--scan quality"), ("audit-poison", "--scan poison")):
        if os.path.exists(os.path.join(res, name + ".time")):
            w, c, m = tv(name)
            print("| %s | %.2f | %.2f | %.1f |" % (label, w, c, m))
    print()
    print("Summary of the default audit (stderr):")
    print()
    print("```")
    print(open(os.path.join(res, "audit-all.err")).read().rstrip())
    print("```")
if "peers" in parts:
    print()
    nd = js("peer-imagededup")["images"]
    print("| command | images | wall s | CPU s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for name, label, k in (("peer-pe-ingest", "pe-ingest (the PNGs into a store)", 0),
                           ("peer-pe-phash", "pe-audit --no-index --scan phash (radius 8)", nd),
                           ("peer-imagededup", "imagededup PHash, encode + find_duplicates (threshold 8)", nd),
                           ("peer-pe-dupquality", "pe-audit --no-index --scan dup,quality", 0),
                           ("peer-cleanvision", "cleanvision Imagelab.find_issues()", 0)):
        w, c, m = tv(name)
        print("| %s | %s | %.2f | %.2f | %.1f |" % (label, k or "all", w, c, m))
    print()
    for name in ("peer-pe-pairs", "peer-imagededup", "peer-compare", "peer-pe-pairs-all",
                 "peer-cleanvision", "peer-compare-cleanvision"):
        print("%s: `%s`" % (name, json.dumps(js(name))))
        print()
EOF
