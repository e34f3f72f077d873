#!/bin/sh
# bench/ingest.sh - ingest throughput and quality of pe-ingest against the
# Python reference (../shared/bench/py_ingest.py: PIL + lmdb + xxhash) and
# against pe's own decoders alone (bench/decode_floor.c), on a web-like image
# set built from Fashion-MNIST (bench/make-web-set.py), plus Fashion-MNIST's
# IDX files against zcat. Prints a Markdown table on stdout; progress and
# tool output go to stderr. `make bench` runs it after `make`.
#
#   sh bench/ingest.sh
#
# Environment (all optional):
#   BENCH_N        images in the web set (default 20000)
#   BENCH_RUNS     timed runs of the pe commands, median reported (default 3)
#   BENCH_PY_RUNS  timed runs of the Python reference (default 1: slow)
#   BENCH_THREADS  threads for pe-ingest and the floor (default: nproc)
#   BENCH_OUT      working folder (default bench/out)
#   BENCH_TIMER    hyperfine or builtin (default: hyperfine when installed)
#   PY_INGEST      the reference script (default ../shared/bench/py_ingest.py,
#                  relative to the repository root; shared/ sits beside it)
# Needs: build/ from `make`, cc, /usr/bin/python3 with PIL, numpy, lmdb,
# xxhash (scripts/install-deps.sh bench), zcat; hyperfine when installed,
# else a built-in timer (same statistics).
# Outputs under bench/out/ (git-ignored): the image set (web/, kept and reused
# while BENCH_N is unchanged), per-format views of it (fmt-*/, hard links),
# stores, timings (results/*.json) and the decode_floor binary. The set is
# rebuilt when BENCH_N or bench/make-web-set.py changes.
set -eu

cd "$(dirname "$0")/.."
PY=/usr/bin/python3
N=${BENCH_N:-20000}
RUNS=${BENCH_RUNS:-3}
PY_RUNS=${BENCH_PY_RUNS:-1}
NPROC=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
T=${BENCH_THREADS:-$NPROC}
REF=${PY_INGEST:-../shared/bench/py_ingest.py}
FM=/usr/share/datasets/fashion-mnist
OUT=${BENCH_OUT:-bench/out}
RES=$OUT/results
BIN=build/bin
SIZE=64

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# ---- prerequisites
[ -x $BIN/pe-ingest ] && [ -f build/libpe.a ] || die "build/ is missing: run 'make' first (or 'make bench')"
[ -f "$REF" ] || die "$REF not found (the shared/ checkout beside the repository; or set PY_INGEST)"
[ -x $PY ] || die "$PY not found"
$PY -c 'import PIL, numpy, lmdb, xxhash' 2>/dev/null ||
    die "$PY lacks PIL, numpy, lmdb or xxhash: sh scripts/install-deps.sh bench"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
         t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f $FM/$f ] || die "$FM/$f missing (package dataset-fashion-mnist)"
done
mkdir -p $OUT $RES
rm -f $RES/*.json

# ---- the image set (reused while N and the generator are the same and it
# was completed)
SETID="$N $(cksum < bench/make-web-set.py | cut -d' ' -f1)"
if [ -d $OUT/web ] && [ "$(cat $OUT/web.n 2>/dev/null)" = "$SETID" ]; then
    say "reusing $OUT/web ($N images)"
else
    say "building $OUT/web: $N images (a few minutes; kept for later runs)"
    rm -rf $OUT/web $OUT/web.tmp $OUT/web.n $OUT/fmt-jpg $OUT/fmt-png $OUT/fmt-tif
    $PY bench/make-web-set.py "$N" --out $OUT/web.tmp > $OUT/make-web-set.log
    cat $OUT/make-web-set.log >&2
    mv $OUT/web.tmp $OUT/web
    echo "$SETID" > $OUT/web.n
fi
# Per-format views: the same files, hard-linked under the same class folders.
for e in jpg png tif; do
    [ -d $OUT/fmt-$e ] && continue
    rm -rf $OUT/fmt-$e.tmp
    for d in $OUT/web/*/; do
        c=$(basename "$d")
        mkdir -p "$OUT/fmt-$e.tmp/$c"
        find "$d" -maxdepth 1 -type f -name "*.$e" -exec ln -t "$OUT/fmt-$e.tmp/$c" {} +
    done
    mv $OUT/fmt-$e.tmp $OUT/fmt-$e
done
count() { find "$1" -type f | wc -l | tr -d ' '; }
N_ALL=$(count $OUT/web)
N_JPG=$(count $OUT/fmt-jpg)
N_PNG=$(count $OUT/fmt-png)
N_TIF=$(count $OUT/fmt-tif)

# ---- the floor program, built as the project builds its programs
say "building $OUT/decode_floor"
${CC:-cc} -O2 -D_GNU_SOURCE -Ilib -Iformats bench/decode_floor.c build/libpe.a \
    $(cat build/ldlibs) \
    -o $OUT/decode_floor

# ---- timing: bench NAME RUNS PREPARE COMMAND -> $RES/NAME.json with median
# wall time and mean user/system CPU seconds (hyperfine's export format).
TIMER=${BENCH_TIMER:-}
if [ -z "$TIMER" ]; then
    if command -v hyperfine >/dev/null 2>&1; then TIMER=hyperfine; else TIMER=builtin; fi
fi
bench() {
    name=$1 runs=$2 prep=$3 cmd=$4
    say "timing $name ($runs run(s)): $cmd"
    if [ $TIMER = hyperfine ]; then
        hyperfine --style basic --runs "$runs" --prepare "$prep" \
            --export-json "$RES/$name.json" "$cmd" >&2
    else
        $PY - "$RES/$name.json" "$runs" "$prep" "$cmd" <<'EOF'
import json, resource, statistics, subprocess, sys, time
out, runs, prep, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
times, users, syss = [], [], []
for _ in range(runs):
    subprocess.run(prep, shell=True, check=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    times.append(t1 - t0); users.append(r1.ru_utime - r0.ru_utime)
    syss.append(r1.ru_stime - r0.ru_stime)
json.dump({"results": [{"command": cmd, "median": statistics.median(times),
           "mean": statistics.mean(times), "user": statistics.mean(users),
           "system": statistics.mean(syss), "times": times}]}, open(out, "w"))
print("  median %.3f s (user %.3f s, system %.3f s)" % (statistics.median(times),
      statistics.mean(users), statistics.mean(syss)), file=sys.stderr)
EOF
    fi
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
T0=$(date +%s)
PE="$BIN/pe-ingest -j $T --channels 3 --size ${SIZE}x$SIZE -q"
DB=$OUT/pe.lmdb
PYDB=$OUT/py.lmdb

# One untimed pass: warms the page cache for every contender alike and
# records KEY/LABEL/SOURCE for the quality check.
say "untimed pe-ingest pass (page cache, quality map)"
rm -rf $OUT/quality.lmdb
$PE -S $OUT/quality.lmdb $OUT/web > $OUT/quality.lines

# (a) pe-ingest, (b) the Python reference, (c) the floor: the whole set
bench pe_all "$RUNS" "rm -rf $DB" "$PE -S $DB $OUT/web"
bench py_all "$PY_RUNS" "rm -rf $PYDB" "$PY $REF $OUT/web $PYDB $SIZE"
bench floor_all "$RUNS" "true" "$OUT/decode_floor -j $T --size ${SIZE}x$SIZE --channels 3 $OUT/web"
bench floor1_all 1 "true" "$OUT/decode_floor -j 1 --size ${SIZE}x$SIZE --channels 3 $OUT/web"

# (d) per format: the same files split by format, labels from the same folders
for e in jpg png tif; do
    bench pe_$e "$RUNS" "rm -rf $DB" "$PE -S $DB $OUT/fmt-$e"
    bench py_$e "$PY_RUNS" "rm -rf $PYDB" "$PY $REF $OUT/fmt-$e $PYDB $SIZE"
    bench floor_$e "$RUNS" "true" "$OUT/decode_floor -j $T --size ${SIZE}x$SIZE --channels 3 $OUT/fmt-$e"
done

# (e) quality against Pillow
say "quality: pe's ${SIZE}x$SIZE images against Pillow's convert('RGB').resize(BILINEAR)"
$PY bench/quality.py $OUT/quality.lmdb $OUT/quality.lines --size $SIZE --json $RES/quality.json >&2 ||
    say "quality: some images were not comparable (see above)"

# (f) Fashion-MNIST, 60,000 + 10,000 images from the .gz IDX files, against zcat
FMDB=$OUT/fm.lmdb
bench fm_pe 5 "rm -rf $FMDB" \
    "$BIN/pe-ingest -j $T -S $FMDB --set fm -q $FM/train-images-idx3-ubyte.gz $FM/t10k-images-idx3-ubyte.gz"
bench fm_zcat 5 "true" \
    "zcat $FM/train-images-idx3-ubyte.gz $FM/train-labels-idx1-ubyte.gz $FM/t10k-images-idx3-ubyte.gz $FM/t10k-labels-idx1-ubyte.gz"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
ELAPSED=$(( $(date +%s) - T0 ))
rm -rf $DB $PYDB $FMDB

# ---- the table
$PY - "$RES" <<EOF
import json, os, sys
res = sys.argv[1]
def r(n):
    with open(os.path.join(res, n + ".json")) as f:
        return json.load(f)["results"][0]
def wall(n): return r(n)["median"]
def cpu(n): x = r(n); return x["user"] + x["system"]
cnt = {"all": $N_ALL, "jpg": $N_JPG, "png": $N_PNG, "tif": $N_TIF, "fm": 70000}
name = {"all": "web set, all formats", "jpg": "JPEG", "png": "PNG", "tif": "TIFF"}
print("Machine: %s, nproc %s, pe threads $T, timer $TIMER, pe runs $RUNS / Python runs $PY_RUNS (median wall)," % (
    next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"), "$NPROC"))
print("$(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD0 at the start, $LOAD1 at the end; timed part took ${ELAPSED}s.")
print("Effective parallelism of the decode floor: %.2f (1-thread time / $T-thread time; %s would mean %s free cores)." % (
    wall("floor1_all") / wall("floor_all"), "$T.00", "$T"))
print()
print("| input | images | pe-ingest s (img/s) | py_ingest s (img/s) | speedup wall / CPU (target >= 4x) | decode floor s (img/s) | pe / floor wall / CPU (target <= 1.5x) | floor 1 thread s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for k in ("all", "jpg", "png", "tif"):
    n = cnt[k]
    pe, py, fl = wall("pe_" + k), wall("py_" + k), wall("floor_" + k)
    f1 = ("%.2f" % wall("floor1_all")) if k == "all" else ""
    print("| %s | %d | %.2f (%.0f) | %.2f (%.0f) | %.2fx / %.2fx %s | %.2f (%.0f) | %.2fx / %.2fx %s | %s |" % (
        name[k], n, pe, n / pe, py, n / py, py / pe, cpu("py_" + k) / cpu("pe_" + k),
        "met" if py / pe >= 4 else "**missed**", fl, n / fl, pe / fl, cpu("pe_" + k) / cpu("floor_" + k),
        "met" if pe / fl <= 1.5 else "**missed**", f1))
q = json.load(open(os.path.join(res, "quality.json")))
print()
print("| quality vs Pillow (${SIZE}x$SIZE RGB, bilinear) | images | MAD mean | MAD max | images with MAD > 3 | identical | target: mean <= 3 |")
print("|---|---:|---:|---:|---:|---:|---|")
print("| all | %d | %.3f | %.3f | %d | %d | %s |" % (q["images"], q["mean"], q["max"], q["over3"], q["exact"],
      "met" if q["mean"] <= 3 else "**missed**"))
for k, v in q["per_format"].items():
    print("| %s | %d | %.3f | %.3f | | %d | |" % (k, v["images"], v["mean"], v["max"], v["exact"]))
pe, z = wall("fm_pe"), wall("fm_zcat")
print()
print("| Fashion-MNIST (train + t10k .gz) | images | time s | img/s | CPU s | ratio to zcat wall / CPU (target <= 3x) |")
print("|---|---:|---:|---:|---:|---:|")
print("| pe-ingest --set fm | 70000 | %.2f | %.0f | %.2f | %.2fx / %.2fx %s |" % (pe, 70000 / pe, cpu("fm_pe"),
      pe / z, cpu("fm_pe") / cpu("fm_zcat"), "met" if pe / z <= 3 else "**missed**"))
print("| zcat (4 files) | | %.2f | | %.2f | 1x |" % (z, cpu("fm_zcat")))
EOF
