#!/bin/sh
# Runs the benchmarks in order, from the project root, with the project's venv, then prints
# every target line again (OK or MISSED, with its ratio or figure) as one summary.
# A missed target prints MISSED and is not a failure; this exits non-zero only if a
# benchmark errored (and still runs the rest).
set -u
cd "$(dirname "$0")/.." || exit 2
PY=.venv/bin/python
out=$(mktemp)
rc=$(mktemp)
trap 'rm -f "$out" "$rc"' EXIT
status=0
for name in ack_latency scheduler_tick toggle_storm footprint; do
    echo "=== bench/$name.py" | tee -a "$out"
    { "$PY" "bench/$name.py" 2>&1; echo "$?" >"$rc"; } | tee -a "$out"
    if [ "$(cat "$rc")" != 0 ]; then
        echo "=== bench/$name.py ERRORED" | tee -a "$out"
        status=1
    fi
    echo
done
echo "=== summary: every target"
grep -E '^=== bench/|: OK|MISSED' "$out"
exit "$status"
