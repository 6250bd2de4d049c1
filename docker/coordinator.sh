#!/bin/sh
# coordinator.sh - `crust coordinator` on the public network (docker/compose/nat-pair.yml).
#   env COORD_IPS   its addresses, the first given by Docker, the others added
#                   here (two let nodes see a second, different mapping from a
#                   symmetric NAT: port prediction); needs NET_ADMIN
#       COORD_PORT  the UDP and TCP port (default 3478)
#       COORD_ARGS  more `crust coordinator` options
# Its events go to stdout, its log to stderr (`docker logs`).
set -eu
: "${COORD_IPS:?coordinator.sh: set COORD_IPS}"
port=${COORD_PORT:-3478}
first=${COORD_IPS%% *}
dev_pfx=$(ip -o -4 addr show | awk -v ip="$first" '{ split($4, a, "/"); if (a[1] == ip) { print $2 " " a[2]; exit } }')
[ -n "$dev_pfx" ] || { echo "coordinator.sh: no interface has $first" >&2; exit 1; }
set -- coordinator
for ip in $COORD_IPS; do
	[ "$ip" = "$first" ] || ip addr add "$ip/${dev_pfx#* }" dev "${dev_pfx% *}"
	set -- "$@" --listen "$ip:$port"
done
# shellcheck disable=SC2086 # COORD_ARGS: words on purpose
exec crust "$@" ${COORD_ARGS:-}
