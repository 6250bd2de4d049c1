#!/usr/bin/env bash
# perf/impaired.sh - bulk transfer over an impaired path: two namespaces joined by
# crust-wire (tests/lab/wirelab) with a 200 Mbit/s bottleneck (drop-tail queue of one
# bandwidth-delay product, 20 ms at the rate) each way and 10 ms delay each way (20 ms
# RTT). Scenarios: random loss 0 / 0.1 / 1 / 5 % in both directions, and 2 % reordering
# (both directions, each held back 1 ms) without loss. Baseline: iperf3, kernel TCP
# CUBIC; also kernel TCP BBR (this machine's default congestion control) for reference,
# as BBR is what crust's reliable UDP uses by default. crust: `crust bench rudp-bulk` across the same wire when it can run its two
# ends in two namespaces (see below); otherwise its rows say "unavailable" and why.
#
#   perf/impaired.sh [CRUST]      CRUST defaults to build/crust; needs root, iperf3
#
# Environment:
#   IMPAIRED_SECONDS=5   measured seconds per run (iperf3 omits one more, -O 1)
#   IMPAIRED_RATE=200    bottleneck, Mbit/s;  IMPAIRED_DELAY=10  one-way delay, ms
#   IMPAIRED_LOSSES="0 0.1 1 5"   loss scenarios, %;  IMPAIRED_REORDER=2  %
#   IMPAIRED_SEED=1      the wire's seed (the same losses for every implementation)
#   IMPAIRED_CCS="cubic bbr"  kernel congestion controls iperf3 runs with (-C)
#   CRUST_WIRE           the wire (default build/crust-wire beside CRUST)
#
# stdout: one JSON object per run and line:
#   {"group":"impaired","scenario":"loss1","impl":"iperf3-cubic","goodput_mbps":..,
#    "loss_pct":1,"reorder_pct":0,"rtt_ms":20,"bottleneck_mbps":200,"seconds":5,
#    "retransmits":..,"wire":{"a2b":{...},"b2a":{...}}}
# ("wire": the wire's counters for the run). A row that could not be measured has
# "goodput_mbps":null, "status":"unavailable" and a "reason" (every row, when the lab
# cannot run at all: not root, no wire built; the exit status is then still 0).
# Progress on stderr.
#
# crust rudp-bulk across the wire needs `crust bench rudp-bulk` to run one end per
# namespace: `--listen ADDR:PORT` (the receiver, in side b) and `--connect ADDR:PORT`
# (the sender, in side a), each with --seconds S and --json-only, the receiver's JSON
# giving goodput_mbps (or rx_bytes_per_s). Detected from `crust bench --help`.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
crust=${1:-$root/build/crust}
secs=${IMPAIRED_SECONDS:-5}
rate=${IMPAIRED_RATE:-200}
delay=${IMPAIRED_DELAY:-10}
losses=${IMPAIRED_LOSSES:-0 0.1 1 5}
reorder=${IMPAIRED_REORDER:-2}
seed=${IMPAIRED_SEED:-1}
ccs=${IMPAIRED_CCS:-cubic bbr}
export CRUST_WIRE=${CRUST_WIRE:-$(dirname "$crust")/crust-wire}
wirelab=$root/tests/lab/wirelab
rtt=$(awk -v d="$delay" 'BEGIN { print 2 * d }')
port=5201
lab=""

log() { echo "perf/impaired.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] || die "IMPAIRED_SECONDS '$secs' must be a whole number >= 1"

cleanup() {
	[ -n "$lab" ] && "$wirelab" down "$lab" >/dev/null 2>&1
	lab=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One output row. $1 scenario, $2 impl, $3 loss, $4 reorder, $5 JSON fields to add
# (starting with a comma) or empty.
row() {
	printf '{"group":"impaired","scenario":"%s","impl":"%s","loss_pct":%s,"reorder_pct":%s,"rtt_ms":%s,"bottleneck_mbps":%s,"seconds":%s%s}\n' \
		"$1" "$2" "$3" "$4" "$rtt" "$rate" "$secs" "$5"
}

unavailable() { # scenario impl loss reorder reason
	local reason=${5//\"/\'}
	row "$1" "$2" "$3" "$4" ",\"goodput_mbps\":null,\"status\":\"unavailable\",\"reason\":\"$reason\""
}

# Starts lab $1 with the scenario's impairments (loss $2, reorder $3).
lab_up() {
	lab=$1
	local opts=(--seed "$seed" --delay "$delay" --rate "$rate" --queue 20ms)
	[ "$2" != 0 ] && opts+=(--loss "$2")
	[ "$3" != 0 ] && opts+=(--reorder "$3")
	"$wirelab" up "$lab" "${opts[@]}" >/dev/null || { lab=""; return 1; }
}

# Stops the lab and prints the wire's counters (a JSON object).
lab_down() {
	"$wirelab" down "$lab" | grep '^{' | tail -n1
	lab=""
}

# The field named $2 (a dotted path) of JSON document $1, or "null".
json_get() {
	python3 -c 'import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("null" if v is None else v)' "$1" "$2" 2>/dev/null || echo null
}

run_iperf3() { # scenario loss reorder congestion-control
	local name=$1 loss=$2 re=$3 cc=$4 impl=iperf3-$4 out srv wire
	if ! command -v iperf3 >/dev/null; then
		unavailable "$name" "$impl" "$loss" "$re" "iperf3 not installed (tools/deps.sh bench)"
		return
	fi
	if ! grep -qw "$cc" /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null &&
		! modprobe "tcp_$cc" 2>/dev/null; then
		unavailable "$name" "$impl" "$loss" "$re" "the kernel has no TCP congestion control $cc"
		return
	fi
	lab_up "impaired-$$" "$loss" "$re" || { unavailable "$name" "$impl" "$loss" "$re" "wirelab up failed"; return; }
	local b
	b=$("$wirelab" addr "$lab" b)
	"$wirelab" exec "$lab" b iperf3 -s -1 -B "$b" -p "$port" >/dev/null 2>&1 &
	srv=$!
	# the server is up when its port listens
	for _ in $(seq 50); do
		"$wirelab" exec "$lab" b ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	out=$("$wirelab" exec "$lab" a iperf3 -c "$b" -p "$port" -t "$secs" -O 1 -C "$cc" -J 2>&1)
	wait "$srv" 2>/dev/null
	wire=$(lab_down)
	local bps retr err
	bps=$(json_get "$out" end.sum_received.bits_per_second)
	retr=$(json_get "$out" end.sum_sent.retransmits)
	err=$(json_get "$out" error)
	if [ "$bps" = null ]; then
		unavailable "$name" "$impl" "$loss" "$re" "iperf3 gave no result: ${err:-$(echo "$out" | tail -n1)}"
		return
	fi
	local mbps
	mbps=$(awk -v b="$bps" 'BEGIN { printf "%.1f", b / 1e6 }')
	log "$name $impl: $mbps Mbit/s, $retr retransmits"
	row "$name" "$impl" "$loss" "$re" ",\"goodput_mbps\":$mbps,\"retransmits\":$retr,\"wire\":${wire:-null}"
}

# Why crust cannot run rudp-bulk across the wire, or nothing if it can.
crust_rudp_missing() {
	[ -x "$crust" ] || { echo "$crust not built (make)"; return; }
	local help
	help=$("$crust" bench --help 2>&1)
	grep -q 'rudp-bulk' <<<"$help" || { echo "crust bench has no rudp-bulk scenario yet"; return; }
	grep -q -- '--listen' <<<"$help" && grep -q -- '--connect' <<<"$help" ||
		echo "crust bench rudp-bulk cannot run its two ends in two namespaces (no --listen/--connect)"
}

run_crust() { # scenario loss reorder
	local name=$1 loss=$2 re=$3 impl=crust-rudp why
	why=$(crust_rudp_missing)
	if [ -n "$why" ]; then
		unavailable "$name" "$impl" "$loss" "$re" "$why"
		return
	fi
	lab_up "impaired-$$" "$loss" "$re" || { unavailable "$name" "$impl" "$loss" "$re" "wirelab up failed"; return; }
	local b rx srv out wire
	b=$("$wirelab" addr "$lab" b)
	rx=$(mktemp)
	timeout $((secs + 30)) "$wirelab" exec "$lab" b "$crust" bench rudp-bulk \
		--listen "$b:$port" --seconds "$secs" --json-only > "$rx" 2>/dev/null &
	srv=$!
	sleep 0.5
	out=$(timeout $((secs + 30)) "$wirelab" exec "$lab" a "$crust" bench rudp-bulk \
		--connect "$b:$port" --seconds "$secs" --json-only 2>&1)
	local rc=$?
	wait "$srv" 2>/dev/null
	wire=$(lab_down)
	local res mbps
	res=$(grep '^{' "$rx" | tail -n1)
	rm -f "$rx"
	mbps=$(json_get "$res" goodput_mbps)
	if [ "$mbps" != null ]; then
		mbps=$(awk -v m="$mbps" 'BEGIN { printf "%.1f", m }')
	else
		mbps=$(json_get "$res" rx_bytes_per_s)
		[ "$mbps" != null ] && mbps=$(awk -v b="$mbps" 'BEGIN { printf "%.1f", b * 8 / 1e6 }')
	fi
	if [ "$mbps" = null ] || [ $rc -ne 0 ]; then
		unavailable "$name" "$impl" "$loss" "$re" "crust bench rudp-bulk failed (sender status $rc): $(echo "$out" | tail -n1)"
		return
	fi
	log "$name $impl: $mbps Mbit/s"
	row "$name" "$impl" "$loss" "$re" ",\"goodput_mbps\":$mbps,\"wire\":${wire:-null}"
}

# What keeps every run from happening; then each row says so and the caller's run goes on.
blocked() {
	[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)"; return; }
	command -v python3 >/dev/null || { echo "python3 not found"; return; }
	[ -x "$CRUST_WIRE" ] || echo "$CRUST_WIRE not built (make lab)"
}
why=$(blocked)
# shellcheck disable=SC2086 # $ccs is a list
if [ -n "$why" ]; then
	log "$why"
	for loss in $losses; do
		for impl in $(printf 'iperf3-%s ' $ccs) crust-rudp; do unavailable "loss$loss" "$impl" "$loss" 0 "$why"; done
	done
	if [ "$reorder" != 0 ]; then
		for impl in $(printf 'iperf3-%s ' $ccs) crust-rudp; do unavailable "reorder$reorder" "$impl" 0 "$reorder" "$why"; done
	fi
	exit 0
fi

log "bottleneck $rate Mbit/s, RTT $rtt ms, $secs s per run, seed $seed"
for loss in $losses; do
	for cc in $ccs; do run_iperf3 "loss$loss" "$loss" 0 "$cc"; done
	run_crust "loss$loss" "$loss" 0
done
if [ "$reorder" != 0 ]; then
	for cc in $ccs; do run_iperf3 "reorder$reorder" 0 "$reorder" "$cc"; done
	run_crust "reorder$reorder" 0 "$reorder"
fi
