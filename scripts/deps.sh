#!/usr/bin/env bash
# Installs everything the demo and the tests need. Idempotent: a second run does nothing
# but check. Debian 12 packages plus Python modules for the independent ESP decoders.
set -euo pipefail

need_apt=()
pkgs=(
  libdpdk-dev dpdk dpdk-dev pkg-config clang libclang-dev libipsec-mb-dev
  tshark tcpdump iperf3 iputils-ping iproute2 nftables ethtool procps
  strongswan-swanctl strongswan-charon strongswan-pki libcharon-extra-plugins
  libstrongswan-standard-plugins libstrongswan-extra-plugins
  python3-pip valgrind
)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no so the install never waits.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

py=python3
if ! $py -c 'import scapy, cryptography' 2>/dev/null; then
  $py -m pip install -q scapy cryptography
fi

if ! command -v cargo-fuzz >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  cargo install -q cargo-fuzz
fi
