#!/bin/sh
# peer.sh - a crust node behind a NAT router (docker/compose/nat-pair.yml).
#   env ROUTER       the router's LAN address (this host's default route)
#       COORDINATOR  ADDR:PORT of `crust coordinator`
#       NODE_ARGS    more `crust node` options
# The node's JSON events go to stdout (`docker logs`); its commands come from
# the FIFO /run/crust/cmd: `docker exec CONTAINER crust-cmd punch PEER`.
set -eu
: "${ROUTER:?peer.sh: set ROUTER}" "${COORDINATOR:?peer.sh: set COORDINATOR}"
ip route replace default via "$ROUTER"
mkdir -p /run/crust
rm -f /run/crust/cmd
mkfifo -m 600 /run/crust/cmd
# opened read-write: a crust-cmd closing its end is not the end of the node's input
# two shards: a punch's probes and connections are then read on different shards
# (p2p/punch.c probe_learn keeps both sides naming the same method)
# shellcheck disable=SC2086 # NODE_ARGS: words on purpose
exec crust node --bind 0.0.0.0 --coordinator "$COORDINATOR" --shards 2 \
	${NODE_ARGS:-} "$@" <>/run/crust/cmd
