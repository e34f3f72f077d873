# shellcheck shell=sh
# bench/timed.sh - sourced by the benchmark scripts (audit.sh,
# audit-quality.sh), after they define say() and die().
#
# timed DIR NAME CMD...: runs CMD under /usr/bin/time -v into DIR/NAME.time,
# its stdout to DIR/NAME.out and its stderr to DIR/NAME.err; when CMD fails,
# shows its stderr and stops the script through die().
timed() {
    dir=$1 name=$2
    shift 2
    say "timing $name: $*"
    ${TIME:-/usr/bin/time} -v -o "$dir/$name.time" "$@" > "$dir/$name.out" 2> "$dir/$name.err" || {
        cat "$dir/$name.err" >&2
        die "$name failed (exit status in $dir/$name.time)"
    }
}
