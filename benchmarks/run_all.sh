#!/usr/bin/env bash
# Every benchmark at its realistic sizes, one after another, for a GPU session (device time is scarce: this is
# one call; a device call is limited to 10 min, so run subsets there). Tables go to stdout and to $OUT/benchmarks.md when OUT is set; JSONL rows to benchmarks/results/.
#   bash benchmarks/run_all.sh            # all
#   bash benchmarks/run_all.sh copynce overlap   # a subset
set -uo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(copynce overlap dense models train loader eval eval_search)
out=${OUT:-}
for n in "${names[@]}"; do
  echo "=== bench_$n ($(date -u +%FT%TZ)) ==="
  if [ -n "$out" ]; then
    timeout "${BENCH_TIMEOUT:-300}" python "benchmarks/bench_$n.py" 2>&1 | tee -a "$out/benchmarks.md"
  else
    timeout "${BENCH_TIMEOUT:-300}" python "benchmarks/bench_$n.py"
  fi
  echo "exit $?"
done
