#!/usr/bin/env bash
# perf/run.sh - crust bench beside iperf3 and in-process ceilings on loopback,
# medians of repeated runs.
#
#   perf/run.sh [CRUST]          CRUST defaults to build/crust (libcrust.a beside it)
#
# Environment:
#   BENCH_SECONDS=5   measured seconds per run (crust after its 0.5 s warm-up,
#                     iperf3 after -O 1, one omitted second)
#   REPEAT=3          runs of each, interleaved so every scenario sees the same noise
#   HS_CONNS=64       crust bench handshakes: dials in flight (one dialer service each)
#   IDLE_CONNS=1000   crust bench idle: connections held
#   IDLE_SECONDS=2    crust bench idle: seconds they are held
#   OUT=perf/out      results.json, results.md, results.png, raw/ (every run)
#   QUIET_WAIT=60     seconds to wait before each run for an idle machine (0: don't)
#   NOISE_MAX=0.15    a run during which other processes used more than this share
#                     of a cpu is run again (up to RETRIES=2 times); the share is kept
#   CRUST_ARGS=""     extra arguments for every crust bench run
#   CRUST_SOURCE      what was built, for the record (default: git describe --dirty)
#
# Pinning is the same on both sides: receiver/server/listener on cpu 0, sender/client/
# dialers on cpu 1.
# Each iperf3 test gets a one-off server on a free port, stopped by PID on exit.
# Baselines: tcp-bulk against iperf3 single stream (128 KiB writes, its default,
# the same size as crust's messages) and, as the stronger reference, iperf3 -l 1M;
# tcp-msgs against iperf3 -l 64 (one send() per 64-byte message). crust runs each
# scenario twice: sealed records (the default, AES-256-GCM) and --tracer (clear
# records: the same path without the AEAD, comparable with iperf3's plain TCP), plus a
# diagnostic sealed tcp-bulk run with an 8 MiB send queue and glibc's heap trimming off
# (docs/BENCHMARKS.md, "Where the time goes").
# In-process ceilings, built here: perf/aead_speed.c (the record ciphers on one core,
# the baseline of sealed tcp-bulk) and perf/hs_speed.c (the handshake's cpu per role,
# the baseline of crust bench handshakes).
# Then crust bench handshakes (handshakes/s, cpu per 1000) and crust bench idle
# (memory per connection).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
crust=${1:-build/crust}
secs=${BENCH_SECONDS:-5}
repeat=${REPEAT:-3}
out=${OUT:-perf/out}
quiet_wait=${QUIET_WAIT:-60}
noise_max=${NOISE_MAX:-0.15}
retries=${RETRIES:-2}
hs_conns=${HS_CONNS:-64}
idle_conns=${IDLE_CONNS:-1000}
idle_seconds=${IDLE_SECONDS:-2}
crust_args=${CRUST_ARGS:-}
source=${CRUST_SOURCE:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
server_pid=""

die() { echo "perf/run.sh: $*" >&2; exit 1; }

for tool in iperf3 python3 taskset ss cc pkg-config; do
	command -v "$tool" >/dev/null || die "$tool not found (tools/deps.sh bench installs it)"
done
[ -x "$crust" ] || die "$crust not built (make)"
libcrust=$(dirname "$crust")/libcrust.a
[ -r "$libcrust" ] || die "$libcrust not built (make)"
[ "$(nproc)" -ge 2 ] || die "needs 2 cpus (pinning: cpu 0 receives, cpu 1 sends)"

cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The machine's cpu line: user nice system idle iowait irq softirq steal ... (ticks)
cpu_line() { head -1 /proc/stat; }

# Cpu time every task on the machine has had, in ns. The root cgroup's counter is
# exact; /proc/stat's ticks are not: with frequent short sleeps (tcp-msgs' receiver)
# a tick that lands in a busy sliver counts whole, overstating busy time by ~1 cpu-s
# in 5 s. The ticks remain the fallback.
busy_ns() {
	local f=/sys/fs/cgroup/cpuacct/cpuacct.usage
	if [ -r "$f" ]; then
		cat "$f"
	elif [ -r /sys/fs/cgroup/cpu.stat ]; then
		awk '$1 == "usage_usec" { print $2 * 1000 }' /sys/fs/cgroup/cpu.stat
	else
		cpu_line | awk -v hz="$(getconf CLK_TCK)" \
			'{ print ($2 + $3 + $4 + $7 + $8 + $9) * 1e9 / hz }'
	fi
}

# Busy share of all cpus over one second, in percent.
busy_pct() {
	local a b
	a=$(cpu_line)
	sleep 1
	b=$(cpu_line)
	python3 - "$a" "$b" <<'EOF'
import sys
a = [int(x) for x in sys.argv[1].split()[1:]]
b = [int(x) for x in sys.argv[2].split()[1:]]
d = [y - x for x, y in zip(a, b)]
print(round(100 * (1 - (d[3] + d[4]) / max(1, sum(d)))))
EOF
}

# Other work on the machine skews loopback figures: wait (bounded) until it stops.
wait_quiet() {
	local waited=0 busy
	[ "$quiet_wait" -gt 0 ] || return 0
	while :; do
		busy=$(busy_pct)
		[ "$busy" -le 10 ] && return 0
		if [ "$waited" -ge "$quiet_wait" ]; then
			echo "perf/run.sh: machine still ${busy}% busy after ${quiet_wait}s, running anyway" >&2
			return 0
		fi
		waited=$((waited + 1))
	done
}

# iperf ARGS...: one iperf3 test against a one-off server started for it (-1: it
# exits after one test; timeout bounds it should this script die without its traps).
# server_pid is set meanwhile so the EXIT trap can stop it.
iperf() {
	local port rc=0
	port=$(free_port)
	taskset -c 0 timeout $((secs + 30)) iperf3 -s -1 -B 127.0.0.1 -p "$port" \
		>>"$out/raw/iperf3-server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		ss -Hltn "sport = :$port" | grep -q . && break
		kill -0 "$server_pid" 2>/dev/null || die "iperf3 server did not start (see $out/raw/iperf3-server.log)"
		sleep 0.05
	done
	taskset -c 1 iperf3 -c 127.0.0.1 -p "$port" -t "$secs" -O 1 -J "$@" || rc=$?
	[ "$rc" -eq 0 ] || kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" || true
	server_pid=""
	return "$rc"
}

# timed FILE CMD...: run CMD (in this shell) with stdout to FILE.json; FILE.noise gets
# what else ran meanwhile: the machine's busy cpu time less CMD's own (children included).
timed() {
	local file=$1 a b
	shift
	a="$(busy_ns) $(cpu_line)"
	{ TIMEFORMAT='%R %U %S'; time "$@" >"$file.json" 2>&3; } 3>&2 2>"$file.time" || return 1
	b="$(busy_ns) $(cpu_line)"
	python3 - "$a" "$b" "$(tail -1 "$file.time")" "$(getconf CLK_TCK)" >"$file.noise" <<'EOF'
import json, sys
hz = int(sys.argv[4])
a, b = sys.argv[1].split(), sys.argv[2].split()
busy = (float(b[0]) - float(a[0])) / 1e9
steal = (int(b[9]) - int(a[9])) / hz  # the cpu line's 8th number
wall, user, sys_ = map(float, sys.argv[3].split())
own = user + sys_
print(json.dumps({"wall_s": wall, "own_cpu_s": round(own, 3), "busy_cpu_s": round(busy, 3),
                  "steal_s": steal, "other_share": max(0.0, busy - own + steal) / wall if wall else 0}))
EOF
	rm -f "$file.time"
}

# noisy FILE: did other work take more than NOISE_MAX of a cpu during the run?
noisy() {
	python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["other_share"] > float(sys.argv[2]) else 1)' \
		"$1.noise" "$noise_max"
}

# run NAME REP CMD...: wait for quiet, run, retry while noisy.
run() {
	local name=$1 rep=$2 try share
	shift 2
	for try in $(seq 0 "$retries"); do
		wait_quiet
		if [ "$try" -eq 0 ]; then
			echo "== $name run $rep/$repeat" >&2
		else
			echo "== $name run $rep/$repeat, retry $try" >&2
		fi
		timed "$out/raw/$name-$rep" "$@" || die "$name failed (see $out/raw/$name-$rep.json)"
		noisy "$out/raw/$name-$rep" || return 0
		share=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["other_share"], 2))' \
			"$out/raw/$name-$rep.noise")
		echo "perf/run.sh: other processes used $share of a cpu during $name run $rep" >&2
	done
}

# shellcheck disable=SC2086
crust_bench() {
	local scenario=$1
	shift
	"$crust" bench "$scenario" --seconds "$secs" --json-only $crust_args "$@"
}

# The diagnostic run: no fresh pages (glibc keeps freed heap memory, messages never
# mmapped) and a send queue that stays in cache.
crust_bench_tuned() {
	GLIBC_TUNABLES=glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=33554432 \
		crust_bench "$@" --send-queue 8388608
}

# The in-process ceilings: build them against what the bench runs.
build_tools() {
	local root
	root=$(cd "$here/.." && pwd)
	# shellcheck disable=SC2046
	cc -O2 "$here/aead_speed.c" $(pkg-config --cflags libcrypto libsodium) \
		$(pkg-config --libs libcrypto libsodium) -lpthread -o "$out/aead_speed" ||
		die "cannot build perf/aead_speed.c"
	# shellcheck disable=SC2046
	cc -O2 -I"$root/include" -I"$root" $(pkg-config --cflags liburing libsodium libcrypto) \
		"$here/hs_speed.c" "$libcrust" $(pkg-config --libs liburing libsodium libcrypto) \
		-lpthread -o "$out/hs_speed" || die "cannot build perf/hs_speed.c"
}

# aead_speed on cpu 1: the ceiling (warm, every cipher, both sizes), then the
# diagnostics of sealed tcp-bulk's seal (AES-256-GCM, 128 KiB): out of cache, out of
# cache with cpu 0 copying, and on never-written pages with cpu 0 busy.
aead_all() {
	taskset -c 1 "$out/aead_speed" --sizes 131072,65536
	taskset -c 1 "$out/aead_speed" --ciphers evp --sizes 131072 --memory cold
	taskset -c 1 "$out/aead_speed" --ciphers evp --sizes 131072 --memory cold --other-cpu 0 \
		--other-load copy
	taskset -c 1 "$out/aead_speed" --ciphers evp --sizes 131072 --memory fresh --other-cpu 0 \
		--other-load spin
}

mkdir -p "$out/raw"
rm -f "$out"/raw/*.json "$out"/raw/*.jsonl "$out"/raw/*.noise "$out"/raw/iperf3-server.log
build_tools
for rep in $(seq "$repeat"); do
	run iperf3-bulk "$rep" iperf
	run crust-tcp-bulk "$rep" crust_bench tcp-bulk
	run crust-tcp-bulk-tracer "$rep" crust_bench tcp-bulk --tracer
	run crust-tcp-bulk-tuned "$rep" crust_bench_tuned tcp-bulk
	run iperf3-bulk-1m "$rep" iperf -l 1M
	run iperf3-64 "$rep" iperf -l 64
	run crust-tcp-msgs "$rep" crust_bench tcp-msgs
	run crust-tcp-msgs-tracer "$rep" crust_bench tcp-msgs --tracer
	run crust-handshakes "$rep" crust_bench handshakes --conns "$hs_conns"
	run crust-idle "$rep" "$crust" bench idle --conns "$idle_conns" --seconds "$idle_seconds" \
		--json-only
done
wait_quiet
echo "== AEAD ceiling and diagnostics (perf/aead_speed.c, cpu 1)" >&2
aead_all >"$out/raw/aead.jsonl" || die "perf/aead_speed failed"
wait_quiet
echo "== handshake ceiling (perf/hs_speed.c, cpu 1)" >&2
taskset -c 1 "$out/hs_speed" 2 >"$out/raw/hs_speed.jsonl" || die "perf/hs_speed failed"

python3 "$here/summarize.py" "$out" "$repeat" "$secs" "$crust" "$crust_args" "$source"
if command -v gnuplot >/dev/null; then
	gnuplot -e "outdir='$out'" "$here/plot.gp" || echo "perf/run.sh: gnuplot failed, no chart" >&2
else
	echo "perf/run.sh: gnuplot not installed, no chart (tools/deps.sh bench)" >&2
fi
cat "$out/results.md"
