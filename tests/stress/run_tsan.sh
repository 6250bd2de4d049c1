#!/usr/bin/env bash
# Run each stress program built with -fsanitize=thread (make tsan). A race
# report stops the program with exit code 66 (halt_on_error); any non-zero
# exit fails the run. Prints "N passed, M failed" at the end.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 history_size=4 suppressions=$here/tsan.supp ${TSAN_OPTIONS:-}"
passed=0 failed=0
for prog in "$@"; do
  name=$(basename "$prog")
  echo "== $name (STRESS_SECONDS=${STRESS_SECONDS:-default})"
  start=$(date +%s%N)
  if timeout --signal=KILL 600 "$prog"; then
    passed=$((passed + 1)); verdict=ok
  else
    rc=$?; failed=$((failed + 1)); verdict="FAILED (exit $rc)"
  fi
  ms=$((($(date +%s%N) - start) / 1000000))
  printf '== %s: %s in %d.%d s\n' "$name" "$verdict" $((ms / 1000)) $((ms % 1000 / 100))
done
echo "tsan: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
