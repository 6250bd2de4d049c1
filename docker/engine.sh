#!/usr/bin/env bash
# engine.sh - the lab's own Docker engine, apart from any system one.
#
#   docker/engine.sh start    start it unless it runs; prints "started" or "running"
#   docker/engine.sh stop     stop it by PID, remove its network namespace
#   docker/engine.sh status   exit 0 when it runs and answers
#   docker/engine.sh env      the DOCKER_HOST line for a shell: eval "$(docker/engine.sh env)"
#
# dockerd runs in a network namespace of its own (crust-docker): its bridges,
# the containers' veths and the networks' .1 addresses never appear on the
# host, and no host sysctl or firewall rule changes (--iptables=false,
# --ip-forward=false; the routers turn on forwarding in their own namespaces).
# nsenter enters only that namespace: dockerd needs the host's /sys and its
# cgroup mounts, which `ip netns exec` would hide behind a fresh sysfs.
# Own socket, pidfile and exec root under $DOCKER_LAB_RUN (/run/crust-docker),
# own data root $DOCKER_LAB_DATA ($DOCKER_LAB_DIR/engine, build/docker/engine): a system docker
# (/var/run/docker.sock, /var/lib/docker) is never touched. Its managed
# containerd stops with it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=${DOCKER_LAB_RUN:-/run/crust-docker}
DATA=${DOCKER_LAB_DATA:-${DOCKER_LAB_DIR:-$(dirname "$HERE")/build/docker}/engine}
NS=${DOCKER_LAB_NETNS:-crust-docker}
SOCK=$RUN/docker.sock
PIDFILE=$RUN/dockerd.pid
LOG=$DATA.log
DOCKER=${DOCKER:-/usr/bin/docker}

die() {
	echo "engine.sh: $*" >&2
	exit 1
}

# the PID of our dockerd when it runs (the pidfile names a live dockerd)
engine_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
	echo "$pid"
}

answers() {
	DOCKER_HOST=unix://$SOCK timeout 10 "$DOCKER" version >/dev/null 2>&1
}

start() {
	[ "$(id -u)" = 0 ] || die "needs root (dockerd, network namespaces)"
	command -v dockerd >/dev/null || die "no dockerd (tools/deps.sh docker installs docker.io)"
	if engine_pid >/dev/null && answers; then
		echo running
		return 0
	fi
	engine_pid >/dev/null && die "dockerd $(engine_pid) runs but does not answer on $SOCK"
	mkdir -p "$RUN" "$DATA"
	[ -e "/run/netns/$NS" ] || ip netns add "$NS"
	ip -n "$NS" link set lo up
	# setsid: the engine outlives this script (engine.sh stop ends it); its
	# own session also keeps a terminal's Ctrl-C away from it
	setsid nsenter --net="/run/netns/$NS" dockerd \
		--data-root "$DATA" --exec-root "$RUN/exec" --pidfile "$PIDFILE" \
		-H "unix://$SOCK" --iptables=false --ip-forward=false --ip-masq=false \
		--bip 198.19.255.1/24 --userland-proxy=false --log-level warn \
		</dev/null >"$LOG" 2>&1 &
	local launcher=$! i
	for ((i = 0; i < 150; i++)); do # up to 30 s
		if answers; then
			echo started
			return 0
		fi
		if ! kill -0 "$launcher" 2>/dev/null; then
			tail -20 "$LOG" >&2
			die "dockerd exited (log: $LOG)"
		fi
		sleep 0.2
	done
	tail -20 "$LOG" >&2
	stop
	die "dockerd did not answer on $SOCK within 30 s (log: $LOG)"
}

stop() {
	local pid i
	if pid=$(engine_pid); then
		kill -TERM "$pid"
		for ((i = 0; i < 100; i++)); do # up to 20 s: it stops its containers first
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "engine.sh: dockerd $pid still runs after 20 s, killing it" >&2
			kill -KILL "$pid"
			sleep 0.5
		fi
	fi
	# after a KILL: what it mounted under its roots, deepest first
	awk -v run="$RUN/" -v data="$DATA/" 'index($2, run) == 1 || index($2, data) == 1 { print $2 }' \
		/proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	[ -e "/run/netns/$NS" ] && ip netns del "$NS"
	rm -rf "$RUN"
	return 0
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) engine_pid >/dev/null && answers ;;
env) echo "export DOCKER_HOST=unix://$SOCK" ;;
*)
	sed -n '4,7p' "$0" | sed 's/^# //' >&2
	exit 2
	;;
esac
