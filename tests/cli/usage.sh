# Invalid options and arguments: exit 2, empty stdout, a message naming
# the problem; --help and --version succeed.
. "$(dirname "$0")/lib.sh"
for p in pe-ingest pe-ls pe-export pe-rm pe-craft pe-inject pe-eval pe-audit; do
    expect_rc 0 $p --help
    out_has "usage: $p"
    expect_rc 0 $p --version
    out_has "$p "
    usage_error $p --no-such-option
    err_has "unknown option '--no-such-option'"
done
usage_error pe-ingest --channels 2 x
err_has "--channels takes 1 or 3"
usage_error pe-ingest --size 64 x
usage_error pe-ingest --size 0x5 x
usage_error pe-ingest --max-side -3 x
usage_error pe-ingest --threads 0 x
usage_error pe-ingest --timeout abc x
usage_error pe-ingest --format gif x
usage_error pe-ingest --set '.hidden' x
usage_error pe-ingest --set 'a/b' x
usage_error pe-ingest --append x
usage_error pe-ingest --size 8x8 --max-side 9 x
usage_error pe-ingest --set
err_has "needs a value"
usage_error pe-ls --label 3
usage_error pe-ls --sets --stats
usage_error pe-ls extra
usage_error pe-export
usage_error pe-export -o d a b
usage_error pe-rm
usage_error pe-rm 'bad/name'
# a bad number names its option, however it was written
usage_error pe-train --set x --lr abc
err_has "--lr: 'abc'"
usage_error pe-train --set x --temperature=-1
err_has "--temperature: '-1'"
usage_error pe-train --set x -b 0
err_has "-b: 0"
# nothing was created by any of these
[ -e "$PE_STORE" ] && fail "a usage error created the store"
exit 0
