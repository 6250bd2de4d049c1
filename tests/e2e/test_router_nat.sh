#!/usr/bin/env bash
# test_router_nat.sh - tests/lab/router-nat.sh on its own (the NAT behaviour of
# its rules is test_natlab.py's): bad arguments give a clear error and load
# nothing; the addresses default to the interfaces' own; the long names give the
# short names' rules; a second run replaces the table. In a namespace made
# here and always removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NAT=$HERE/../lab/router-nat.sh
NS=crust-rnat-$$
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip netns add "$NS"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link add wan type veth peer name wanp
in_ns ip link add lan type veth peer name lanp
in_ns ip addr add 203.0.113.5/24 dev wan
in_ns ip addr add 198.18.7.1/24 dev lan
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
fail() { echo "FAIL: $*"; exit 1; }

# bad arguments: status 2, the message names the culprit, no table loaded
expect_error() {
	local want=$1 out rc=0
	shift
	out=$(in_ns "$NAT" "$@" 2>&1) || rc=$?
	if [ "$rc" != 2 ] || [[ $out != *"$want"* ]]; then
		fail "router-nat.sh $*: status $rc, '$out' (want 2, '$want')"
	fi
	! in_ns nft list table ip natlab >/dev/null 2>&1 || fail "router-nat.sh $*: a table was loaded"
	ok "router-nat.sh $*: $out"
}
expect_error "unknown NAT type 'cone'" cone wan lan
expect_error "hairpin needs an endpoint-independent mapping" sym wan lan --hairpin
expect_error "unknown option '--bogus'" port wan lan --bogus
expect_error "--map-timeout '0'" full wan lan --map-timeout 0
expect_error "--wan-ip needs a value" full wan lan --wan-ip
expect_error "bad interface name" full 'wan;x' lan
expect_error "nowan has no IPv4 address" full nowan lan
expect_error "usage: router-nat.sh TYPE WAN_IF LAN_IF" full wan

# defaults from the interfaces: the WAN address, the LAN network (for hairpin)
rules=$(in_ns "$NAT" full wan lan --hairpin --print)
[[ $rules == *'iifname "wan" ip daddr 203.0.113.5 '*'dnat ip to meta l4proto . th dport map @pm'* ]] ||
	fail "full: DNAT to the mapping at the WAN address: $rules"
[[ $rules == *'oifname "lan" ip saddr 198.18.7.0/24 ct status dnat snat ip to 203.0.113.5'* ]] ||
	fail "hairpin: the LAN network from lan's address: $rules"
ok "--wan-ip and --lan-net default to the interfaces' addresses"

for pair in full-cone:full addr-restricted:addr address-restricted:addr port-restricted:port \
	symmetric:sym symmetric-predictable:sympred; do
	[ "$(in_ns "$NAT" "${pair%%:*}" wan lan --print)" = "$(in_ns "$NAT" "${pair#*:}" wan lan --print)" ] ||
		fail "${pair%%:*} and ${pair#*:} differ"
done
ok "the long names give the short names' rules"

in_ns "$NAT" sym wan lan --rst
got=$(in_ns nft list table ip natlab)
[[ $got == *"masquerade fully-random"* && $got == *"reject with tcp reset"* ]] || fail "sym --rst loaded: $got"
in_ns "$NAT" port wan lan
got=$(in_ns nft list table ip natlab)
[[ $got != *"fully-random"* && $got != *"tcp reset"* && $got == *"masquerade"* ]] ||
	fail "a second run replaces the table: $got"
[ "$(in_ns nft list tables | grep -c natlab)" = 1 ] || fail "one natlab table"
ok "loaded in the namespace; a second run replaces the table"
echo "$pass checks passed"
