#!/bin/sh
# Runs the benchmarks in order, from the project root, with the project's venv.
# A missed target prints MISSED and is not a failure; this exits non-zero only if a
# benchmark errored (and still runs the rest).
set -u
cd "$(dirname "$0")/.." || exit 2
PY=.venv/bin/python
status=0
for name in ack_latency scheduler_tick toggle_storm footprint; do
    echo "=== bench/$name.py"
    "$PY" "bench/$name.py" || { echo "=== bench/$name.py ERRORED"; status=1; }
    echo
done
exit "$status"
