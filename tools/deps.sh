#!/usr/bin/env bash
# Install the Debian packages a target needs, only those missing.
#   tools/deps.sh base    build + test dependencies
#   tools/deps.sh bench   benchmark peers and plotting
set -euo pipefail
base=(build-essential pkg-config liburing-dev libsodium-dev libminiupnpc-dev libcriterion-dev
      libjansson-dev libssl-dev iproute2 python3 python3-nacl procps psmisc tshark
      coturn nftables)
bench=(iperf3 gnuplot-nox)
case "${1:-base}" in
  base) want=("${base[@]}") ;;
  bench) want=("${base[@]}" "${bench[@]}") ;;
  *) echo "usage: $0 base|bench" >&2; exit 2 ;;
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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
