#!/usr/bin/env bash
# Run every benchmark, one after the other: webhook intake, then Slack delivery, each on SQLite
# and PostgreSQL.
#
#   bench/run_all.sh                 # results in $BENCH_OUT (default /tmp/fbslack-bench-results)
#   bench/run_all.sh --seconds 20    # extra arguments go to every benchmark
#   DELIVER_ARGS="--events 120 --channels 12" bench/run_all.sh   # options only deliver.py knows
#
# bench/deliver.py ignores extra arguments it does not know (such as ingest's --seconds); options
# only it knows go in DELIVER_ARGS, since ingest.py would refuse them.
#
# Benchmarks need a quiet machine: each one warns when other processes take a share of the CPU.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/fbslack-bench-results}
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
status=0
read -r -a deliver_args <<< "${DELIVER_ARGS:-}"

echo "## ingest (SQLite and PostgreSQL)"
"$PY" bench/ingest.py --db both --json "$OUT/ingest-$stamp.json" "$@" || status=$?

echo
echo "## deliver (SQLite and PostgreSQL)"
"$PY" bench/deliver.py --db both --json "$OUT/deliver-$stamp.json" --ignore-unknown \
    ${deliver_args[@]+"${deliver_args[@]}"} "$@" || status=$?

echo
echo "JSON results in $OUT"
exit "$status"
