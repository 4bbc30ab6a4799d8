#!/usr/bin/env bash
# Queue scale: a deferred backlog of MESSAGES single-recipient messages and what it
# costs (memory, injection rate, scheduler cost, fresh mail, restart recovery).
# Everything runs on loopback; the work is done by bench/scale.py (see its docstring
# and bench/README.md for the figures).
#
# Usage (from the repo root):   bench/scale.sh
#   MESSAGES [1000000]  DOMAINS [1000]  CONNECTIONS [10]  WINDOW [10000]  BURST [20000]
#   BENCH_TMPDIR [/var/tmp]  KEEP [0]  OUTRIDER [<repo>/.venv/bin/outrider]
# e.g. a quick run:  MESSAGES=100000 bench/scale.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$ROOT/.venv/bin/python
if [[ ! -x $PY ]]; then
    python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q -e "$ROOT"
fi
export OUTRIDER=${OUTRIDER:-$ROOT/.venv/bin/outrider}
free=$(df -Pk "${BENCH_TMPDIR:-/var/tmp}" | awk 'NR == 2 { print $4 }')
need=$(( ${MESSAGES:-1000000} * 8 ))  # about 4 KiB of spool file and 4 KiB of log per message
if (( free < need )); then
    echo "scale.sh: ${BENCH_TMPDIR:-/var/tmp} has ${free} KiB free, needs about ${need} KiB" >&2
    exit 1
fi
mkdir -p "$ROOT/bench/out"
out=$ROOT/bench/out/scale-$(date -u +%Y%m%dT%H%M%SZ).txt
nice -n 5 "$PY" "$ROOT/bench/scale.py" | tee "$out"
