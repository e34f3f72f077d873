#!/bin/sh
# Installs the Debian packages pe needs to build, test and run its demo.
# Idempotent: only packages not yet installed are asked for; run as root
# (CI and a fresh machine) or with sudo available.
#   scripts/install-deps.sh          build + test + demo packages (the test
#                                    packages include headless Chromium and
#                                    selenium, for pe-audit's report test)
#   scripts/install-deps.sh bench    also the benchmark references
set -eu

pkgs="make gcc pkg-config
libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libtiff-dev
liblmdb-dev lmdb-utils libxxhash-dev zlib1g-dev libdeflate-dev
dataset-fashion-mnist
clang libclang-rt-14-dev
python3 python3-xxhash python3-pil python3-numpy python3-lmdb
python3-torch python3-torchvision libopenblas-dev
chromium chromium-driver python3-selenium"

if [ "${1:-}" = bench ]; then
    pkgs="$pkgs hyperfine"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "install-deps: need root to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
