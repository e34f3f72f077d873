#!/bin/sh
# Runs the test suites and prints one line per test and a closing
# "N passed, N failed" line; exits nonzero when any test failed.
#   tests/run.sh                 everything make test runs
#   tests/run.sh unit|cli [DIR]  one suite against one build dir
# Each unit test is a binary whose exit status is its verdict; each CLI test
# is a shell script run with BIN (the programs' folder) and T (a fresh temp
# folder) in its environment.
set -u
cd "$(dirname "$0")/.." || exit 1
pass=0
fail=0
skip=0
failed=""

run_one() { # name, command...
    name=$1
    shift
    log=$(mktemp)
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1))
        echo "PASS $name ($(( $(date +%s) - start ))s)"
    elif [ $rc -eq 77 ]; then # the test cannot run here; its last line says why
        skip=$((skip + 1))
        echo "SKIP $name: $(tail -n 1 "$log")"
    else
        fail=$((fail + 1))
        failed="$failed $name"
        echo "FAIL $name"
        tail -n 40 "$log" | sed 's/^/    /'
    fi
    rm -f "$log"
}

unit() { # builddir
    for t in "$1"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "unit:$(basename "$t")@$1" "$t"
    done
}

cli() { # builddir
    for t in tests/cli/*.sh; do
        [ -f "$t" ] || continue
        [ "$(basename "$t")" = lib.sh ] && continue
        tmp=$(mktemp -d)
        run_one "cli:$(basename "$t" .sh)@$1" env BIN="$PWD/$1/bin" T="$tmp" \
            PE_STORE="$tmp/default.lmdb" sh "$t"
        rm -rf "$tmp"
    done
}

sanitizer_env() {
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98
    TSAN_OPTIONS=halt_on_error=1:exitcode=97
    export ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS
}

sanitizer_env
# the unit and CLI suites on the CPU whatever the machine has: their
# byte-identity checks assume it (the gpu suite names --device cuda)
PE_DEVICE=cpu
export PE_DEVICE
case "${1:-all}" in
unit) unit "${2:-build}" ;;
cli) cli "${2:-build}" ;;
all)
    unit build
    # the fixture comparison must be able to fail: a perturbed weight breaks it
    [ -x build/tests/test_fixture ] &&
        run_one "unit:test_fixture-detects-perturbation" sh -c '! PE_FIXTURE_PERTURB=1 build/tests/test_fixture 2>/dev/null'
    [ -x build/tests/test_moco ] &&
        run_one "unit:test_moco-detects-perturbation" sh -c '! PE_FIXTURE_PERTURB=1 build/tests/test_moco 2>/dev/null'
    cli build
    # the loader refuses a file that is not pe's CUDA backend, with a message
    run_one "unit:test_cuda-refuses-foreign-library" env PE_CUDA_LIB="$PWD/build/tests/test_store" build/tests/test_cuda
    # the GPU checks beyond test_cuda: each skips with its reason without a GPU
    run_one "gpu:test_fixture" env PE_TEST_DEVICE=cuda build/tests/test_fixture
    run_one "gpu:train" env BIN="$PWD/build/bin" sh tests/gpu/train.sh
    unit build-asan
    cli build-asan
    [ -x build-tsan/bin/pe-ingest ] && run_one "tsan:ingest" sh tests/tsan-ingest.sh build-tsan/bin
    [ -f tests/fuzz/run.sh ] && run_one "fuzz" sh tests/fuzz/run.sh
    ;;
gpu)
    # make test-gpu: the GPU tests on build/, a missing GPU is a failure
    export PE_REQUIRE_GPU=1
    run_one "gpu:test_cuda" build/tests/test_cuda
    run_one "gpu:test_fixture" env PE_TEST_DEVICE=cuda build/tests/test_fixture
    run_one "gpu:test_fixture-detects-perturbation" sh -c '! PE_TEST_DEVICE=cuda PE_FIXTURE_PERTURB=1 build/tests/test_fixture 2>/dev/null'
    run_one "gpu:train" env BIN="$PWD/build/bin" sh tests/gpu/train.sh
    ;;
*) echo "usage: tests/run.sh [unit|cli [BUILDDIR]|gpu]" >&2; exit 2 ;;
esac
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
