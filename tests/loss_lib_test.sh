#!/usr/bin/env bash
# scripts/loss-lib.sh on fixed readings: the loss attribution of tests/interop_strongswan.sh
# must pass only a loss counted past our gateway, and fail ours and one nobody counted.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/loss-lib.sh
. "$here/scripts/loss-lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
expect() { # WHAT WANT_STATUS LOST BEFORE AFTER
  printf '%b' "$4" >"$work/before"
  printf '%b' "$5" >"$work/after"
  loss_grew "$work/before" "$work/after" >"$work/grew"
  local why status
  why=$(loss_verdict "$work/grew" "$3")
  status=$?
  if [ "$status" -eq "$2" ]; then
    echo "ok   - $1: $why"
    pass=$((pass + 1))
  else
    echo "FAIL - $1: status $status, want $2 ($why)"
    fail=$((fail + 1))
  fi
}
base='h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 2\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 5\nh2 udp RcvbufErrors 0\n'
expect "nothing lost, nothing grew" 0 0 "$base" "$base"
expect "nothing lost though a peer buffer overflowed (an IKE retransmission)" 0 0 "$base" \
  'h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 2\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 6\nh2 udp RcvbufErrors 0\n'
expect "all lost at b and h2" 0 30 "$base" \
  'h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 2\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 15\nh2 udp RcvbufErrors 20\n'
expect "our ring overflowed" 1 30 "$base" \
  'h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 3\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 40\nh2 udp RcvbufErrors 0\n'
expect "a drop reason counted" 1 1 "$base" \
  'h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 2\ndataplane drop TxFull 1\ngwb udp RcvbufErrors 5\nh2 udp RcvbufErrors 0\n'
expect "a drop reason that first appears after" 1 1 "$base" \
  "${base}dataplane drop AuthFailed 1\n"
expect "the sending host dropped" 1 1 "$base" \
  'h1 link h1-eth0 tx_dropped 1\ngwa ring-gap net_af_packet0 2\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 5\nh2 udp RcvbufErrors 0\n'
expect "more lost than b and h2 counted" 2 10 "$base" \
  'h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 2\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 9\nh2 udp RcvbufErrors 0\n'
expect "lost with no counter grown" 2 1 "$base" "$base"
expect "a link drop past us is no datagram count" 2 3 "$base" \
  "${base}gwb link b-prot tx_dropped 3\n"
expect "the ring gap shrinking (a frame counted between the two reads) is no loss" 0 0 "$base" \
  'h1 link h1-eth0 tx_dropped 0\ngwa ring-gap net_af_packet0 1\ndataplane drop TxFull 0\ngwb udp RcvbufErrors 5\nh2 udp RcvbufErrors 0\n'
echo "loss attribution: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
