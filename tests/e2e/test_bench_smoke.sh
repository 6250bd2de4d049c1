#!/usr/bin/env bash
# e2e: alone (its udp-pps and bulk scenarios flood loopback; other tests lose datagrams in the backlog)
# test_bench_smoke.sh - the harness of `crust bench` works: every scenario
# that `crust bench --list` names runs for a fraction of a second and prints
# one valid JSON object with the fields every scenario must report (the
# traffic block of tools/bench.h: tx/rx packets/s, messages/s, bytes/s, cpu
# seconds per GB, the sender's and the receiver's view) plus its own (udp-pps:
# datagram counts; pingpong: p50/p99/p999 latency); an unknown scenario or
# option is a usage error (exit 2). No timing is asserted: only that the
# figures are numbers (or null where a scenario cannot know one).
# Only loopback is touched; each run is bounded by timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CRUST=${CRUST:-$ROOT/build/crust}
PY=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crust-bench-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# Small loads: a few connections for the connection scenarios.
extra_args() {
	case $1 in
	handshakes) echo "--conns 4" ;;
	idle) echo "--conns 8" ;;
	*) ;;
	esac
}

check_json() { # FILE SCENARIO
	"$PY" - "$1" "$2" <<'EOF'
import json, math, sys
path, scenario = sys.argv[1], sys.argv[2]
text = open(path).read()
lines = [l for l in text.splitlines() if l.strip()]
assert len(lines) == 1, f"one JSON line expected, got {len(lines)}"
d = json.loads(lines[0])
assert d.get("scenario") == scenario, f"scenario {d.get('scenario')!r}"

def num(v, where, nullable=True):
    ok = (v is None and nullable) or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v))
    assert ok, f"{where}: not a number: {v!r}"

for k in ("tx_packets_s", "rx_packets_s", "tx_msgs_s", "rx_msgs_s", "tx_bytes_s",
          "rx_bytes_s", "cpu_s_per_gb", "cpu_s"):
    assert k in d, f"missing {k}"
    num(d[k], k)
assert isinstance(d.get("packets_are"), str) and d["packets_are"], "packets_are"
for side in ("sender", "receiver"):
    assert isinstance(d.get(side), dict), f"missing {side}"
    for k in ("packets_s", "msgs_s", "bytes_s", "cpu_s", "cpu_s_per_gb"):
        assert k in d[side], f"missing {side}.{k}"
        num(d[side][k], f"{side}.{k}")
moving = scenario in ("tcp-bulk", "tcp-msgs", "udp-pps", "pingpong") or scenario.startswith("rudp")
if moving:  # these move data: their rates are numbers, not null
    for k in ("tx_packets_s", "rx_packets_s", "rx_msgs_s", "rx_bytes_s"):
        num(d[k], k, nullable=False)
if scenario == "pingpong":
    lat = d["latency_us"]
    for k in ("p50", "p90", "p99", "p999", "min", "max", "mean"):
        num(lat[k], f"latency_us.{k}", nullable=False)
    assert lat["min"] <= lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], "percentiles in order"
    assert d["errors"] == {"bad_response": 0, "send_errors": 0, "server_send_errors": 0,
                           "lost_conns": 0}, d["errors"]
if scenario == "udp-pps":
    assert d["errors"]["bad_len"] == 0 and d["errors"]["send_errors"] == 0, d["errors"]
    t = d["totals"]
    assert t["received"] <= t["sent"], "no datagram received twice"
if scenario in ("tcp-bulk", "tcp-msgs"):
    assert all(v == 0 for v in d["errors"].values()), d["errors"]
if scenario == "handshakes":
    num(d["handshakes_s"], "handshakes_s", nullable=False)
if scenario == "idle":
    assert d["errors"]["lost"] == 0, d["errors"]
EOF
}

[ -x "$CRUST" ] || fail "$CRUST not built"
scenarios=$("$CRUST" bench --list)
[ -n "$scenarios" ] || fail "crust bench --list printed nothing"
for want in tcp-bulk tcp-msgs handshakes idle udp-pps pingpong; do
	grep -qx "$want" <<<"$scenarios" || fail "crust bench --list lacks $want"
done

for sc in $scenarios; do
	# shellcheck disable=SC2046
	rc=0
	timeout -k 5 60 "$CRUST" bench "$sc" --seconds 0.3 --json-only $(extra_args "$sc") \
		>"$tmp/$sc.json" 2>"$tmp/$sc.err" || rc=$?
	[ "$rc" -eq 0 ] || { cat "$tmp/$sc.err" "$tmp/$sc.json" >&2; fail "$sc exited $rc"; }
	check_json "$tmp/$sc.json" "$sc" 2>"$tmp/$sc.check" || {
		cat "$tmp/$sc.check" "$tmp/$sc.json" >&2
		fail "$sc: JSON"
	}
	ok "$sc: valid JSON with every required field"
done

# tracer mode through the scenarios that have records
for sc in tcp-msgs pingpong; do
	timeout -k 5 60 "$CRUST" bench "$sc" --seconds 0.2 --json-only --tracer >"$tmp/t.json" \
		2>"$tmp/t.err" || { cat "$tmp/t.err" >&2; fail "$sc --tracer"; }
	check_json "$tmp/t.json" "$sc" || fail "$sc --tracer: JSON"
	grep -q '"records":"tracer"' "$tmp/t.json" || fail "$sc --tracer: records not tracer"
	ok "$sc --tracer"
done

# udp-pps without UDP_SEGMENT (one datagram per send)
timeout -k 5 60 "$CRUST" bench udp-pps --seconds 0.2 --json-only --batch 1 --size 200 \
	>"$tmp/u.json" 2>"$tmp/u.err" || { cat "$tmp/u.err" >&2; fail "udp-pps --batch 1"; }
check_json "$tmp/u.json" udp-pps || fail "udp-pps --batch 1: JSON"
grep -q '"batch":1,"gso":false' "$tmp/u.json" || fail "udp-pps --batch 1: not one per send"
ok "udp-pps --batch 1"

# one end per process (--listen / --connect), on loopback: both ends report, the
# receiver a goodput figure and clean checks, the sender the reliable-UDP counters
for sc in tcp-bulk rudp-bulk; do
	port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	timeout -k 5 60 "$CRUST" bench "$sc" --listen "127.0.0.1:$port" --seconds 0.3 --json-only \
		>"$tmp/rx.json" 2>"$tmp/rx.err" &
	rx_pid=$!
	rc=0
	for _ in 1 2 3; do # the receiver may not listen yet: the sender's dial then fails at once
		sleep 0.3
		rc=0
		timeout -k 5 60 "$CRUST" bench "$sc" --connect "127.0.0.1:$port" --seconds 0.3 \
			--json-only >"$tmp/tx.json" 2>"$tmp/tx.err" || rc=$?
		[ "$rc" -eq 0 ] && break
	done
	rx_rc=0
	wait "$rx_pid" || rx_rc=$?
	[ "$rc" -eq 0 ] && [ "$rx_rc" -eq 0 ] ||
		{ cat "$tmp/rx.err" "$tmp/tx.err" >&2; fail "$sc two processes: exit $rx_rc / $rc"; }
	check_json "$tmp/rx.json" "$sc" || fail "$sc --listen: JSON"
	check_json "$tmp/tx.json" "$sc" || fail "$sc --connect: JSON"
	"$PY" - "$tmp/rx.json" "$tmp/tx.json" "$sc" <<'EOF'
import json, sys
rx, tx = (json.load(open(p)) for p in sys.argv[1:3])
assert rx["mode"] == "listen" and tx["mode"] == "connect", (rx["mode"], tx["mode"])
assert isinstance(rx["goodput_mbps"], (int, float)) and tx["goodput_mbps"] is None
assert rx["totals"]["rx_msgs"] > 0 and tx["totals"]["tx_msgs"] >= rx["totals"]["rx_msgs"]
assert not any(v for k, v in rx["errors"].items()), rx["errors"]
assert not any(v for k, v in tx["errors"].items() if k != "no_close"), tx["errors"]
if sys.argv[3].startswith("rudp"):
    assert isinstance(tx["totals"]["sender"]["udp_retx_bytes"], int), tx["totals"]
EOF
	ok "$sc --listen / --connect: both ends report"
done

# usage errors: exit 2, a message naming the problem, nothing on stdout
usage_case() { # WHAT EXPECT-IN-STDERR ARGS...
	local what=$1 expect=$2 rc=0
	shift 2
	"$CRUST" bench "$@" >"$tmp/o" 2>"$tmp/e" || rc=$?
	[ "$rc" -eq 2 ] || fail "$what: exit $rc, want 2"
	[ ! -s "$tmp/o" ] || fail "$what: printed on stdout"
	grep -q -- "$expect" "$tmp/e" || { cat "$tmp/e" >&2; fail "$what: stderr lacks '$expect'"; }
	ok "$what: exit 2"
}
usage_case "unknown scenario" "unknown scenario 'no-such-scenario'" no-such-scenario
usage_case "unknown option" "unrecognized option '--no-such-option'" tcp-bulk --no-such-option
usage_case "no scenario" "which scenario" --seconds 1
usage_case "bad seconds" "--seconds" tcp-msgs --seconds 0
usage_case "udp-pps size too large" "--size at most" udp-pps --size 70000
usage_case "udp-pps batch too large" "a batch is at most" udp-pps --size 1400 --batch 64
usage_case "--listen on a connection scenario" "only tcp-" handshakes --listen 127.0.0.1:5201
usage_case "--listen and --connect" "one end per process" tcp-bulk --listen 127.0.0.1:1 --connect 127.0.0.1:1
usage_case "--connect without a port" "ADDR:PORT expected" rudp-bulk --connect 127.0.0.1
usage_case "--listen with two connections" "one connection" tcp-bulk --listen 127.0.0.1:1 --conns 2
echo "bench smoke: all checks passed"
