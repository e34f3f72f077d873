#!/bin/sh
# tests/fuzz/run.sh - runs every built fuzz target (build-fuzz/fuzz_*) over a
# scratch copy of its seed corpus (tests/fuzz/corpus/<name>/) for a number
# of executions, under a time cap, and checks that the run got somewhere.
#
# Not for: building (make fuzz does that first) or long fuzzing campaigns
# (run a target by hand: build-fuzz/fuzz_png -max_total_time=3600 DIR).
#
# A target FAILS when:
#  - libFuzzer stops with a crash, leak, timeout or out-of-memory (the
#    reproducer is kept under $FUZZ_ARTIFACTS and its path printed);
#  - it did fewer than FUZZ_MIN_RUNS executions;
#  - its final coverage ("cov:", edges of the instrumented pe code) is below
#    the floor set for it in floor() below: a target that only ever gets as
#    far as a magic-number check does not count;
#  - it has no seed corpus or no floor.
# Prints one line per target (runs, cov, seconds) and exits nonzero when
# any target failed. Without clang or built targets it says why and exits 0.
#
# Environment: FUZZ_RUNS (executions per target), FUZZ_TIME (cap in seconds
# per target), FUZZ_MIN_RUNS, FUZZ_JOBS (targets at once; default: cores,
# at most 4), FUZZ_ARTIFACTS (where crashes are kept), FUZZ_BUILD and
# FUZZ_CORPUS (other target and corpus folders, to test this script).
set -u
cd "$(dirname "$0")/../.." || exit 1

FB=${FUZZ_BUILD:-build-fuzz}
CORPUS=${FUZZ_CORPUS:-tests/fuzz/corpus}
# 25 s x 13 targets on 2 cores is about 3 minutes. The slowest targets
# (tiff, decode, jpeg under ASan) do about 2000-4000 executions a second
# from their seeds, so most targets reach FUZZ_RUNS and the time cap only
# bounds the slow ones.
FUZZ_RUNS=${FUZZ_RUNS:-250000}
FUZZ_TIME=${FUZZ_TIME:-25}
FUZZ_MIN_RUNS=${FUZZ_MIN_RUNS:-2000}
FUZZ_ARTIFACTS=${FUZZ_ARTIFACTS:-${TMPDIR:-/tmp}/pe-fuzz-crashes}

# Coverage floors: 70% of the "cov:" each target reached in a default run
# (FUZZ_RUNS/FUZZ_TIME above) from its committed seeds when the floor was
# set. Coverage counts edges of the instrumented pe code only (lib/,
# formats/, the target), not inside libjpeg, libpng, libtiff or zlib; the
# floors say "the decoder's own paths ran". For scale, one junk input that
# stops at the magic-number check reaches a tenth to a third of a floor,
# and even a 2000-run session from the seeds clears it. Measured (cov of a
# full run / of junk alone), Nov 2026, clang 14:
#   bmp 154/13  cifar 57/18  decode 679/36  exif 32/4  gunzip 79/13
#   idx 76/19  jpeg 138/11  keyline 65/20  png 75/18  pnm 178/13
#   safetensors 553/11  stl10 99/22  tar 198/20  tiff 197/25
# When a decoder grows or shrinks a lot, re-measure and update.
floor() {
    case $1 in
    bmp) echo 107 ;;
    cifar) echo 39 ;;
    decode) echo 475 ;;
    exif) echo 22 ;;
    gunzip) echo 55 ;;
    idx) echo 53 ;;
    jpeg) echo 96 ;;
    keyline) echo 45 ;;
    png) echo 52 ;;
    pnm) echo 124 ;;
    safetensors) echo 387 ;;
    stl10) echo 69 ;;
    tar) echo 138 ;;
    tiff) echo 137 ;;
    *) echo "" ;;
    esac
}

# One target: fuzz, then write "<verdict> <runs> <cov> <seconds> <why>" to
# $2/<name>.result and libFuzzer's output to $2/<name>.log.
run_one() { # binary, workdir
    bin=$1
    work=$2
    name=${bin##*/fuzz_}
    res=$work/$name.result
    log=$work/$name.log
    if [ ! -d "$CORPUS/$name" ]; then
        echo "FAIL 0 0 0 no seed corpus in $CORPUS/$name" >"$res"
        return
    fi
    fl=$(floor "$name")
    if [ -z "$fl" ]; then
        echo "FAIL 0 0 0 no coverage floor for $name in tests/fuzz/run.sh" >"$res"
        return
    fi
    tmp=$(mktemp -d) || exit 1
    cp -R "$CORPUS/$name" "$tmp/corpus"
    mkdir -p "$FUZZ_ARTIFACTS"
    start=$(date +%s)
    "$bin" -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_TIME" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$FUZZ_ARTIFACTS/$name-" "$tmp/corpus" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    rm -rf "$tmp"
    # The final stats are printed after a crash too; "Done" only without.
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
    runs=${runs:-0}
    cov=${cov:-0}
    if [ "$rc" -ne 0 ]; then
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "FAIL $runs $cov $secs libFuzzer exit $rc; reproducer: ${art:-none written}" >"$res"
        [ -n "$art" ] && echo "reproduce with: $bin $art" >>"$log"
    elif [ "$runs" -lt "$FUZZ_MIN_RUNS" ]; then
        echo "FAIL $runs $cov $secs only $runs executions (minimum $FUZZ_MIN_RUNS)" >"$res"
    elif [ "$cov" -lt "$fl" ]; then
        echo "FAIL $runs $cov $secs coverage $cov below the floor $fl" >"$res"
    else
        echo "ok $runs $cov $secs floor $fl" >"$res"
    fi
}

if [ "${1:-}" = "--one" ]; then
    run_one "$2" "$3"
    exit 0
fi

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang not found; fuzz targets skipped"
    exit 0
fi
set -- "$FB"/fuzz_*
if [ ! -x "$1" ]; then
    echo "fuzz: no targets in $FB/ (run make fuzz); skipped"
    exit 0
fi

# Sanitizer settings for when this runs on its own (tests/run.sh sets its
# own): leaks count, UBSan stops at the first report with a stack.
: "${ASAN_OPTIONS:=detect_leaks=1}"
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS UBSAN_OPTIONS

if [ -z "${FUZZ_JOBS:-}" ]; then
    FUZZ_JOBS=$(nproc 2>/dev/null || echo 1)
    [ "$FUZZ_JOBS" -gt 4 ] && FUZZ_JOBS=4
fi
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
echo "fuzz: $# targets, up to $FUZZ_RUNS runs or ${FUZZ_TIME}s each, $FUZZ_JOBS at a time"
start=$(date +%s)
for b in "$@"; do printf '%s\n' "$b"; done |
    xargs -P "$FUZZ_JOBS" -I{} sh tests/fuzz/run.sh --one {} "$work"

failed=0
for b in "$@"; do
    name=${b##*/fuzz_}
    if [ -f "$work/$name.result" ]; then
        read -r verdict runs cov secs why <"$work/$name.result"
    else
        verdict=FAIL runs=0 cov=0 secs=0 why="no result"
    fi
    printf '%-4s %-11s runs %8s  cov %5s  %3ss  %s\n' "$verdict" "$name" "$runs" \
        "$cov" "$secs" "$why"
    if [ "$verdict" != ok ]; then
        failed=$((failed + 1))
        log=$work/$name.log
        if [ ! -f "$log" ]; then
            :
        elif grep -q 'ERROR\|runtime error\|contract broken\|deadly signal' "$log"; then
            # The report from its first line, and how to rerun the input.
            sed -n '/ERROR\|runtime error\|contract broken\|deadly signal/,$p' "$log" |
                head -n 40 | sed 's/^/    /'
            grep '^reproduce with:' "$log" | sed 's/^/    /'
        else
            grep 'INITED\|DONE\|^Done' "$log" | sed 's/^/    /'
        fi
    fi
done
echo "fuzz: $(( $(date +%s) - start ))s in all, $failed of $# targets failed"
[ "$failed" -eq 0 ]
