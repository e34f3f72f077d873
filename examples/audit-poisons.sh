#!/bin/sh
# pe-audit's poison scans against the attack's poisons, in two settings
# (docs/results.md, "The audit against the poisons"):
#
#  plain   the attack protocol's poisoned set as examples/fmnist-attack.sh
#          made it: 5,000 clean 28x28 images and 500 composites (56x28 or
#          28x56) of 10 test-image targets and references from outside
#          the set. The image size alone finds every poison here.
#  blind   size tells nothing: the same 5,000 clean images resized, by a
#          seeded hash of their key, to one of SIZES (squares, 2:1, 1:2
#          and 3:2 shapes), and adaptive poisons for the same targets and
#          references, drawn over the same sizes (pe-craft --size, the
#          layout following the shape) with every copy of the target
#          perturbed (pe-craft --perturb PERTURB: a crop, a resample, a
#          colour shift and a JPEG round trip).
#
# Each setting is audited with --truth (pe-craft's provenance) and
# --against test (the evaluation images, where the targets come from);
# audit-SETTING.json holds the NDJSON, and examples/audit_table.py prints
# the table. With ASR=1 the blind recipe is also made at 500 poisons per
# target into the plain 5,000 images (set pre-5000+blind-t10x500) for
# examples/fmnist-attack.sh to train on (POISONED_SET), so the attack
# success rate of such poisons stands beside the plain ones'.
#
#   examples/fmnist-attack.sh --seeds... (at least to STOP_AFTER=craft)
#   examples/audit-poisons.sh [WORK]
#
# WORK is fmnist-attack.sh's work folder (default ./fmnist-attack.work);
# everything here goes into its store, under new set names.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-./fmnist-attack.work}
work=$(cd "$work" && pwd)
export PE_STORE=${PE_STORE:-$work/store.lmdb}
N_PRE=${N_PRE:-5000}
PER_TARGET=${PER_TARGET:-50}
SIZES=${SIZES:-28x28 36x36 56x28 28x56 42x28 28x42}
PERTURB=${PERTURB:-crop=2,resample=0.1,color=12,jpeg=75}
SEED=${SEED:-7}
pairs=${PAIRS:-$work/pairs-default-t10.tsv}
refs=${REFS:-$work/refs-default-t10.tsv}
plain=${PLAIN_SET:-pre-$N_PRE+default-t10x$PER_TARGET-c1}
pre=pre-$N_PRE
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
have_set() { pe-ls --sets 2>/dev/null | cut -f1 | grep -qxF "$1"; }
for f in "$pairs" "$refs"; do
    [ -s "$f" ] || { log "no $f: run examples/fmnist-attack.sh (to STOP_AFTER=craft) first"; exit 1; }
done
have_set "$plain" || { log "no set $plain: run examples/fmnist-attack.sh first"; exit 1; }

rank() { # seed: KEY... lines -> HASH<TAB>line (the hash of fmnist-attack.sh)
    awk -F'\t' -v seed="$1" 'BEGIN { hex = "0123456789abcdef" }
    {
        h = seed % 2147483647
        for (i = 1; i <= 32; i++)
            h = (h * 131 + index(hex, substr($1, i, 1))) % 2147483647
        printf "%010d\t%s\n", h, $0
    }'
}
nsizes=$(echo $SIZES | wc -w)
layout_of() { # WxH -> the layouts that keep the shape
    w=${1%x*} h=${1#*x}
    if [ "$w" -gt "$h" ]; then echo lr; elif [ "$w" -lt "$h" ]; then echo tb; else echo lr,tb; fi
}

# adaptive poisons: per target PER over the sizes, as evenly as they go
craft_blind() { # per-target out-lines
    per=$1 out=$2
    : > "$out"
    i=0
    for sz in $SIZES; do
        n=$(( per / nsizes + (i < per % nsizes ? 1 : 0) ))
        i=$((i + 1))
        [ "$n" -gt 0 ] || continue
        pe-craft -q --targets "$pairs" --references "$refs" --labels train --per-target "$n" \
            --seed "$((SEED + i))" --layouts "$(layout_of "$sz")" --size "$sz" \
            --perturb "$PERTURB" >> "$out"
    done
}

# 1. the varied clean set
varied=$pre-varied
if ! have_set "$varied"; then
    tmp=$work/varied.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    pe-ls --set "$pre" | cut -f1 | rank "$SEED" > "$tmp/ranked"
    i=0
    for sz in $SIZES; do
        awk -F'\t' -v n="$nsizes" -v i="$i" '$1 % n == i { print $2 }' "$tmp/ranked" > "$tmp/keys-$i"
        pe-export -o "$tmp/png-$i" --set "$pre" --flat - < "$tmp/keys-$i" > /dev/null
        append=""
        [ $i -gt 0 ] && append=--append
        pe-ingest -q --set "$varied" $append --unlabeled --size "$sz" "$tmp/png-$i" > /dev/null
        i=$((i + 1))
    done
    rm -rf "$tmp"
    log "set $varied: $(pe-ls --set "$varied" | wc -l) images in $nsizes sizes"
fi

# 2. adaptive poisons into it
blind=$varied+blind-t10x$PER_TARGET
if ! have_set "$blind"; then
    craft_blind "$PER_TARGET" "$work/$blind.lines"
    pe-inject -q --from "$varied" --to "$blind" < "$work/$blind.lines"
    log "set $blind: $(wc -l < "$work/$blind.lines") poisons"
fi

# 3. the audits (every scan but the embedding ones, which need an encoder)
for setting in plain:$plain blind:$blind; do
    name=${setting%%:*} set_=${setting#*:}
    out=$work/audit-$name.json
    [ -s "$out" ] && continue
    log "auditing $set_"
    start=$(date +%s)
    pe-audit --set "$set_" --truth --json --all --against test > "$out.tmp" 2> "$work/audit-$name.err"
    mv "$out.tmp" "$out"
    log "audit of $set_: $(( $(date +%s) - start )) s"
done
/usr/bin/python3 "$here/audit_table.py" "$work/audit-plain.json" "$work/audit-blind.json"

# 4. optionally, the adaptive recipe at 500 per target in the plain set,
# for the attack success rate (train with fmnist-attack.sh)
if [ "${ASR:-0}" = 1 ]; then
    asr=$pre+blind-t10x500
    if ! have_set "$asr"; then
        craft_blind 500 "$work/$asr.lines"
        pe-inject -q --from "$pre" --to "$asr" < "$work/$asr.lines"
    fi
    log "set $asr ready: TAG=blind-p500 CLEAN_TAG=default POISONED_SET=$asr SEEDS=1 examples/fmnist-attack.sh $work"
fi
