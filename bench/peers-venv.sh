#!/bin/sh
# bench/peers-venv.sh - the virtualenv of pe-audit's peers (cleanvision and
# imagededup, from PyPI) for bench/audit.sh and bench/audit-quality.sh, which
# run it; made once and reused. Prints the venv's python on stdout.
#
#   sh bench/peers-venv.sh            (AUDIT_VENV, default bench/.venv)
#
# The venv sees Debian's packages (--system-site-packages): numpy, Pillow,
# torch and torchvision (scripts/install-deps.sh) are reused, and pinned to
# the installed versions so that pip does not replace them (a numpy 2 would
# break Debian's torch; Pillow 9.4 is the resampling pe follows). imagededup
# is installed with --no-deps, since its requirements name torch and
# torchvision, which pip would fetch anew (gigabytes); its other
# requirements are listed here. Versions: cleanvision 0.3.7, imagededup
# 0.3.3.post2 (the newest on PyPI when this was written); the rest as pip
# resolves them against the pins.
set -eu
cd "$(dirname "$0")/.."
VENV=${AUDIT_VENV:-bench/.venv}
SYS=/usr/bin/python3
CV=cleanvision==0.3.7
ID=imagededup==0.3.3.post2

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import cleanvision, imagededup.methods' 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
$SYS -c 'import numpy, PIL, torch, torchvision' 2>/dev/null || {
    echo "peers-venv: $SYS lacks numpy, PIL, torch or torchvision: sh scripts/install-deps.sh" >&2
    exit 1
}
echo "peers-venv: creating $VENV (cleanvision, imagededup; about a minute)" >&2
rm -rf "$VENV"
$SYS -m venv --system-site-packages "$VENV" || {
    echo "peers-venv: python3 -m venv failed (apt-get install python3-venv)" >&2
    exit 1
}
cons=$VENV/constraints.txt
$SYS -c 'import numpy, PIL; print("numpy==" + numpy.__version__); print("pillow==" + PIL.__version__)' > "$cons"
"$VENV/bin/pip" install -q -c "$cons" "$CV" scikit-learn PyWavelets matplotlib tqdm >&2
"$VENV/bin/pip" install -q --no-deps "$ID" >&2
"$VENV/bin/python" -c 'import cleanvision, imagededup.methods' >&2
echo "$VENV/bin/python"
