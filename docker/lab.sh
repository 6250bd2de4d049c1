#!/usr/bin/env bash
# lab.sh - build the lab's images and run the Docker NAT topologies.
#
#   docker/lab.sh run [NAT_A:NAT_B ...]   images, then each pair through
#                                        docker/nat_pair.py; everything torn down
#                                        (default pairs: port-restricted:symmetric
#                                        full:port-restricted)
#   docker/lab.sh images                 only the images (engine left running)
#   docker/lab.sh tarball                only the debootstrap base tarball (cached;
#                                        no engine: CI makes it beside other work)
#
# NAT types: full, addr-restricted, port-restricted, symmetric,
# symmetric-predictable. Environment: CRUST (the binary, default
# build/crust), DOCKER_LAB_DIR (cache and build context, default build/docker),
# DEBOOTSTRAP_MIRROR. Uses $DOCKER_HOST when set (that engine must run with
# --iptables=false, see docker/README.md), else docker/engine.sh's own engine,
# started if it does not run and then stopped again, also on failure.
#
# The base image comes from debootstrap (no registry is needed): built once,
# cached as DOCKER_LAB_DIR/base-KEY.tar, KEY a hash of docker/base-packages,
# the suite and the mirror. The crust image adds build/crust (docker/Dockerfile).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CRUST=${CRUST:-$ROOT/build/crust}
DIR=${DOCKER_LAB_DIR:-$ROOT/build/docker}
SUITE=bookworm
MIRROR=${DEBOOTSTRAP_MIRROR:-http://deb.debian.org/debian}
DOCKER=${DOCKER:-/usr/bin/docker}   # Debian's client (the engine's own version)
export DOCKER DOCKER_BUILDKIT=0     # the classic builder: no buildx needed
IMAGE=crust:lab
COMPOSE=$HERE/compose/nat-pair.yml

# remove a tree debootstrap may have left mounts in (/proc, /sys, /dev nodes
# bound from the host when it was killed): unmount them first, never cross one
remove_tree() {
	[ -e "$1" ] || return 0
	awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf --one-file-system "$1"
}

die() {
	echo "lab.sh: $*" >&2
	exit 1
}
say() { echo "lab.sh: $*" >&2; }
t0=$(date +%s.%N)
# a phase's end: its wall-clock time (printed, never asserted)
took() { say "$1 in $(echo "$(date +%s.%N) $t0" | awk '{ printf "%.1f", $1 - $2 }') s"; t0=$(date +%s.%N); }

[ "$(id -u)" = 0 ] || die "needs root"
for t in "$DOCKER" docker-compose debootstrap; do
	command -v "$t" >/dev/null || die "$t is missing (tools/deps.sh docker)"
done
mkdir -p "$DIR"

started_engine=0
project=""
pair_pid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -n "$pair_pid" ] && kill -0 "$pair_pid" 2>/dev/null; then
		kill -TERM "$pair_pid" # it tears its topology down on SIGTERM
		wait "$pair_pid" || true
	fi
	if [ -n "$project" ]; then # nat_pair.py tears down its own; this is for an interrupt
		docker-compose -p "$project" -f "$COMPOSE" down -v --remove-orphans -t 2 >/dev/null 2>&1 || true
	fi
	if [ "$started_engine" = 1 ]; then
		say "stopping the engine"
		"$HERE/engine.sh" stop || rc=1
	fi
	remove_tree "$DIR/rootfs.$$"
	rm -rf "$DIR/context.$$"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

engine() {
	if [ -n "${DOCKER_HOST:-}" ]; then
		say "using the engine at $DOCKER_HOST"
		"$DOCKER" version >/dev/null || die "no engine answers at $DOCKER_HOST"
		return
	fi
	local how
	how=$("$HERE/engine.sh" start)
	[ "$how" = started ] && started_engine=1
	eval "$("$HERE/engine.sh" env)"
	export DOCKER_HOST
}

# the debootstrap tree as a tarball, cached: sets TAR and BASE (its image tag)
base_tarball() {
	local pkgs key tar
	pkgs=$(grep -v '^#' "$HERE/base-packages" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
	key=$(printf '%s\n' "$pkgs" "$SUITE" "$MIRROR" "minbase" | sha256sum | cut -c1-16)
	tar=$DIR/base-$key.tar
	TAR=$tar
	BASE=crust-base:$key
	[ "${1:-}" = name-only ] && return
	if [ ! -s "$tar" ]; then
		local root=$DIR/rootfs.$$
		say "debootstrap $SUITE ($pkgs) -> $tar"
		debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$root" "$MIRROR" \
			>"$DIR/debootstrap.log" 2>&1 || {
			tail -20 "$DIR/debootstrap.log" >&2
			die "debootstrap failed (log: $DIR/debootstrap.log)"
		}
		# what an image does not need: package caches, docs, locales
		rm -rf --one-file-system "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
			"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
			"$root"/usr/share/locale/*
		tar -C "$root" --one-file-system -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
		remove_tree "$root"
		# older package lists' bases and unfinished tarballs
		find "$DIR" -maxdepth 1 -name 'base-*.tar*' ! -name "base-$key.tar" -delete
	fi
}

base_image() {
	base_tarball name-only
	if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
		return
	fi
	base_tarball
	say "docker import $TAR -> $BASE"
	"$DOCKER" import "$TAR" "$BASE" >/dev/null
}

crust_image() {
	[ -x "$CRUST" ] || die "no crust binary at $CRUST (make first)"
	local ctx=$DIR/context.$$
	mkdir -p "$ctx"
	cp "$CRUST" "$ctx/crust"
	cp "$ROOT/tests/lab/router-nat.sh" "$HERE/router.sh" "$HERE/peer.sh" \
		"$HERE/coordinator.sh" "$HERE/crust-cmd" "$ctx/"
	say "docker build $IMAGE (FROM $BASE)"
	"$DOCKER" build -q --network none --build-arg "BASE=$BASE" -t "$IMAGE" \
		-f "$HERE/Dockerfile" "$ctx" >/dev/null
	rm -rf "$ctx"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
tarball) # no engine needed: CI makes it while the other suites run
	base_tarball
	took "base tarball ready ($TAR)"
	;;
images)
	engine
	started_engine=0 # by hand: the engine stays for docker-compose
	base_image
	crust_image
	say "images ready: $BASE, $IMAGE (DOCKER_HOST=$DOCKER_HOST)"
	;;
run)
	[ $# -gt 0 ] || set -- port-restricted:symmetric full:port-restricted
	for pair in "$@"; do
		case $pair in
		?*:?*) ;;
		*) die "pair '$pair': NAT_A:NAT_B" ;;
		esac
	done
	engine
	took "engine ready"
	base_image
	took "base image ready"
	crust_image
	took "crust image built"
	failed=0
	for pair in "$@"; do
		project=crustlab$$
		# in the background: a signal to this script runs its trap at once
		/usr/bin/python3 "$HERE/nat_pair.py" --project "$project" --compose "$COMPOSE" \
			--image "$IMAGE" "${pair%%:*}" "${pair#*:}" &
		pair_pid=$!
		wait "$pair_pid" || failed=$((failed + 1))
		pair_pid=""
		project=""
		took "$pair"
	done
	echo "docker-lab: $(($# - failed)) passed, $failed failed"
	[ "$failed" = 0 ]
	;;
*)
	sed -n '4,9p' "$0" | sed 's/^# //' >&2
	exit 2
	;;
esac
