#!/bin/sh
# Training-step benchmark: pe's step (bench/train_step.c) beside PyTorch's
# (../shared/bench/torch_simclr_step.py) with the same architecture, input
# size, batch and threads, in the same invocation, plus the OpenBLAS SGEMM
# roof and peak memory of both. Run from the repository root after `make`:
#   sh bench/train.sh            (STEPS=5 THREADS=2 by default)
set -eu
cd "$(dirname "$0")/.."
STEPS=${STEPS:-5}
THREADS=${THREADS:-$(nproc)}
REF=../shared/bench/torch_simclr_step.py
out=bench/out
mkdir -p $out
CFLAGS_BENCH="-O2 -D_GNU_SOURCE -Ilib -Iformats -Ikernels"
LIBS=$(cat build/ldlibs) # what make linked the programs with
cc $CFLAGS_BENCH bench/train_step.c build/libpe.a $LIBS -o $out/train_step
cc $CFLAGS_BENCH bench/sgemm_roof.c build/libpe.a $LIBS -o $out/sgemm_roof
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
echo "threads: $THREADS, steps: $STEPS (after one warm-up step)"
$out/sgemm_roof 1024 1
$out/sgemm_roof 1024 "$THREADS"
# PyTorch's resident memory after start-up: the interpreter with the
# reference script's imports (its peak less this is what its steps added)
torch_start=$(/usr/bin/python3 -c 'import os, sys, time, torch, torch.nn, torch.nn.functional, torchvision
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:")][0])')
echo "torch start-up RSS $torch_start KiB (python3 with torch and torchvision imported)"
for cfg in "small 28 1 256" "resnet18 32 3 128"; do
    set -- $cfg
    echo "--- $1 ${2}x${2}x${3} batch $4"
    /usr/bin/time -f "pe peak RSS %M KiB" -o $out/pe.time $out/train_step "$1" "$2" "$3" "$4" "$STEPS" "$THREADS" > $out/pe.out
    cat $out/pe.out $out/pe.time
    THREADS=$THREADS /usr/bin/time -f "torch peak RSS %M KiB" -o $out/torch.time /usr/bin/python3 $REF "$1" "$2" "$3" "$4" "$STEPS"
    cat $out/torch.time
    pe_start=$(sed -n 's/^pe start-up RSS \([0-9]*\) KiB/\1/p' $out/pe.out)
    pe_peak=$(sed -n 's/^pe peak RSS \([0-9]*\) KiB/\1/p' $out/pe.time)
    torch_peak=$(sed -n 's/^torch peak RSS \([0-9]*\) KiB/\1/p' $out/torch.time)
    echo "memory added by the steps (peak - start-up): pe $(( (pe_peak - pe_start) / 1024 )) MiB, torch $(( (torch_peak - torch_start) / 1024 )) MiB"
done
