#!/usr/bin/env bash
# run.sh - run every tests/e2e/test_*.py and test_*.sh, one or a few at a time.
#
#   CRUST=path/to/crust   binary under test (default $BUILD/crust)
#   BUILD=dir             build directory (default build)
#   E2E_TIMEOUT=seconds   hard limit per test (default 120)
#   E2E_FILTER=substring  run only the tests whose name contains it
#   E2E_SKIP="a.py b.sh"  leave these tests out (by file name)
#   E2E_JOBS=n            run up to n tests at once (default 1); a test with the
#                         line "# e2e: alone" in its first five runs by itself, last
#   PYTHON=interpreter    for the test_*.py (default: python3, or /usr/bin/python3
#                         when python3 is another install that lacks PyNaCl)
#
# Prints "PASS name (seconds)" or "FAIL name (seconds)" per test as each
# ends (a failing test's output follows its FAIL line), the slowest five,
# then "N passed, M failed". Exit 1 if any failed.
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
JOBS=${E2E_JOBS:-1}

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
durations=()

if [ ! -x "$CRUST" ]; then
	echo "run.sh: $CRUST is not an executable (build first: make)" >&2
fi

outdir=$(mktemp -d "${TMPDIR:-/tmp}/crust-e2e.XXXXXX")
trap 'rm -rf "$outdir"' EXIT

# one test, its output to $outdir/NAME.out, its status and seconds to NAME.rc
run_one() {
	local t=$1 name cmd start rc
	name=$(basename "$t")
	case $name in
	*.py) cmd=("$PYTHON" "$t") ;;
	*) cmd=(bash "$t") ;;
	esac
	start=$EPOCHREALTIME
	# timeout runs the test in its own process group and signals the whole
	# group (the test and any node it started): TERM first, KILL 10 s later
	timeout -k 10 "$LIMIT" "${cmd[@]}" < /dev/null > "$outdir/$name.out" 2>&1
	rc=$?
	echo "$rc $start $EPOCHREALTIME" > "$outdir/$name.rc"
}

report() {
	local name=$1 rc t0 t1 secs out why last_ok
	read -r rc t0 t1 < "$outdir/$name.rc"
	out=$outdir/$name.out
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	durations+=("$secs $name")
	if [ "$rc" -eq 0 ]; then
		echo "PASS $name (${secs} s)"
		passed=$((passed + 1))
		return
	fi
	echo "FAIL $name (${secs} s)"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
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
}

selected=()
alone=()
for t in "$HERE"/test_*.py "$HERE"/test_*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t")
	case $name in *"$FILTER"*) ;; *) continue ;; esac
	skip=0
	for s in $SKIP; do [ "$name" = "$s" ] && skip=1; done
	[ $skip -eq 0 ] || continue
	# a test that floods loopback (or cannot bear a flood) says "# e2e: alone"
	# in its head: it runs after the others, with nothing beside it
	if head -n 5 "$t" | grep -q '^# e2e: alone'; then
		alone+=("$t")
	else
		selected+=("$t")
	fi
done

# up to $JOBS tests at once: every test makes its own namespaces or binds
# ephemeral loopback ports, so they do not meet; most of a test's time is
# waiting on timers, so two or three share two cores without starving
declare -A running=()
for t in "${selected[@]}"; do
	while [ ${#running[@]} -ge "$JOBS" ]; do
		wait -n
		for pid in "${!running[@]}"; do
			if [ -e "$outdir/${running[$pid]}.rc" ]; then
				wait "$pid"
				report "${running[$pid]}"
				unset "running[$pid]"
			fi
		done
	done
	run_one "$t" &
	running[$!]=$(basename "$t")
done
for pid in "${!running[@]}"; do
	wait "$pid"
	report "${running[$pid]}"
done
for t in "${alone[@]}"; do
	run_one "$t"
	report "$(basename "$t")"
done

if [ ${#durations[@]} -gt 0 ]; then
	echo "slowest: $(printf '%s\n' "${durations[@]}" | sort -rn | head -n 5 | awk '{printf "%s %ss  ", $2, $1}')"
fi
if [ $failed -gt 0 ]; then
	echo "failed: ${failed_names[*]}"
	for r in "${reasons[@]}"; do echo "  why: $r"; done
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
