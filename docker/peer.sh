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
# one shard, as the netns lab's punch tests use: with more, the two sides of a
# punch can name different methods (predicted / udp-punch; a known bug, docker/README.md);
# NODE_ARGS may add --shards N to see it
# shellcheck disable=SC2086 # NODE_ARGS: words on purpose
exec crust node --bind 0.0.0.0 --coordinator "$COORDINATOR" --shards 1 \
	${NODE_ARGS:-} "$@" <>/run/crust/cmd
