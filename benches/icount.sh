#!/usr/bin/env bash
# Instruction counts per call on the hot paths (callgrind), for comparing commits on a noisy
# shared machine: each case runs SHORT and LONG calls inside `measured` (the only function
# callgrind collects in); (Ir(LONG) - Ir(SHORT)) / (LONG - SHORT) is the cost of one call.
# Needs valgrind. Prints a Markdown table.
# Usage: bash benches/icount.sh [case...]
set -euo pipefail
cd "$(dirname "$0")/.."
short=1000
long=11000
cargo bench -p palisade-benches --bench icount --no-run 2>/dev/null
bin=$(cargo bench -p palisade-benches --bench icount --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*icount[^"]*\)".*/\1/p' | tail -1)
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    mapfile -t cases < <(sed -n '/^const CASES/,/^];/s/^ *"\([a-z0-9_]*\)",/\1/p' benches/icount.rs)
fi
ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='icount::measured' \
        "$bin" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| case | instructions per call |"
echo "|---|---:|"
for case in "${cases[@]}"; do
    a=$(ir "$case" $short)
    b=$(ir "$case" $long)
    echo "| $case | $(( (b - a) / (long - short) )) |"
done
