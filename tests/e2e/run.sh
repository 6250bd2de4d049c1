#!/usr/bin/env bash
# run.sh - run every tests/e2e/test_*.py and test_*.sh, one after another.
#
#   CRUST=path/to/crust   binary under test (default $BUILD/crust)
#   BUILD=dir             build directory (default build)
#   E2E_TIMEOUT=seconds   hard limit per test (default 120)
#   E2E_FILTER=substring  run only the tests whose name contains it
#   E2E_SKIP=substring    skip the tests whose name contains it
#   PYTHON=interpreter    for the test_*.py (default: python3, or /usr/bin/python3
#                         when python3 is another install that lacks PyNaCl)
#
# Prints "PASS name" or "FAIL name" per test (a failing test's output
# follows its FAIL line), then "N passed, M failed". Exit 1 if any failed.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1

export BUILD=${BUILD:-build}
CRUST=${CRUST:-$BUILD/crust}
case $CRUST in /*) ;; *) CRUST=$ROOT/$CRUST ;; esac
export CRUST
export PYTHONDONTWRITEBYTECODE=1
LIMIT=${E2E_TIMEOUT:-120}
FILTER=${E2E_FILTER:-}
SKIP=${E2E_SKIP:-}

# the tests need PyNaCl (Debian python3-nacl, see tools/deps.sh): a python3
# earlier in PATH (pyenv, a venv) may not see Debian's packages
if [ -z "${PYTHON:-}" ]; then
	PYTHON=python3
	if ! python3 -c 'import nacl.bindings' 2>/dev/null && [ -x /usr/bin/python3 ] &&
		/usr/bin/python3 -c 'import nacl.bindings' 2>/dev/null; then
		PYTHON=/usr/bin/python3
	fi
fi
export PYTHON
if ! "$PYTHON" -c 'import nacl.bindings' 2>/dev/null; then
	echo "run.sh: $PYTHON cannot import nacl (PyNaCl): install python3-nacl (tools/deps.sh base)" >&2
fi

passed=0
failed=0
failed_names=()
reasons=()

if [ ! -x "$CRUST" ]; then
	echo "run.sh: $CRUST is not an executable (build first: make)" >&2
fi

out=$(mktemp "${TMPDIR:-/tmp}/crust-e2e.XXXXXX")
trap 'rm -f "$out"' EXIT

for t in "$HERE"/test_*.py "$HERE"/test_*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t")
	case $name in *"$FILTER"*) ;; *) continue ;; esac
	[ -n "$SKIP" ] && case $name in *"$SKIP"*) continue ;; esac
	case $name in
	*.py) cmd=("$PYTHON" "$t") ;;
	*) cmd=(bash "$t") ;;
	esac
	# timeout runs the test in its own process group and signals the whole
	# group (the test and any node it started): TERM first, KILL 10 s later
	timeout -k 10 "$LIMIT" "${cmd[@]}" < /dev/null > "$out" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "PASS $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			echo "    (killed: no result within ${LIMIT}s, status $rc)"
		else
			echo "    (exit status $rc)"
		fi
		sed 's/^/    | /' "$out"
		failed=$((failed + 1))
		failed_names+=("$name")
		# the why, kept for the summary: CI logs show only the head and
		# the tail of a long run, and a failing test's output is long
		why=$(grep -m1 -E '^[A-Za-z_.]*(Error|Exception|Timeout)[A-Za-z]*: ' "$out" | cut -c1-400)
		last_ok=$(grep '^ok: ' "$out" | tail -n1 | cut -c1-200)
		reasons+=("$name: ${why:-exit status $rc} (last passed check: ${last_ok:-none})")
	fi
done

if [ $failed -gt 0 ]; then
	echo "failed: ${failed_names[*]}"
	for r in "${reasons[@]}"; do echo "  why: $r"; done
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
