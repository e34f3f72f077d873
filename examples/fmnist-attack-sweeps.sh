#!/bin/sh
# fmnist-attack-sweeps.sh - the sweeps of docs/results.md, each one seed,
# every setting but the swept one as in the default configuration, the same
# (target, target class) pairs throughout. Run after
# `sh examples/fmnist-attack.sh WORKDIR` (the default configuration), with
# the same WORKDIR; reruns resume. Then plots: attack_plots.py WORKDIR OUTDIR.
#
# Usage: sh examples/fmnist-attack-sweeps.sh [WORKDIR] [SWEEP...]
#   SWEEP: poisons, targets, crop, epochs, model (default: all five)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-./fmnist-attack.work}
[ $# -gt 0 ] && shift
sweeps=${*:-poisons targets crop epochs model}
run() { env "$@" sh "$here/fmnist-attack.sh" "$work"; }
for sw in $sweeps; do
    case $sw in
    poisons) # 150 and 500 per target (3% and 10% of D each); the clean encoder is the default's
        run TAG=p150 CLEAN_TAG=default PER_TARGET=150 SEEDS=1
        run TAG=p500 CLEAN_TAG=default PER_TARGET=500 SEEDS=1 ;;
    targets) # one target (the first pair) with the default 50 poisons
        run TAG=t1 CLEAN_TAG=default N_TARGETS=1 SEEDS=1 ;;
    crop) # the crop-scale minimum raised to 0.3 (clean and poisoned retrained)
        run TAG=c03 CROP=0.3,1 SEEDS=1 ;;
    epochs) # 10 epochs (retrained), and 40 continuing the default's 20-epoch encoders
        run TAG=e10 EPOCHS=10 SEEDS=1
        for k in clean poisoned; do
            [ -f "$work/$k-e40-s1.safetensors" ] ||
                cp "$work/$k-default-s1.safetensors" "$work/$k-e40-s1.safetensors"
        done
        run TAG=e40 EPOCHS=40 SEEDS=1 ;;
    model) # a ResNet-18 (CIFAR stem) at width 0.25 instead of `small`
        run TAG=r18w025 ARCH=resnet18 WIDTH=0.25 SEEDS=1 ;;
    p150|p500|t1|c03|e10|e40|r18w025) # one configuration of the above
        case $sw in
        p150) run TAG=p150 CLEAN_TAG=default PER_TARGET=150 SEEDS=1 ;;
        p500) run TAG=p500 CLEAN_TAG=default PER_TARGET=500 SEEDS=1 ;;
        t1) run TAG=t1 CLEAN_TAG=default N_TARGETS=1 SEEDS=1 ;;
        c03) run TAG=c03 CROP=0.3,1 SEEDS=1 ;;
        e10) run TAG=e10 EPOCHS=10 SEEDS=1 ;;
        e40)
            for k in clean poisoned; do
                [ -f "$work/$k-e40-s1.safetensors" ] ||
                    cp "$work/$k-default-s1.safetensors" "$work/$k-e40-s1.safetensors"
            done
            run TAG=e40 EPOCHS=40 SEEDS=1 ;;
        r18w025) run TAG=r18w025 ARCH=resnet18 WIDTH=0.25 SEEDS=1 ;;
        esac ;;
    *) echo "fmnist-attack-sweeps.sh: unknown sweep '$sw'" >&2; exit 2 ;;
    esac
done
