#!/usr/bin/env bash
# test_dissector_synthetic.sh - tools/wireshark/crust.lua decodes crust
# (wire version 2) traffic, on a capture made without crust itself:
#   make_tracer_capture.py writes a tracer-mode and a secure-mode
#   conversation between two of its own sockets on 127.0.0.1 (handshake
#   msg1/msg2/msg3, tracer records including one split over two send()s,
#   one split inside its length header, two coalesced in one send(), a
#   100000-byte message, keepalives; 0x10 encrypted records), while tshark
#   captures that port on lo. Then tshark with the dissector must name
#   every frame, reassemble split records, and give the counters 0..6 and
#   the texts through crust.counter / crust.msg.data / crust.msg.text;
#   first through the heuristic, then through the crust.port preference.
# Installs tshark (apt-get) when missing. Only loopback is touched.
# Env: E2E_KEEP_CAPTURE=path copies the capture there (for debugging).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LUA=$ROOT/tools/wireshark/crust.lua
GEN=$ROOT/tests/e2e/make_tracer_capture.py
PROBE=tracer-probe-42

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/crust-dissector.XXXXXX")
tshark_pid=
cleanup() {
	if [ -n "$tshark_pid" ] && kill -0 "$tshark_pid" 2>/dev/null; then
		kill -TERM "$tshark_pid" 2>/dev/null || true
		wait "$tshark_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

[ -f "$LUA" ] || fail "$LUA is missing"

# --- tshark ------------------------------------------------------------------
if ! command -v tshark >/dev/null 2>&1; then
	echo "tshark not found: installing it with apt-get"
	[ "$(id -u)" -eq 0 ] || fail "tshark is not installed and we are not root to apt-get it"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y tshark >"$tmp/apt.log" 2>&1; then
		apt-get update >>"$tmp/apt.log" 2>&1 || true
		apt-get install -y tshark >>"$tmp/apt.log" 2>&1 ||
			{ tail -20 "$tmp/apt.log" >&2; fail "apt-get install tshark failed"; }
	fi
	command -v tshark >/dev/null 2>&1 || fail "tshark still missing after apt-get"
fi
ok "$(tshark --version 2>/dev/null | head -1)"

# --- capture -----------------------------------------------------------------
cap=$tmp/crust.pcapng
port=$(python3 "$GEN" --pick-port) || fail "could not pick a port"
tshark -i lo -f "tcp port $port" -w "$cap" -a duration:60 >"$tmp/capture.log" 2>&1 &
tshark_pid=$!
for _ in $(seq 150); do
	grep -q "Capturing on" "$tmp/capture.log" && break
	kill -0 "$tshark_pid" 2>/dev/null || { cat "$tmp/capture.log" >&2; fail "tshark capture exited early"; }
	sleep 0.2
done
grep -q "Capturing on" "$tmp/capture.log" || { cat "$tmp/capture.log" >&2; fail "tshark did not start capturing on lo within 30 s"; }
sleep 0.5 # the "Capturing on" line can come just before the filter is live

python3 "$GEN" --port "$port" || fail "make_tracer_capture.py failed"
sleep 1
kill -INT "$tshark_pid" 2>/dev/null || true
wait "$tshark_pid" 2>/dev/null || true
tshark_pid=
[ -s "$cap" ] || { cat "$tmp/capture.log" >&2; fail "no capture file written"; }
npk=$(grep -o "[0-9]* packets* captured" "$tmp/capture.log" || echo "? packets captured")
ok "$npk on lo, port $port"
if [ -n "${E2E_KEEP_CAPTURE:-}" ]; then cp "$cap" "$E2E_KEEP_CAPTURE"; fi

# --- dissect -----------------------------------------------------------------
# ts ARGS...: tshark on the capture with the dissector; stderr kept apart
ts() {
	tshark -X "lua_script:$LUA" -r "$cap" "$@" 2>"$tmp/ts.err" ||
		{ cat "$tmp/ts.err" >&2; fail "tshark $* failed"; }
	if grep -i "lua\|error" "$tmp/ts.err" | grep -qv "Running as user"; then
		cat "$tmp/ts.err" >&2
		fail "tshark reported errors running the dissector"
	fi
}

# expect_eq WHAT GOT WANT
expect_eq() {
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

check_all() { # MODE ARGS...: every check, with extra tshark ARGS selecting the dissector
	local mode=$1
	shift
	local info
	info=$(ts "$@" -Y _ws.lua.error -V | grep "Lua Error" | sort | uniq -c || true)
	[ -z "$info" ] || fail "[$mode] Lua errors in the dissector (count, error):
$info"
	info=$(ts "$@" -Y crust -T fields -e _ws.col.Info)
	[ -n "$info" ] || fail "[$mode] no frame dissected as crust"

	local n
	for m in msg1 msg2 msg3; do
		n=$(grep -c "^Handshake $m" <<<"$info" || true)
		expect_eq "[$mode] frames named 'Handshake $m'" "$n" 2
	done
	grep -qx "Handshake msg1 \[tracer,aes\]" <<<"$info" || fail "[$mode] tracer msg1 flags not shown"
	grep -qx "Handshake msg2 \[aes\]" <<<"$info" || fail "[$mode] secure msg2 flags not shown"
	grep -qx "Tracer data #0, 1 message" <<<"$info" || fail "[$mode] no 'Tracer data #0, 1 message' frame"
	grep -qx "Tracer data #1, 2 messages; Tracer data #2, keepalive" <<<"$info" ||
		fail "[$mode] two records coalesced in one segment not shown as one frame"
	grep -qx "Tracer data #1, keepalive" <<<"$info" || fail "[$mode] R->I keepalive not named"
	n=$(grep -c "^Encrypted record" <<<"$info" || true)
	expect_eq "[$mode] frames named 'Encrypted record'" "$n" 3
	grep -qx "Encrypted record, 116 bytes" <<<"$info" || fail "[$mode] encrypted record length"
	ok "[$mode] names: handshake msg1/msg2/msg3 x2, tracer data, keepalives, encrypted records"

	# counters of the I->R tracer records, in order, across frames
	local counters
	counters=$(ts "$@" -Y "crust.type == 0x20 && tcp.dstport == $port" -T fields -e crust.counter |
		tr ',\n' '  ' | xargs)
	expect_eq "[$mode] I->R tracer counters" "$counters" "0 1 2 3 4 5 6"
	counters=$(ts "$@" -Y "crust.type == 0x20 && tcp.srcport == $port" -T fields -e crust.counter |
		tr ',\n' '  ' | xargs)
	expect_eq "[$mode] R->I tracer counters" "$counters" "0 1"
	ok "[$mode] counters I->R: 0..6, R->I: 0 1"

	# the probe text through crust.msg.data (hex) and crust.msg.text
	local hex texts
	hex=$(ts "$@" -Y "crust.counter == 0 && tcp.dstport == $port" -T fields -e crust.msg.data)
	expect_eq "[$mode] crust.msg.data of record #0" \
		"$(printf '%s' "${hex//:/}" | python3 -c 'import sys; print(bytes.fromhex(sys.stdin.read().strip()).decode())')" \
		"$PROBE"
	n=$(ts "$@" -Y "crust.msg.data contains \"$PROBE\"" -T fields -e frame.number | wc -l)
	expect_eq "[$mode] frames whose crust.msg.data contains $PROBE" "$n" 1
	texts=$(ts "$@" -Y "crust.type == 0x20" -T fields -E occurrence=a -E aggregator='|' -e crust.msg.text |
		grep -v '^x*$' | tr '\n' '|')
	expect_eq "[$mode] printable texts" "$texts" \
		"$PROBE|pong|hello|split-across-sends|last|split-in-length-header|"
	ok "[$mode] text '$PROBE' from crust.msg.data and crust.msg.text"

	# reassembly: split records, the 100000-byte message, no malformed PDU
	local lens
	lens=$(ts "$@" -Y "crust.counter == 4 && tcp.dstport == $port" -T fields -e crust.msg.len)
	expect_eq "[$mode] length of the big message" "$lens" 100000
	n=$(ts "$@" -Y 'crust.msg.text == "split-across-sends" && tcp.reassembled.length > 0' -T fields -e frame.number | wc -l)
	expect_eq "[$mode] reassembled frames with the split record" "$n" 1
	n=$(ts "$@" -Y 'crust.msg.text == "split-in-length-header"' -T fields -e frame.number | wc -l)
	expect_eq "[$mode] frames with the record split in its length" "$n" 1
	lens=$(ts "$@" -Y "crust.counter == 1 && tcp.dstport == $port" -T fields -e crust.msg.len -e crust.msg.count)
	expect_eq "[$mode] coalesced record lengths/counts" "$lens" "$(printf '5,6\t2,0')"
	n=$(ts "$@" -Y "_ws.malformed || crust.malformed || crust.bad_len || crust.unknown" -T fields -e frame.number | wc -l)
	expect_eq "[$mode] malformed or unexpected crust frames" "$n" 0
	ok "[$mode] reassembly across segments and in one segment, no malformed frame"
}

check_all heuristic -o tcp.try_heuristic_first:TRUE
check_all port --disable-heuristic crust_tcp -o "crust.port:$port"

# without the heuristic and on another port, nothing is crust
n=$(ts --disable-heuristic crust_tcp -Y crust -T fields -e frame.number | wc -l)
expect_eq "frames decoded as crust with the heuristic off and the default port" "$n" 0
ok "no crust without the heuristic or the port"

echo "PASS: crust.lua dissects synthetic crust v2 traffic"
