#!/bin/sh
# router-nat.sh - make this network namespace a NAT router of one type.
#
#   router-nat.sh TYPE WAN_IF LAN_IF [--wan-ip IP] [--lan-net NET] [--hairpin] [--rst]
#                 [--map-timeout S] [--print]
#
# Loads the nft table "natlab" (replacing an older one) that gives the router
# the NAT behaviour TYPE between WAN_IF (public side) and LAN_IF (private side):
#   full     full cone (endpoint-independent filtering)
#   addr     address-restricted cone
#   port     port-restricted cone (Linux's default masquerade)
#   sym      symmetric, random ports
#   sympred  symmetric, predictable: each new flow gets the previous port + 256
#            (nft 1.0.6 hands numgen's counter to snat byte-swapped)
# or the long names full-cone, addr-restricted (or address-restricted),
# port-restricted, symmetric, symmetric-predictable.
#   --wan-ip IP      the public address (default: WAN_IF's first IPv4 address)
#   --lan-net NET    the private network, for --hairpin (default: LAN_IF's)
#   --hairpin        LAN hosts reach each other's public mappings (cone types)
#   --rst            answer an unsolicited inbound TCP SYN with RST (default: drop)
#   --map-timeout S  how long the cone types' mapping table keeps an idle
#                    mapping (default 120, the kernel's replied-UDP timeout)
#   --print          print the ruleset instead of loading it
#
# Recipes verified with coturn's RFC 5780 discovery (shared NATLAB.md): port =
# masquerade; sym = masquerade fully-random; sympred = snat through numgen inc;
# full / addr = masquerade plus a dynamic map of the mappings (learned in the
# filter forward chain: nat chains see only a connection's first packet) through
# which inbound packets are DNATed; addr only when the source address was
# contacted from that port. The map is keyed by the LAN source port, which
# masquerade keeps unless two LAN hosts clash on it.
# Unsolicited inbound packets are dropped (RFC 4787 / 5382) and counted in the
# table's counters unsolicited, rst_sent and no_hairpin.
#
# Used by the netns lab (tests/e2e/natlab.py) and the Docker router containers
# (docker/router.sh). Needs nft (and ip, without --wan-ip / --lan-net). The
# caller turns on net.ipv4.ip_forward.
set -eu

usage() {
	echo "usage: router-nat.sh TYPE WAN_IF LAN_IF [--wan-ip IP] [--lan-net NET] [--hairpin]" >&2
	echo "                     [--rst] [--map-timeout S] [--print]   (see the script's head)" >&2
	exit 2
}
die() {
	echo "router-nat.sh: $*" >&2
	exit 2
}

[ $# -ge 3 ] || usage
nat=$1 wan=$2 lan=$3
shift 3
case $nat in
full | full-cone) nat=full ;;
addr | addr-restricted | address-restricted) nat=addr ;;
port | port-restricted) nat=port ;;
sym | symmetric) nat=sym ;;
sympred | symmetric-predictable) nat=sympred ;;
*) die "unknown NAT type '$nat' (full, addr, port, sym, sympred, or full-cone, addr-restricted, address-restricted, port-restricted, symmetric, symmetric-predictable)" ;;
esac
for ifname in "$wan" "$lan"; do
	case $ifname in
	"" | *[!A-Za-z0-9_.-]*) die "bad interface name '$ifname'" ;;
	esac
done

wan_ip="" lan_net="" hairpin=0 rst=0 timeout=120 print=0
while [ $# -gt 0 ]; do
	case $1 in
	--wan-ip | --lan-net | --map-timeout)
		[ $# -ge 2 ] || die "$1 needs a value"
		case $1 in
		--wan-ip) wan_ip=$2 ;;
		--lan-net) lan_net=$2 ;;
		--map-timeout) timeout=$2 ;;
		esac
		shift 2
		;;
	--hairpin) hairpin=1 && shift ;;
	--rst) rst=1 && shift ;;
	--print) print=1 && shift ;;
	*) die "unknown option '$1'" ;;
	esac
done
case $timeout in
"" | *[!0-9]* | 0) die "--map-timeout '$timeout': a whole number of seconds >= 1" ;;
esac
if [ "$hairpin" = 1 ] && { [ "$nat" = sym ] || [ "$nat" = sympred ]; }; then
	die "hairpin needs an endpoint-independent mapping (a cone type), not $nat"
fi

# the first IPv4 address (or network) of an interface, from `ip -o -4 addr`
if_addr() {
	ip -o -4 addr show dev "$1" 2>/dev/null | awk -v what="$2" 'NR == 1 {
		split($4, a, "/")
		if (what == "ip") { print a[1]; exit }
		split(a[1], o, "."); m = a[2]; n = 0
		for (i = 1; i <= 4; i++) { b = (m >= 8) ? 8 : (m > 0 ? m : 0); m -= b
			k = 2 ^ (8 - b); o[i] = int(o[i] / k) * k }
		print o[1] "." o[2] "." o[3] "." o[4] "/" a[2]; exit }'
}
if [ -z "$wan_ip" ]; then
	wan_ip=$(if_addr "$wan" ip)
	[ -n "$wan_ip" ] || die "$wan has no IPv4 address (give --wan-ip)"
fi
if [ "$hairpin" = 1 ] && [ -z "$lan_net" ]; then
	lan_net=$(if_addr "$lan" net)
	[ -n "$lan_net" ] || die "$lan has no IPv4 address (give --lan-net)"
fi
case $wan_ip in
*[!0-9.]* | "") die "--wan-ip '$wan_ip': not an IPv4 address" ;;
esac
case $lan_net in
*[!0-9./]*) die "--lan-net '$lan_net': not an IPv4 network" ;;
esac

l4='meta l4proto { tcp, udp }'
ruleset() {
	echo "table ip natlab {"
	echo "  counter unsolicited { }"
	echo "  counter rst_sent { }"
	echo "  counter no_hairpin { }"
	echo "  map pm { type inet_proto . inet_service : ipv4_addr; flags dynamic,timeout; timeout ${timeout}s; }"
	echo "  set seen { type ipv4_addr . inet_proto . inet_service; flags dynamic,timeout; timeout ${timeout}s; }"
	echo "  chain prerouting {"
	echo "    type nat hook prerouting priority dstnat; policy accept;"
	case $nat in
	full) echo "    iifname \"$wan\" ip daddr $wan_ip $l4 dnat ip to meta l4proto . th dport map @pm" ;;
	addr) echo "    iifname \"$wan\" ip daddr $wan_ip $l4 ip saddr . meta l4proto . th dport @seen dnat ip to meta l4proto . th dport map @pm" ;;
	esac
	[ "$hairpin" = 1 ] && echo "    iifname \"$lan\" ip daddr $wan_ip $l4 dnat ip to meta l4proto . th dport map @pm"
	echo "  }"
	echo "  chain postrouting {"
	echo "    type nat hook postrouting priority srcnat; policy accept;"
	[ "$hairpin" = 1 ] && echo "    oifname \"$lan\" ip saddr $lan_net ct status dnat snat ip to $wan_ip"
	case $nat in
	sym) echo "    oifname \"$wan\" masquerade fully-random" ;;
	sympred)
		echo "    oifname \"$wan\" $l4 snat ip to $wan_ip : numgen inc mod 20000 offset 30000"
		echo "    oifname \"$wan\" masquerade"
		;;
	*) echo "    oifname \"$wan\" masquerade" ;;
	esac
	echo "  }"
	echo "  chain forward {"
	echo "    type filter hook forward priority filter; policy accept;"
	echo "    iifname \"$lan\" oifname \"$wan\" $l4 update @pm { meta l4proto . th sport : ip saddr }"
	[ "$nat" = addr ] && echo "    iifname \"$lan\" oifname \"$wan\" $l4 update @seen { ip daddr . meta l4proto . th sport }"
	echo "    iifname \"$wan\" ct state established,related accept"
	echo "    iifname \"$wan\" ct status dnat accept"
	refuse
	echo "  }"
	echo "  chain input {"
	echo "    type filter hook input priority filter; policy accept;"
	echo "    ct state established,related accept"
	refuse
	# without hairpinning a LAN packet to the public address is refused (and
	# counted) rather than answered by the router's own stack
	echo "    iifname \"$lan\" ip daddr $wan_ip $l4 counter name \"no_hairpin\" drop"
	echo "  }"
	echo "}"
}
# unsolicited inbound: dropped, or SYNs answered with RST
refuse() {
	[ "$rst" = 1 ] && echo "    iifname \"$wan\" tcp flags & (fin | syn | rst | ack) == syn counter name \"rst_sent\" reject with tcp reset"
	echo "    iifname \"$wan\" $l4 counter name \"unsolicited\" drop"
}

if [ "$print" = 1 ]; then
	ruleset
	exit 0
fi
rules=$(ruleset)
# one transaction: an older table goes with the new one's arrival
if nft list table ip natlab >/dev/null 2>&1; then
	printf 'delete table ip natlab\n%s\n' "$rules" | nft -f - || die "nft rejected the $nat ruleset"
else
	printf '%s\n' "$rules" | nft -f - || die "nft rejected the $nat ruleset"
fi
