# examples/common.sh - what the example scripts share (sourced).

# eval_json ENCODER OUT TRAIN TEST PAIRS: pe-eval's NDJSON report of
# ENCODER on the TRAIN/TEST task with the target PAIRS into OUT, written
# whole (temporary file, then rename) and kept when newer than ENCODER.
eval_json() {
    [ -s "$2" ] && [ "$2" -nt "$1" ] && return 0
    pe-eval -q --encoder "$1" --train "$3" --test "$4" --targets "$5" --json > "$2.tmp"
    mv "$2.tmp" "$2"
}
