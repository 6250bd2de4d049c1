#!/usr/bin/env bash
# perf/run.sh - crust bench beside real baselines and the machine's limits on
# loopback, medians of repeated runs; writes perf/out/results.{json,md} and PNGs.
#
#   perf/run.sh [CRUST]          CRUST defaults to build/crust (libcrust.a beside it)
#   make bench                   the quick suite (a few minutes on 2 cores)
#   make bench-full              the longer matrix (BENCH_FULL=1)
#
# What runs (pinning alike everywhere: receiver/server/listener on cpu 0,
# sender/client/dialers on cpu 1), each REPEAT times, interleaved:
#   crust bench tcp-bulk, tcp-msgs (sealed, --tracer), handshakes, idle, udp-pps,
#   pingpong (sealed, --tracer)
#   baselines: iperf3 (TCP bulk, -l 1M, -l 64), sockperf (UDP throughput; TCP and
#   UDP ping-pong, --full-rtt), perf/uv_frame.c (libuv, crust's 4-byte framing:
#   a uv_write per message, and coalesced), perf/enet_bench.c (ENet reliable bulk)
#   limits: perf/aead_speed.c (record cipher on one core), perf/hs_speed.c
#   (handshake crypto), perf/udp_limits.c (sendmmsg loop, UDP GSO/GRO loop)
#   sweeps (throughput vs message size, for the plots): crust tcp-msgs, iperf3 -l,
#   uv_frame; crust udp-pps, udp_limits gso, sockperf throughput
# A baseline that is missing or fails is recorded as unavailable with the reason
# (raw/NAME-N.unavailable) and its rows say so; the run goes on. A crust run that
# fails is recorded the same way, its rows say FAILED, and run.sh exits 1 at the end.
#
# Environment:
#   BENCH_FULL=0      1: the longer matrix (more seconds, repeats and sizes)
#   BENCH_SECONDS     measured seconds per run (quick 2, full 5)
#   REPEAT            runs of each, interleaved (quick 3, full 5)
#   SWEEP_SIZES       message sizes of the TCP sweep (quick "64 1024 16384",
#                     full "16 64 256 1024 4096 16384 65536 131072")
#   UDP_SIZES         datagram sizes of the UDP sweep (quick "64 1200", full "64 256 512 1200 1472")
#   SWEEP_SECONDS     seconds per sweep point (quick 1, full 3); one run each (full: 3)
#   HS_CONNS=64  IDLE_CONNS=1000  IDLE_SECONDS=2
#   OUT=perf/out      results.json, results.md, *.png, raw/ (every run)
#   QUIET_WAIT        seconds to wait before each run for an idle machine (quick 10, full 60)
#   NOISE_MAX=0.15    a run during which other processes used more than this share
#                     of a cpu is run again (up to RETRIES=1 times); the share is kept
#   CRUST_ARGS=""     extra arguments for every crust bench run
#   CRUST_SOURCE      what was built, for the record (default: git describe --dirty)
#
# ---------------------------------------------------------------------------
# HOOKS FOR ROW GROUPS BUILT ELSEWHERE
#
# 1. rudp scenarios: when `crust bench --list` names rudp-bulk / rudp-msgs
#    (tools/bench_rudp.c), they run in the main loop like the other crust
#    scenarios (raw/crust-rudp-bulk-N.json ...) and summarize.py fills the rudp
#    rows (goal: >= 1.0x crust TCP sealed and >= 5x ENet). Until then the rows say
#    "not built yet" and show ENet alone. Their JSON must carry bench.h's traffic
#    block (rx_bytes_s, rx_msgs_s, ...). Search for "HOOK rudp" below.
#
# 2. row scripts, e.g. perf/impaired.sh (impaired paths): every executable in
#    ROW_HOOKS (default: perf/impaired.sh) is run once, after the main loop, as
#        HOOK CRUST OUTDIR         (env: BENCH_FULL, BENCH_SECONDS, REPEAT, OUT)
#    It cleans up after itself, and prints on stdout one JSON object per line, a
#    row of the results table (other lines are kept in raw/ but ignored):
#        {"group": "impaired",                 required: the table section
#         "scenario": "rudp-bulk, 200 Mbit/s bottleneck, 20 ms RTT, 1% loss",
#         "metric": "goodput Mbit/s",          required: what the numbers are
#         "crust": 178.0,                      required: number, or null if it failed
#         "baseline": 150.2, "baseline_is": "iperf3 (CUBIC) on the same wire",
#         "limit": 178.2, "limit_is": "0.9 x bottleneck x (1 - loss)",
#         "goal": ">= 1.0x limit",             text for the goal column
#         "met": true,                         true / false / null (no goal)
#         "unavailable": "reason",             instead of numbers when it could not run
#         "note": "..."}                       optional, shown under the table
#    Its stderr goes to raw/HOOKNAME.log. A hook that exits non-zero or prints no
#    row adds one row "unavailable: HOOKNAME exited N" instead. Search "HOOK rows".
# ---------------------------------------------------------------------------
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
crust=${1:-build/crust}
full=${BENCH_FULL:-0}
if [ "$full" = 1 ]; then
	secs=${BENCH_SECONDS:-5}; repeat=${REPEAT:-5}; quiet_wait=${QUIET_WAIT:-60}
	sweep_sizes=${SWEEP_SIZES:-16 64 256 1024 4096 16384 65536 131072}
	udp_sizes=${UDP_SIZES:-64 256 512 1200 1472}
	sweep_secs=${SWEEP_SECONDS:-3}; sweep_repeat=3
else
	secs=${BENCH_SECONDS:-2}; repeat=${REPEAT:-3}; quiet_wait=${QUIET_WAIT:-10}
	sweep_sizes=${SWEEP_SIZES:-64 1024 16384}
	udp_sizes=${UDP_SIZES:-64 1200}
	sweep_secs=${SWEEP_SECONDS:-1}; sweep_repeat=1
fi
out=${OUT:-perf/out}
noise_max=${NOISE_MAX:-0.15}
retries=${RETRIES:-1}
hs_conns=${HS_CONNS:-64}
idle_conns=${IDLE_CONNS:-1000}
idle_seconds=${IDLE_SECONDS:-2}
crust_args=${CRUST_ARGS:-}
row_hooks=${ROW_HOOKS:-$here/impaired.sh}
source=${CRUST_SOURCE:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
server_pid=""
crust_failed=0
t_start=$(date +%s)

die() { echo "perf/run.sh: $*" >&2; exit 1; }

for tool in python3 taskset ss cc pkg-config; do
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

# Cpu time every task on the machine has had, in ns: the root cgroup's exact
# counter, else /proc/stat's ticks (which overstate busy time with short sleeps).
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

# wait_port PORT PROTO PID: until a server listens (bounded); fails if it died.
wait_port() {
	local flag=-Hltn
	[ "$2" = udp ] && flag=-Hlun
	for _ in $(seq 100); do
		ss "$flag" "sport = :$1" | grep -q . && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# stop_server [SIGNAL]: stop the one-off server by PID.
stop_server() {
	[ -n "$server_pid" ] || return 0
	kill "-${1:-TERM}" "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}

# iperf ARGS...: one iperf3 test against a one-off server (-1: one test; timeout
# bounds it should this script die without its traps).
iperf() {
	local port rc=0
	port=$(free_port)
	taskset -c 0 timeout $((secs + 30)) iperf3 -s -1 -B 127.0.0.1 -p "$port" \
		>>"$out/raw/iperf3-server.log" 2>&1 &
	server_pid=$!
	wait_port "$port" tcp "$server_pid" || { echo "iperf3 server did not start" >&2; stop_server; return 1; }
	taskset -c 1 iperf3 -c 127.0.0.1 -p "$port" -t "$run_secs" -O 1 -J "$@" || rc=$?
	[ "$rc" -eq 0 ] || kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" || true
	server_pid=""
	return "$rc"
}

# sockperf_run MODE ARGS...: sockperf MODE against a one-off server (UDP unless
# --tcp in ARGS); prints the client's report, then the server's, as JSON lines
# {"sockperf": "client"|"server", "text": ...} for summarize.py to parse.
sockperf_run() {
	local mode=$1 port proto=udp rc=0 client server
	shift
	case " $* " in *" --tcp "*) proto=tcp ;; esac
	port=$(free_port)
	server=$(mktemp) client=$(mktemp)
	# shellcheck disable=SC2046
	taskset -c 0 timeout $((run_secs + 30)) sockperf server -i 127.0.0.1 -p "$port" \
		$( [ "$proto" = tcp ] && echo --tcp ) >"$server" 2>&1 &
	server_pid=$!
	wait_port "$port" "$proto" "$server_pid" || { cat "$server" >&2; stop_server; rm -f "$server" "$client"; return 1; }
	taskset -c 1 timeout $((run_secs + 30)) sockperf "$mode" -i 127.0.0.1 -p "$port" \
		-t "$run_secs" "$@" >"$client" 2>&1 || rc=$?
	sleep 0.2
	stop_server INT
	python3 -c 'import json,sys; [print(json.dumps({"sockperf": w, "text": open(f).read()})) for w, f in (("client", sys.argv[1]), ("server", sys.argv[2]))]' \
		"$client" "$server"
	[ "$rc" -eq 0 ] || cat "$client" >&2
	rm -f "$server" "$client"
	return "$rc"
}

# timed FILE CMD...: run CMD (in this shell) with stdout to FILE.json; FILE.noise gets
# what else ran meanwhile: the machine's busy cpu time less CMD's own (children included).
timed() {
	local file=$1 a b rc=0
	shift
	a="$(busy_ns) $(cpu_line)"
	{ TIMEFORMAT='%R %U %S'; time "$@" >"$file.json" 2>"$file.err"; } 2>"$file.time" || rc=$?
	b="$(busy_ns) $(cpu_line)"
	python3 - "$a" "$b" "$(tail -1 "$file.time")" "$(getconf CLK_TCK)" >"$file.noise" <<'EOF'
import json, sys
hz = int(sys.argv[4])
a, b = sys.argv[1].split(), sys.argv[2].split()
busy = (float(b[0]) - float(a[0])) / 1e9
steal = (int(b[9]) - int(a[9])) / hz  # the cpu line's 8th number
try:
    wall, user, sys_ = map(float, sys.argv[3].split())
except ValueError:
    wall = user = sys_ = 0.0
own = user + sys_
print(json.dumps({"wall_s": wall, "own_cpu_s": round(own, 3), "busy_cpu_s": round(busy, 3),
                  "steal_s": steal, "other_share": max(0.0, busy - own + steal) / wall if wall else 0}))
EOF
	rm -f "$file.time"
	return "$rc"
}

# noisy FILE: did other work take more than NOISE_MAX of a cpu during the run?
noisy() {
	python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["other_share"] > float(sys.argv[2]) else 1)' \
		"$1.noise" "$noise_max"
}

# unavailable NAME REP REASON: this run's rows say why there is no figure.
unavailable() {
	rm -f "$out/raw/$1-$2.json"
	printf '%s\n' "$3" >"$out/raw/$1-$2.unavailable"
	echo "perf/run.sh: $1: unavailable: $3" >&2
}

# run NAME REP CMD...: wait for quiet, run, retry while noisy. Never fails the run:
# a failure is recorded (crust-* runs also set crust_failed).
run() {
	local name=$1 rep=$2 try share rc
	shift 2
	for try in $(seq 0 "$retries"); do
		wait_quiet
		if [ "$try" -eq 0 ]; then
			echo "== $name run $rep" >&2
		else
			echo "== $name run $rep, retry $try" >&2
		fi
		rc=0
		timed "$out/raw/$name-$rep" "$@" || rc=$?
		if [ "$rc" -ne 0 ]; then
			case $name in crust-*) crust_failed=1 ;; esac
			unavailable "$name" "$rep" "$(basename "$1") exited $rc: $(tail -c 300 "$out/raw/$name-$rep.err" | tr '\n' ' ')"
			return 0
		fi
		noisy "$out/raw/$name-$rep" || return 0
		share=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["other_share"], 2))' \
			"$out/raw/$name-$rep.noise")
		echo "perf/run.sh: other processes used $share of a cpu during $name run $rep" >&2
	done
}

# need TOOL NAME REP: true if TOOL is there, else the run is unavailable.
need() {
	command -v "$1" >/dev/null && return 0
	unavailable "$2" "$3" "$1 not installed (tools/deps.sh bench could not install it: see its output)"
	return 1
}

# built FILE NAME REP: true if a baseline program was built, else unavailable (with why).
built() {
	[ -x "$out/$1" ] && return 0
	unavailable "$2" "$3" "perf/$1.c did not build: $(tail -c 300 "$out/build-$1.log" 2>/dev/null | tr '\n' ' ')"
	return 1
}

# shellcheck disable=SC2086
crust_bench() {
	local scenario=$1
	shift
	"$crust" bench "$scenario" --seconds "$run_secs" --json-only $crust_args "$@"
}

# The diagnostic run: no fresh pages (glibc keeps freed heap memory, messages never
# mmapped) and a send queue that stays in cache.
crust_bench_tuned() {
	GLIBC_TUNABLES=glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=33554432 \
		crust_bench "$@" --send-queue 8388608
}

has_scenario() { "$crust" bench --list 2>/dev/null | grep -qx "$1"; }

# Build the in-process limits and the baseline drivers against what the bench runs.
# A baseline that does not build is unavailable (its log says why); the limits must.
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
	cc -O2 -pthread "$here/udp_limits.c" -o "$out/udp_limits" >"$out/build-udp_limits.log" 2>&1 ||
		die "cannot build perf/udp_limits.c"
	rm -f "$out/enet_bench" "$out/uv_frame"
	cc -O2 -pthread "$here/enet_bench.c" -lenet -o "$out/enet_bench" >"$out/build-enet_bench.log" 2>&1 ||
		echo "perf/run.sh: perf/enet_bench.c did not build (libenet-dev?)" >&2
	cc -O2 -pthread "$here/uv_frame.c" "$here/tcp_segs.c" -luv -o "$out/uv_frame" \
		>"$out/build-uv_frame.log" 2>&1 || echo "perf/run.sh: perf/uv_frame.c did not build (libuv1-dev?)" >&2
}

# aead_speed on cpu 1: the ceiling (warm, every cipher, both sizes), then the
# diagnostics of sealed tcp-bulk's seal (docs/BENCHMARKS.md).
aead_all() {
	taskset -c 1 "$out/aead_speed" --sizes 131072,65536
	taskset -c 1 "$out/aead_speed" --ciphers evp --sizes 131072 --memory cold
	taskset -c 1 "$out/aead_speed" --ciphers evp --sizes 131072 --memory cold --other-cpu 0 \
		--other-load copy
	taskset -c 1 "$out/aead_speed" --ciphers evp --sizes 131072 --memory fresh --other-cpu 0 \
		--other-load spin
}

# One round of the main matrix (REP = its number).
main_round() {
	local rep=$1
	run_secs=$secs
	run iperf3-bulk "$rep" iperf
	run crust-tcp-bulk "$rep" crust_bench tcp-bulk
	run crust-tcp-bulk-tracer "$rep" crust_bench tcp-bulk --tracer
	run crust-tcp-bulk-tuned "$rep" crust_bench_tuned tcp-bulk
	run iperf3-bulk-1m "$rep" iperf -l 1M
	run iperf3-64 "$rep" iperf -l 64
	run crust-tcp-msgs "$rep" crust_bench tcp-msgs
	run crust-tcp-msgs-tracer "$rep" crust_bench tcp-msgs --tracer
	built uv_frame uv-64 "$rep" && run uv-64 "$rep" "$out/uv_frame" --size 64 \
		--coalesce 1 --seconds "$run_secs"
	built uv_frame uv-64-coalesced "$rep" && run uv-64-coalesced "$rep" "$out/uv_frame" --size 64 \
		--seconds "$run_secs"
	run crust-udp-pps "$rep" crust_bench udp-pps
	run limit-udp-gso "$rep" "$out/udp_limits" --mode gso --size 1200 --seconds "$run_secs"
	run limit-udp-sendmmsg "$rep" "$out/udp_limits" --mode sendmmsg --size 1200 --seconds "$run_secs"
	need sockperf sockperf-udp-tput "$rep" && run sockperf-udp-tput "$rep" sockperf_run throughput \
		-m 1200 --mps=max
	run crust-pingpong "$rep" crust_bench pingpong
	run crust-pingpong-tracer "$rep" crust_bench pingpong --tracer
	need sockperf sockperf-tcp-pp "$rep" && run sockperf-tcp-pp "$rep" sockperf_run ping-pong --tcp \
		-m 64 --full-rtt
	need sockperf sockperf-udp-pp "$rep" && run sockperf-udp-pp "$rep" sockperf_run ping-pong \
		-m 64 --full-rtt
	built enet_bench enet-1200 "$rep" && run enet-1200 "$rep" "$out/enet_bench" --size 1200 \
		--seconds "$run_secs"
	# HOOK rudp: reliable-UDP scenarios, once tools/bench_rudp.c adds them
	if has_scenario rudp-bulk; then
		run crust-rudp-bulk "$rep" crust_bench rudp-bulk
	fi
	if has_scenario rudp-msgs; then
		run crust-rudp-msgs "$rep" crust_bench rudp-msgs
	fi
	run crust-handshakes "$rep" crust_bench handshakes --conns "$hs_conns"
	run crust-idle "$rep" "$crust" bench idle --conns "$idle_conns" --seconds "$idle_seconds" \
		--json-only
}

# Throughput vs message size, for the plots.
sweep_round() {
	local rep=$1 size
	run_secs=$sweep_secs
	for size in $sweep_sizes; do
		run "sweep-crust-tcp-$size" "$rep" crust_bench tcp-msgs --size "$size"
		run "sweep-crust-tcp-tracer-$size" "$rep" crust_bench tcp-msgs --size "$size" --tracer
		run "sweep-iperf3-$size" "$rep" iperf -l "$size"
		built uv_frame "sweep-uv-$size" "$rep" && run "sweep-uv-$size" "$rep" "$out/uv_frame" \
			--size "$size" --coalesce 1 --seconds "$run_secs"
		built uv_frame "sweep-uv-coalesced-$size" "$rep" && run "sweep-uv-coalesced-$size" "$rep" \
			"$out/uv_frame" --size "$size" --seconds "$run_secs"
	done
	for size in $udp_sizes; do
		run "sweep-crust-udp-$size" "$rep" crust_bench udp-pps --size "$size"
		run "sweep-limit-gso-$size" "$rep" "$out/udp_limits" --mode gso --size "$size" \
			--seconds "$run_secs"
		need sockperf "sweep-sockperf-$size" "$rep" && run "sweep-sockperf-$size" "$rep" \
			sockperf_run throughput -m "$size" --mps=max
	done
}

# HOOK rows: every executable row script prints JSON rows (contract at the top).
row_hooks_run() {
	local hook name rc
	: >"$out/raw/hook-rows.jsonl"
	for hook in $row_hooks; do
		[ -x "$hook" ] || continue
		name=$(basename "$hook" .sh)
		wait_quiet
		echo "== row hook $name" >&2
		rc=0
		BENCH_FULL=$full BENCH_SECONDS=$secs REPEAT=$repeat OUT=$out \
			"$hook" "$crust" "$out" >"$out/raw/hook-$name.out" 2>"$out/raw/hook-$name.log" || rc=$?
		python3 - "$name" "$rc" "$out/raw/hook-$name.out" >>"$out/raw/hook-rows.jsonl" <<'EOF'
import json, sys
name, rc, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
for line in open(path, errors="replace"):
    try:
        row = json.loads(line)
    except ValueError:
        continue
    if isinstance(row, dict) and {"group", "scenario", "metric"} <= row.keys() and (
            "crust" in row or "unavailable" in row):
        row["hook"] = name
        rows.append(row)
if rc != 0 or not rows:
    rows.append({"group": name, "scenario": name, "metric": "-", "crust": None, "hook": name,
                 "unavailable": f"{name} exited {rc}" + ("" if rows else ", no rows")
                 + f" (see raw/hook-{name}.log)"})
for row in rows:
    print(json.dumps(row))
EOF
	done
}

mkdir -p "$out/raw"
rm -f "$out"/raw/* "$out"/*.png "$out"/*.dat
build_tools
for rep in $(seq "$repeat"); do
	main_round "$rep"
done
for rep in $(seq "$sweep_repeat"); do
	sweep_round "$rep"
done
row_hooks_run
wait_quiet
echo "== AEAD ceiling and diagnostics (perf/aead_speed.c, cpu 1)" >&2
aead_all >"$out/raw/aead.jsonl" || echo "perf/run.sh: perf/aead_speed failed" >&2
wait_quiet
echo "== handshake ceiling (perf/hs_speed.c, cpu 1)" >&2
taskset -c 1 "$out/hs_speed" 2 >"$out/raw/hs_speed.jsonl" || echo "perf/run.sh: perf/hs_speed failed" >&2

elapsed=$(($(date +%s) - t_start))
python3 "$here/summarize.py" "$out" "$repeat" "$secs" "$crust" "$crust_args" "$source" \
	"$sweep_repeat" "$sweep_sizes" "$udp_sizes" "$full" "$elapsed" || die "summarize.py failed"
if command -v gnuplot >/dev/null; then
	gnuplot -e "outdir='$out'" "$here/plot.gp" || echo "perf/run.sh: gnuplot failed, no charts" >&2
else
	echo "perf/run.sh: gnuplot not installed, no charts (tools/deps.sh bench)" >&2
fi
cat "$out/results.md"
[ "$crust_failed" -eq 0 ] || die "a crust bench run failed (rows marked FAILED; see $out/raw/*.unavailable)"
