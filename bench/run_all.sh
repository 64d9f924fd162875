#!/usr/bin/env bash
# Run every benchmark, one after the other, and print their figures: webhook intake, Slack
# delivery and memory, each on SQLite and PostgreSQL, then audit search and the chaos run (each
# when its script exists). Each benchmark prints a Markdown table and writes its full JSON to $BENCH_OUT.
#
#   bench/run_all.sh                 # results in $BENCH_OUT (default /tmp/fbslack-bench-results)
#   bench/run_all.sh --seconds 20    # extra arguments go to ingest, deliver and memory
#   DELIVER_ARGS="--events 120 --channels 12" bench/run_all.sh   # options only deliver.py knows
#   MEMORY_ARGS="--events 300" bench/run_all.sh    # likewise MEMORY_ARGS, AUDIT_ARGS, CHAOS_ARGS
#   BENCH_ONLY="memory chaos" bench/run_all.sh      # only these (ingest deliver burst memory audit chaos)
#
# A quick smoke run of the whole set (minutes, not the figures):
#   DELIVER_ARGS="--events 12 --channels 3 --latency-events 10" MEMORY_ARGS="--events 300" \
#       AUDIT_ARGS="--events 20000" CHAOS_ARGS="--events 60 --kills 2 --max-faults-per-message 1" \
#       bench/run_all.sh --seconds 2 --warmup 1 --drain 3
#
# deliver.py and memory.py ignore extra arguments they do not know (such as ingest's --seconds);
# options only they know go in DELIVER_ARGS / MEMORY_ARGS, since ingest.py would refuse them.
# audit_search.py and chaos.py get only AUDIT_ARGS and CHAOS_ARGS.
#
# Benchmarks need a quiet machine: each one warns when other processes take a share of the CPU.
# The exit status is non-zero if any benchmark failed (a leg that could not run, a lost webhook,
# an event not posted exactly once, a round not posted in time, a chaos check that failed).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/fbslack-bench-results}
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
status=0
failed=()
read -r -a deliver_args <<< "${DELIVER_ARGS:-}"
read -r -a memory_args <<< "${MEMORY_ARGS:-}"
read -r -a audit_args <<< "${AUDIT_ARGS:-}"
read -r -a chaos_args <<< "${CHAOS_ARGS:-}"

wanted() {  # wanted NAME: in BENCH_ONLY, or BENCH_ONLY unset
  [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]
}

run() {  # run NAME COMMAND...: keep going after a failure, remember it
  local name=$1
  shift
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    status=$rc
    failed+=("$name (exit $rc)")
  fi
}

if wanted ingest; then
  echo "## ingest (SQLite and PostgreSQL)"
  run ingest "$PY" bench/ingest.py --db both --json "$OUT/ingest-$stamp.json" "$@"
fi

if wanted deliver; then
  echo
  echo "## deliver (SQLite and PostgreSQL)"
  run deliver "$PY" bench/deliver.py --db both --json "$OUT/deliver-$stamp.json" --ignore-unknown \
      ${deliver_args[@]+"${deliver_args[@]}"} "$@"
fi

if wanted burst && [ -f bench/burst.py ]; then
  echo
  echo "## burst (SQLite and PostgreSQL)"
  run burst "$PY" bench/burst.py --db both --json "$OUT/burst-$stamp.json" --ignore-unknown
fi

if wanted memory; then
  echo
  echo "## memory (SQLite and PostgreSQL)"
  run memory "$PY" bench/memory.py --db both --json "$OUT/memory-$stamp.json" --ignore-unknown \
      ${memory_args[@]+"${memory_args[@]}"} "$@"
fi

if wanted audit && [ -f bench/audit_search.py ]; then
  echo
  echo "## audit search (SQLite and PostgreSQL)"
  run audit_search "$PY" bench/audit_search.py --db both --json "$OUT/audit-search-$stamp.json" \
      ${audit_args[@]+"${audit_args[@]}"}
fi

if wanted chaos && [ -f bench/chaos.py ]; then
  echo
  echo "## chaos (SQLite, one server; PostgreSQL, two servers on one database)"
  run chaos-sqlite "$PY" bench/chaos.py --db sqlite --json "$OUT/chaos-sqlite-$stamp.json" \
      ${chaos_args[@]+"${chaos_args[@]}"}
  if "$PY" -c 'import sys; sys.path.insert(0, "bench"); import ingest; sys.exit(1 if ingest.pg_unreachable() else 0)'; then
    run chaos-postgresql "$PY" bench/chaos.py --db postgresql --servers 2 \
        --json "$OUT/chaos-postgresql-$stamp.json" ${chaos_args[@]+"${chaos_args[@]}"}
  else
    echo "PostgreSQL is unreachable: the PostgreSQL chaos run is skipped"
  fi
elif wanted chaos; then
  echo
  echo "## chaos: bench/chaos.py does not exist yet, skipped"
fi

echo
echo "JSON results in $OUT"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
fi
exit "$status"
