#!/usr/bin/env bash
# Run every benchmark, one after the other (for now: webhook intake on SQLite and PostgreSQL).
#
#   bench/run_all.sh                 # results in $BENCH_OUT (default /tmp/fbslack-bench-results)
#   bench/run_all.sh --seconds 20    # extra arguments go to every benchmark
#
# Benchmarks need a quiet machine: each one warns when other processes take a share of the CPU.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/fbslack-bench-results}
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
status=0

echo "## ingest (SQLite and PostgreSQL)"
"$PY" bench/ingest.py --db both --json "$OUT/ingest-$stamp.json" "$@" || status=$?

echo
echo "JSON results in $OUT"
exit "$status"
