#!/usr/bin/env bash
# perf/impaired.sh - bulk transfer over an impaired path: two namespaces joined by
# crust-wire (tests/lab/wirelab) with a 200 Mbit/s bottleneck (drop-tail queue of one
# bandwidth-delay product, 20 ms at the rate) each way and 10 ms delay each way (20 ms
# RTT). Scenarios: random loss 0 / 0.1 / 1 / 5 % in both directions, and 2 % reordering
# (both directions, each held back 1 ms) without loss. crust: `crust bench rudp-bulk`,
# one end in each namespace. Baseline: iperf3, kernel TCP CUBIC; kernel TCP BBR (this
# machine's default) beside it for reference, as BBR is what crust's reliable UDP uses
# by default.
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
# stdout: rows of perf/run.sh's results table (the JSON row contract at the top of
# perf/run.sh), two per scenario:
#   goodput: crust = rudp-bulk goodput at the receiver (Mbit/s), baseline = iperf3 CUBIC
#     on the same wire, limit = 0.9 x bottleneck x (1 - loss), goal ">= 1.0x limit"; the
#     note has iperf3 BBR's figure and what the wire dropped;
#   resent: crust = bytes the sender resent (udp_retx_bytes) in its measured window
#     (after the 0.5 s warm-up, as iperf3 -O 1 leaves out its first second) per byte
#     the receiver got at its measured rate over that window, in %; the note has the
#     figure over the whole connection, startup included; baseline = iperf3 CUBIC's
#     retransmitted segments x MSS per byte received; limit = loss + 1 %, goal "<= limit".
# A figure that could not be measured is null, and "unavailable" or the note says why
# (every row, when the lab cannot run at all: not root, no wire built; the exit status
# is then still 0). stderr: progress, and each run's record as a line "run: {JSON}"
# (with the wire's counters and, for crust, both ends' JSON).
#
# crust's two ends: `crust bench rudp-bulk --listen ADDR:PORT` (the receiver, side b)
# and `--connect ADDR:PORT` (the sender, side a), each with --seconds S and --json-only;
# the receiver's JSON gives goodput_mbps and totals.rx_bytes, the sender's
# udp.sender.udp_retx_bytes (its window) and totals.sender.udp_retx_bytes.
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

# One run's record, to stderr. $1 scenario, $2 impl, $3 JSON fields (starting with a comma).
record() {
	echo "run: {\"scenario\":\"$1\",\"impl\":\"$2\",\"rtt_ms\":$rtt,\"bottleneck_mbps\":$rate,\"seconds\":$secs$3}" >&2
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

# iperf3 across the scenario's wire. Sets I_MBPS, I_RESENT (% of bytes received), I_WHY.
run_iperf3() { # scenario loss reorder congestion-control
	local name=$1 loss=$2 re=$3 cc=$4 out srv wire
	I_MBPS=null I_RESENT=null I_WHY=""
	if ! command -v iperf3 >/dev/null; then
		I_WHY="iperf3 not installed (tools/deps.sh bench)"
		return
	fi
	if ! grep -qw "$cc" /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null &&
		! modprobe "tcp_$cc" 2>/dev/null; then
		I_WHY="the kernel has no TCP congestion control $cc"
		return
	fi
	lab_up "impaired-$$" "$loss" "$re" || { I_WHY="wirelab up failed"; return; }
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
	local bps retr err rxb mss
	bps=$(json_get "$out" end.sum_received.bits_per_second)
	rxb=$(json_get "$out" end.sum_received.bytes)
	retr=$(json_get "$out" end.sum_sent.retransmits)
	mss=$(json_get "$out" start.tcp_mss_default)
	err=$(json_get "$out" error)
	if [ "$bps" = null ]; then
		I_WHY="iperf3 gave no result: ${err:-$(echo "$out" | tail -n1)}"
		return
	fi
	[ "$mss" = null ] && mss=1448
	I_MBPS=$(awk -v b="$bps" 'BEGIN { printf "%.1f", b / 1e6 }')
	[ "$retr" != null ] && [ "$rxb" != null ] &&
		I_RESENT=$(awk -v r="$retr" -v m="$mss" -v b="$rxb" 'BEGIN { printf "%.3f", (b > 0 ? 100 * r * m / b : 0) }')
	log "$name iperf3-$cc: $I_MBPS Mbit/s, $retr retransmits ($I_RESENT % of the bytes)"
	record "$name" "iperf3-$cc" ",\"goodput_mbps\":$I_MBPS,\"retransmits\":$retr,\"resent_pct\":$I_RESENT,\"wire\":${wire:-null}"
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

# crust rudp-bulk across the scenario's wire. Sets C_MBPS, C_RESENT and C_RESENT_ALL
# (% of bytes received: in the window, over the whole connection), C_WIRE (the wire's
# counters), C_WHY.
run_crust() { # scenario loss reorder
	local name=$1 loss=$2 re=$3
	C_MBPS=null C_RESENT=null C_RESENT_ALL=null C_WIRE=null
	C_WHY=$(crust_rudp_missing)
	[ -n "$C_WHY" ] && return
	lab_up "impaired-$$" "$loss" "$re" || { C_WHY="wirelab up failed"; return; }
	local b rx srv out
	b=$("$wirelab" addr "$lab" b)
	rx=$(mktemp)
	timeout $((secs + 30)) "$wirelab" exec "$lab" b "$crust" bench rudp-bulk \
		--listen "$b:$port" --seconds "$secs" --json-only > "$rx" 2>/dev/null &
	srv=$!
	sleep 0.5
	out=$(timeout $((secs + 30)) "$wirelab" exec "$lab" a "$crust" bench rudp-bulk \
		--connect "$b:$port" --seconds "$secs" --json-only 2>&1)
	local rc=$?
	wait "$srv"
	local rx_rc=$?
	C_WIRE=$(lab_down)
	[ -n "$C_WIRE" ] || C_WIRE=null
	local res tx mbps retx got wretx wsecs
	res=$(grep '^{' "$rx" | tail -n1)
	rm -f "$rx"
	tx=$(echo "$out" | grep '^{' | tail -n1)
	mbps=$(json_get "$res" goodput_mbps)
	if [ "$mbps" = null ] || [ $rc -ne 0 ] || [ $rx_rc -ne 0 ]; then
		C_WHY="crust bench rudp-bulk failed (sender status $rc, receiver $rx_rc): $(echo "$out" | tail -n1)"
		return
	fi
	C_MBPS=$(awk -v m="$mbps" 'BEGIN { printf "%.1f", m }')
	retx=$(json_get "$tx" totals.sender.udp_retx_bytes)
	got=$(json_get "$res" totals.rx_bytes)
	[ "$retx" != null ] && [ "$got" != null ] &&
		C_RESENT_ALL=$(awk -v r="$retx" -v b="$got" 'BEGIN { printf "%.3f", (b > 0 ? 100 * r / b : 0) }')
	wretx=$(json_get "$tx" udp.sender.udp_retx_bytes)
	wsecs=$(json_get "$tx" seconds)
	[ "$wretx" != null ] && [ "$wsecs" != null ] &&
		C_RESENT=$(awk -v r="$wretx" -v s="$wsecs" -v m="$mbps" 'BEGIN { b = m * 1e6 / 8 * s; printf "%.3f", (b > 0 ? 100 * r / b : 0) }')
	log "$name crust-rudp: $C_MBPS Mbit/s, resent $C_RESENT % of the bytes received in the window ($C_RESENT_ALL % over the whole connection)"
	record "$name" crust-rudp ",\"goodput_mbps\":$C_MBPS,\"resent_pct\":$C_RESENT,\"resent_pct_connection\":$C_RESENT_ALL,\"receiver\":${res:-null},\"sender\":${tx:-null},\"wire\":$C_WIRE"
}

# The scenario's two rows (goodput, resent) from C_* (crust), I_* (iperf3 CUBIC) and
# BBR_* (iperf3 BBR), passed in the environment.
rows() { # loss reorder
	C_MBPS=$C_MBPS C_RESENT=$C_RESENT C_RESENT_ALL=$C_RESENT_ALL C_WHY=$C_WHY C_WIRE=$C_WIRE I_MBPS=$I_MBPS \
	I_RESENT=$I_RESENT I_WHY=$I_WHY BBR_MBPS=$BBR_MBPS BBR_WHY=$BBR_WHY \
		python3 - "$1" "$2" "$rate" "$rtt" <<'EOF'
import json, os, sys
loss, reorder, rate, rtt = (float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]),
                            sys.argv[4])
env = os.environ


def num(k):
    return None if env.get(k, "null") in ("", "null") else float(env[k])


crust, cubic, bbr = num("C_MBPS"), num("I_MBPS"), num("BBR_MBPS")
resent, resent_all, cubic_resent = num("C_RESENT"), num("C_RESENT_ALL"), num("I_RESENT")
try:
    wire = json.loads(env.get("C_WIRE") or "null")
except ValueError:
    wire = None
what = "%g%% loss" % loss if not reorder else "%g%% reordering" % reorder
scen = "rudp-bulk, %g Mbit/s bottleneck, %s ms RTT, %s" % (rate, rtt, what)
notes = ["iperf3 BBR on the same wire: " + ("%.1f Mbit/s" % bbr if bbr is not None else
                                           "unavailable (%s)" % env.get("BBR_WHY"))]
if cubic is None:
    notes.append("iperf3 CUBIC unavailable: %s" % env.get("I_WHY"))
if wire:
    d = wire["a2b"]
    notes.append("crust's run, wire a2b: %d packets, %d lost at random, %d dropped by the "
                 "bottleneck queue, %d reordered" % (d["rx"], d["dropped_loss"],
                                                     d["dropped_queue"], d["reordered"]))
limit = 0.9 * rate * (1 - loss / 100)
row = {"group": "impaired", "scenario": scen, "metric": "goodput Mbit/s", "crust": crust,
       "baseline": cubic, "baseline_is": "iperf3, kernel TCP CUBIC, on the same wire",
       "limit": round(limit, 1), "limit_is": "0.9 x bottleneck x (1 - loss)",
       "goal": ">= 1.0x limit", "met": None if crust is None else crust >= limit,
       "note": "; ".join(notes)}
if crust is None:
    row["unavailable"] = env.get("C_WHY") or "no figure"
print(json.dumps(row))
row = {"group": "impaired", "scenario": scen, "metric": "resent / delivered bytes %",
       "crust": resent, "baseline": cubic_resent,
       "baseline_is": "iperf3 CUBIC: retransmitted segments x MSS / bytes received",
       "limit": loss + 1, "limit_is": "loss + 1 %", "goal": "<= limit",
       "met": None if resent is None else resent <= loss + 1,
       "note": "crust: the sender's udp_retx_bytes in its measured window (after a 0.5 s "
               "warm-up; iperf3 -O 1 leaves out its first second) / the bytes the receiver got "
               "at its measured rate over that window; over the whole connection, startup "
               "included: " + ("%.2f %%" % resent_all if resent_all is not None else "unknown")}
if resent is None:
    row["unavailable"] = env.get("C_WHY") or "no udp_retx_bytes in the sender's JSON"
print(json.dumps(row))
EOF
}

# One scenario: iperf3 with each congestion control, crust, then its rows.
scenario() { # tag loss reorder
	local cc c_mbps=null c_resent=null c_why="not run (IMPAIRED_CCS)"
	BBR_MBPS=null BBR_WHY="not run (IMPAIRED_CCS)"
	for cc in $ccs; do
		run_iperf3 "$1" "$2" "$3" "$cc"
		case $cc in
		cubic) c_mbps=$I_MBPS c_resent=$I_RESENT c_why=$I_WHY ;;
		bbr) BBR_MBPS=$I_MBPS BBR_WHY=$I_WHY ;;
		esac
	done
	I_MBPS=$c_mbps I_RESENT=$c_resent I_WHY=$c_why
	run_crust "$1" "$2" "$3"
	rows "$2" "$3"
}

# What keeps every run from happening; then each row says so and the caller's run goes on.
blocked() {
	[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)"; return; }
	command -v python3 >/dev/null || { echo "python3 not found"; return; }
	[ -x "$CRUST_WIRE" ] || echo "$CRUST_WIRE not built (make lab)"
}
why=$(blocked)
if [ -n "$why" ]; then
	log "$why"
	C_MBPS=null C_RESENT=null C_RESENT_ALL=null C_WIRE=null C_WHY=$why I_MBPS=null I_RESENT=null I_WHY=$why
	BBR_MBPS=null BBR_WHY=$why
	for loss in $losses; do rows "$loss" 0; done
	[ "$reorder" != 0 ] && rows 0 "$reorder"
	exit 0
fi

log "bottleneck $rate Mbit/s, RTT $rtt ms, $secs s per run, seed $seed"
for loss in $losses; do
	scenario "loss$loss" "$loss" 0
done
if [ "$reorder" != 0 ]; then
	scenario "reorder$reorder" 0 "$reorder"
fi
exit 0
