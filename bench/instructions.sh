#!/usr/bin/env bash
# Instructions per request through the HTTP pipeline, counted by callgrind (repeatable on a busy box).
# Usage: bench/instructions.sh [N] [--bare]   — runs profile_pipeline.py with N and 0 requests, prints the difference / N.
set -euo pipefail
cd "$(dirname "$0")"
n=${1:-2000}
BARE=${2:-}
PY=$(python3 -c 'import sys; print(sys.executable)')
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PY" profile_pipeline.py -n "$1" --repeat 1 ${BARE} 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
with=$(count "$n"); without=$(count 0)
echo "$(( (with - without) / (2 * n) )) instructions/request (n=$n)"
