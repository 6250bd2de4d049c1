#!/bin/sh
# router.sh - a NAT router container's main process (docker/compose/nat-pair.yml).
#   env NAT      the NAT type (tests/lab/router-nat.sh: full, addr-restricted,
#                port-restricted, symmetric, symmetric-predictable, or short names)
#       WAN_IP   its address on the public network, LAN_IP on the private one:
#                Docker names the interfaces in no fixed order, so they are found
#                by address
#       NAT_ARGS more router-nat.sh options (--rst, --hairpin, --map-timeout S)
# The rules are the netns lab's: the same router-nat.sh. Stops on SIGTERM.
set -eu
die() {
	echo "router.sh: $*" >&2
	exit 1
}
ifname_of() {
	ip -o -4 addr show | awk -v ip="$1" '{ split($4, a, "/"); if (a[1] == ip) { print $2; exit } }'
}
: "${NAT:?router.sh: set NAT}" "${WAN_IP:?router.sh: set WAN_IP}" "${LAN_IP:?router.sh: set LAN_IP}"
wan=$(ifname_of "$WAN_IP")
lan=$(ifname_of "$LAN_IP")
[ -n "$wan" ] || die "no interface has WAN_IP $WAN_IP"
[ -n "$lan" ] || die "no interface has LAN_IP $LAN_IP"
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || die "net.ipv4.ip_forward is off (compose: sysctls)"
# shellcheck disable=SC2086 # NAT_ARGS: words on purpose
router-nat.sh "$NAT" "$wan" "$lan" --wan-ip "$WAN_IP" ${NAT_ARGS:-}
echo "router.sh: $NAT NAT between $wan ($WAN_IP, public) and $lan ($LAN_IP, private)"
trap 'exit 0' TERM INT
while :; do
	sleep 3600 &
	wait $! || true
done
