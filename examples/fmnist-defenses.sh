#!/bin/sh
# fmnist-defenses.sh - the defense table of docs/results.md: the attack
# protocol's poisoned set (examples/fmnist-attack.sh) trained with each
# defense, for SimCLR and MoCo v2, and evaluated as the protocol evaluates
# (the same probe, pairs and normalisation): clean accuracy of the defended
# encoder (PA) and attack success per (pair, seed), with the clean encoder
# of the same method beside it.
#
# Rows (NAME: what the poisoned set is trained with):
#   none                 nothing
#   filter-SCAN          the set minus pe-audit --scan SCAN --against test's
#                        suspects (SCAN in FILTERS; --against test as the
#                        audit protocol ran every scan), applied with
#                        pe-inject --remove
#   crop-0.3, crop-0.5   --crop-scale 0.3,1 and 0.5,1
#   local-0.3, local-0.6 --crop-mode local --local-scale 0.3,1 and 0.6,1
#   dp-0.5, dp-1         --dp-clip 1 --dp-noise 0.5 and 1 (SimCLR only)
#   early-5, early-10    --epochs 5 and 10 (a stopping rule fixed in advance)
#   post-N               the undefended poisoned encoder fine-tuned
#                        (--init, POST_EPOCHS epochs) on N clean training
#                        images outside D and the reference pool (POST)
# Every row is trained for each seed of SEEDS; finished checkpoints and
# evaluations are kept, so a rerun resumes. A row that changes the training
# (crop, local, dp, early, post) also gets its clean twin, the same training
# on D alone (post: the clean encoder fine-tuned the same way), so that the
# attack's pull is measured against an encoder that differs only by the
# poisons (def-METHOD-twin-ROW-sSEED); the twin of none and of the filters is
# the clean encoder.
#
# Usage: [VAR=value ...] sh examples/fmnist-defenses.sh [WORKDIR]
#   WORKDIR: fmnist-attack.sh's work folder, after its craft stage.
# Variables: SEEDS ["1 2 3"], METHODS ["simclr moco"], ROWS [all of the
#   above], FILTERS ["composite recurring against"], POST ["1000 5000
#   20000"], TWINS [the rows; "" for none], POST_EPOCHS [5], EPOCHS [20], N_PRE [5000], PER_TARGET [50],
#   THREADS [pe-train's default], EVAL_TRAIN [train], EVAL_TEST [test]
#   (pe-eval's labeled sets: smaller ones for a quick check of the script),
#   TRAIN_OPTS [] (more pe-train options for every run, e.g. --max-steps 2
#   for that check).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-./fmnist-attack.work}
work=$(cd "$work" && pwd)
export PE_STORE=${PE_STORE:-$work/store.lmdb}
SEEDS=${SEEDS:-1 2 3}
METHODS=${METHODS:-simclr moco}
FILTERS=${FILTERS:-composite recurring against}
POST=${POST:-1000 5000 20000}
POST_EPOCHS=${POST_EPOCHS:-5}
EPOCHS=${EPOCHS:-20}
N_PRE=${N_PRE:-5000}
PER_TARGET=${PER_TARGET:-50}
THREADS=${THREADS:-}
EVAL_TRAIN=${EVAL_TRAIN:-train}
EVAL_TEST=${EVAL_TEST:-test}
pre=pre-$N_PRE
poisoned=pre-$N_PRE+default-t10x$PER_TARGET-c1
pairs=$work/pairs-default-t10.tsv
clean1=$work/clean-default-s1.safetensors
rows_default="none"
for f in $FILTERS; do rows_default="$rows_default filter-$f"; done
rows_default="$rows_default crop-0.3 crop-0.5 local-0.3 local-0.6 dp-0.5 dp-1 early-5 early-10"
for n in $POST; do rows_default="$rows_default post-$n"; done
ROWS=${ROWS:-$rows_default}
TWINS=${TWINS-$ROWS}

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
have_set() { pe-ls --sets 2>/dev/null | cut -f1 | grep -qxF "$1"; }
meta() { head -c 65536 "$1" | tr -d '\000' | grep -ao "\"$2\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }
for f in "$pairs" "$clean1"; do
    [ -s "$f" ] || { log "no $f: run examples/fmnist-attack.sh first"; exit 1; }
done
have_set "$poisoned" || { log "no set $poisoned: run examples/fmnist-attack.sh first"; exit 1; }
mean=$(meta "$clean1" mean)
std=$(meta "$clean1" std)
common="--arch small --size 28 --batch 256 --mean $mean --std $std"
[ -n "$THREADS" ] && common="$common -j $THREADS"
common="$common ${TRAIN_OPTS:-}"

# the training images outside D and the reference pool, for post-processing
post_set() { # N -> set name
    name=clean-post-$1
    if ! have_set "$name"; then
        sed -n "$((N_PRE + 1)),50000p" "$work/train.keys" | head -n "$1" |
            pe-inject -q --from train --to "$name" --keep
    fi
    echo "$name"
}

filter_set() { # scan -> set name
    name=$poisoned-minus-$1
    if ! have_set "$name"; then
        # --against test for every scan, as the audit protocol ran them
        # (docs/results.md): the attack's targets are evaluation images;
        # composite and against use it, recurring does not
        pe-audit -q --set "$poisoned" --scan "$1" --against test | cut -f1 | LC_ALL=C sort -u > "$work/$name.keys"
        pe-inject -q --from "$poisoned" --to "$name" --remove --missing-ok < "$work/$name.keys"
        log "$name: $(wc -l < "$work/$name.keys") suspects removed"
    fi
    echo "$name"
}

train() { # out set epochs [options] (sh has no locals: t_ names, not the loop's)
    t_out=$1 t_set=$2 t_ep=$3
    shift 3
    if [ -f "$t_out" ] && [ "$(meta "$t_out" epochs_done)" -ge "$t_ep" ] 2>/dev/null; then return 0; fi
    t_resume=""
    [ -f "$t_out" ] && t_resume="--resume $t_out"
    log "training $t_out on $t_set ($t_ep epochs) $*"
    pe-train --set "$t_set" $common --epochs "$t_ep" -o "$t_out" --log "$t_out.log" $t_resume "$@"
}

. "$here/common.sh"
evaluate() { eval_json "$1" "$2" "$EVAL_TRAIN" "$EVAL_TEST" "$pairs"; } # encoder out

# one row's training from SRC: the poisoned set, or D for the row's clean
# twin; post-processing fine-tunes BASE (the undefended poisoned encoder,
# or the clean one for the twin)
train_row() { # out row src base
    r_out=$1 r_row=$2 r_src=$3 r_base=$4
    case $r_row in
    none) train "$r_out" "$r_src" "$EPOCHS" $mopt --seed "$s" ;;
    filter-*) train "$r_out" "$(filter_set "${r_row#filter-}")" "$EPOCHS" $mopt --seed "$s" ;;
    crop-*) train "$r_out" "$r_src" "$EPOCHS" $mopt --seed "$s" --crop-scale "${r_row#crop-},1" ;;
    local-*) train "$r_out" "$r_src" "$EPOCHS" $mopt --seed "$s" --crop-mode local \
        --local-scale "${r_row#local-},1" ;;
    dp-*) train "$r_out" "$r_src" "$EPOCHS" $mopt --seed "$s" --dp-clip 1 --dp-noise "${r_row#dp-}" ;;
    early-*) train "$r_out" "$r_src" "${r_row#early-}" $mopt --seed "$s" ;;
    post-*) # a resumed run continues from its own checkpoint, not from --init
        r_init="--init $r_base"
        [ -f "$r_out" ] && r_init=""
        train "$r_out" "$(post_set "${r_row#post-}")" "$POST_EPOCHS" $mopt --seed "$s" $r_init ;;
    *) log "unknown row $r_row"; exit 2 ;;
    esac
}

for m in $METHODS; do
    mopt="--method $m"
    for s in $SEEDS; do
        base=$work/def-$m-clean-s$s.safetensors
        train "$base" "$pre" "$EPOCHS" $mopt --seed "$s"
        evaluate "$base" "$work/def-$m-clean-s$s.json"
        und=$work/def-$m-none-s$s.safetensors
        for row in $ROWS; do
            case $m:$row in moco:dp-*) continue ;; esac # DP-SGD is SimCLR's only
            case $row in post-*) train "$und" "$poisoned" "$EPOCHS" $mopt --seed "$s" ;; esac
            out=$work/def-$m-$row-s$s.safetensors
            train_row "$out" "$row" "$poisoned" "$und"
            evaluate "$out" "$work/def-$m-$row-s$s.json"
            # the clean twin: the same training without the poisons
            case " $TWINS " in *" $row "*) ;; *) continue ;; esac
            case $row in none | filter-*) continue ;; esac # their twin is the clean encoder
            twin=$work/def-$m-twin-$row-s$s.safetensors
            train_row "$twin" "$row" "$pre" "$base"
            evaluate "$twin" "$work/def-$m-twin-$row-s$s.json"
        done
    done
done
/usr/bin/python3 "$here/defense_table.py" "$work" "$METHODS" "$SEEDS" "$ROWS"
