#!/usr/bin/env bash
# Install the Debian packages a target needs, only those missing.
#   tools/deps.sh base    build + test dependencies
#   tools/deps.sh bench   benchmark peers (iperf3, sockperf, ENet, libuv), plotting, perf;
#                         installs what it can and exits 1 naming what it could not
#   tools/deps.sh docker  make docker-lab: the Docker engine (the lab starts its own,
#                         docker/engine.sh), docker-compose v1, debootstrap
#   tools/deps.sh quality coverage (lcov), valgrind: make coverage, make valgrind
set -euo pipefail
base=(build-essential pkg-config liburing-dev libsodium-dev libminiupnpc-dev libnatpmp-dev
      libcriterion-dev libjansson-dev libssl-dev iproute2 python3 python3-nacl procps psmisc
      tshark nftables python3-cryptography coturn miniupnpd-nftables miniupnpc natpmpc
      clang-14 libclang-rt-14-dev)
quality=(lcov valgrind)
bench=(iperf3 gnuplot-nox sockperf libenet-dev libuv1-dev linux-perf)
docker=(docker.io docker-compose debootstrap)
case "${1:-base}" in
  base) want=("${base[@]}") ;;
  bench) want=("${base[@]}" "${bench[@]}") ;;
  docker) want=("${base[@]}" "${docker[@]}") ;;
  quality) want=("${base[@]}" "${quality[@]}") ;;
  *) echo "usage: $0 base|bench|docker|quality" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "deps.sh: apt-get update failed" >&2
# miniupnpd's and docker.io's packages start their services (miniupnpd asks debconf,
# dockerd rewrites the host's firewall) unless told not to: the tests run their own
# daemons by PID, in namespaces; none may run on the host
services=()
case " ${missing[*]} " in *" miniupnpd-nftables "*) services+=(miniupnpd) ;; esac
case " ${missing[*]} " in *" docker.io "*) services+=(docker.socket docker containerd) ;; esac
policy=/usr/sbin/policy-rc.d
own_policy=false
if [ ${#services[@]} -gt 0 ] && [ ! -e $policy ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null && $SUDO chmod 755 $policy &&
    own_policy=true
fi
stop_services() {
  $own_policy && $SUDO rm -f $policy
  if [ ${#services[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now "${services[@]}" >/dev/null 2>&1 || true
  fi
}
trap stop_services EXIT
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
  # bench extras: install what can be, one by one; perf/run.sh marks the rest unavailable
  [ "${1:-base}" = bench ] || exit 1
  failed=()
  for p in "${missing[@]}"; do
    $SUDO apt-get install -y -qq --no-install-recommends "$p" >&2 || failed+=("$p")
  done
  [ ${#failed[@]} -eq 0 ] || { echo "deps.sh: could not install: ${failed[*]}" >&2; exit 1; }
fi
