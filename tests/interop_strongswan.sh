#!/usr/bin/env bash
# Interop with strongSwan 5.9 (kernel-libipsec, userspace ESP over UDP 4500): gateway a is our
# dataplane with our IKE daemon, gateway b is charon. Our daemon initiates; the tunnel comes up,
# ping and a bounded iperf3 run pass between the protected subnets, and strongSwan lists the SA
# with the algorithms we expect. Everything runs in namespaces made and removed here.
#
# usage: interop_strongswan.sh DATAPLANE_BINARY IKE_DAEMON_BINARY
# env: IKE_PROPOSAL, ESP_PROPOSAL (strongSwan syntax, default aes256gcm16-prfsha256-x25519 and
#      aes256gcm16), QUICK=1 to stop after the tunnel, ping and iperf3 checks, TRAP=1 to bring
#      the tunnel up on demand (start_action trap) and rekey by bytes, IPV6=1 to run IKE and
#      ESP over IPv6 between the gateways (fd77::1, fd77::2) for IPv6 subnets (fd01::/64,
#      fd02::/64) instead of IPv4 (10.77.0.1, 10.77.0.2; 10.1.0.0/24, 10.2.0.0/24).
set -uo pipefail
ike_prop=${IKE_PROPOSAL:-aes256gcm16-prfsha256-x25519}
start_action=start
[ -n "${TRAP:-}" ] && start_action=trap
esp_prop=${ESP_PROPOSAL:-aes256gcm16}
# How swanctl --list-sas names them.
case $ike_prop in
  aes256gcm16-prfsha256-x25519) want_ike="AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519" ;;
  aes128gcm16-prfsha256-ecp256) want_ike="AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256" ;;
  *) want_ike="" ;;
esac
case $esp_prop in
  aes256gcm16) want_esp="AES_GCM_16-256" ;;
  aes128gcm16) want_esp="AES_GCM_16-128" ;;
  *) want_esp="" ;;
esac
# CHILDREN=2 (IPv4): two Child SAs in one IKE SA, "net" from the lower and "net2" from the
# upper half of our subnet; the second comes up with CREATE_CHILD_SA.
# AUTH=ecdsa or AUTH=rsa: both sides authenticate with certificates of that kind from one CA
# (RFC 7427 signatures) instead of the PSK.
# Our gateway a and strongSwan's gateway b, their subnets, and the host behind b.
a_ip=10.77.0.1 b_ip=10.77.0.2 a_net=10.1.0.0/24 b_net=10.2.0.0/24 h2_ip=10.2.0.10 ipv=-4
if [ -n "${IPV6:-}" ]; then
  a_ip=fd77::1 b_ip=fd77::2 a_net=fd01::/64 b_net=fd02::/64 h2_ip=fd02::10 ipv=-6
  # Read by scripts/gw-config (our gateway) and scripts/strongswan-peer.sh (strongSwan's).
  export GW_IPV6_OUTER=1
  ss_ipv6=1
fi
bin=$(realpath "$1")
daemon=$(realpath "$2")
here=$(cd "$(dirname "$0")/.." && pwd)
p=ss$$
work=$(mktemp -d)
pass=0 fail=0
ok() { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; fail=$((fail + 1)); }
ns() { ip netns exec "$p-$1" "${@:2}"; }
# shellcheck source=../scripts/gw-lib.sh
. "$here/scripts/gw-lib.sh"
# shellcheck source=../scripts/loss-lib.sh
. "$here/scripts/loss-lib.sh"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  gw_stop
  "$here/scripts/netns-topology" down "$p"
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

"$here/scripts/netns-topology" up "$p"
# shellcheck source=../scripts/strongswan-peer.sh
. "$here/scripts/strongswan-peer.sh"
psk="a-long-test-psk-0123456789"
ts_lines="local_ts = [\"$a_net\"]
remote_ts = [\"$b_net\"]"
children_tables=""
if [ -n "${CHILDREN:-}" ]; then
  # The host behind us gets a second address, in the upper half.
  h1_ip2=10.1.0.200
  ns h1 ip addr add "$h1_ip2/24" dev h1-eth0
  ts_lines=""
  children_tables="[[connection.children]]
name = \"net\"
local_ts = [\"10.1.0.0/25\"]
remote_ts = [\"$b_net\"]
[[connection.children]]
name = \"net2\"
local_ts = [\"10.1.0.128/25\"]
remote_ts = [\"$b_net\"]"
  ss_children="net=10.1.0.0/25 net2=10.1.0.128/25"
fi
auth_lines="psk = \"$psk\""
if [ -n "${AUTH:-}" ]; then
  if ss_make_pki "$work/pki" "$AUTH"; then ok "strongSwan's pki made a $AUTH CA and certificates"; else bad "pki failed"; fi
  ss_pki=$work/pki
  auth_lines="cert = \"pki/a.pem\"
key = \"pki/a.key\"
cacerts = [\"pki/ca.pem\"]"
fi
ss_start "$ike_prop" "$esp_prop" "$psk"
pids+=("$ss_pid")
if ss_swanctl --load-all >"$ss/load.out" 2>&1; then ok "strongSwan loaded its configuration"; else bad "swanctl --load-all: $(cat "$ss/load.out")"; fi

# Our gateway: the dataplane with ports only, programmed by our IKE daemon.
gw_start a 0 ports-only
for _ in $(seq 100); do [ -S "$work/a.sock" ] && break; sleep 0.1; done
cat >"$work/ike.toml" <<CONF
[daemon]
listen = "$a_ip"
dataplane_socket = "$work/a.sock"
control_socket = "$work/ike.sock"

[[connection]]
name = "gw"
local_addr = "$a_ip"
remote_addr = "$b_ip"
local_id = "a@example.test"
remote_id = "b@example.test"
$auth_lines
proposals = ["$ike_prop"]
esp_proposals = ["$esp_prop"]
$ts_lines
start_action = "$start_action"
${TRAP:+rekey_bytes = 20000000}
# Short timers, so that rekeys and the dead-peer check below fit in a test.
rekey_time = 4
# Room for the daemon restart below: SAs outlive a dead control plane only this long.
life_time = 30
ike_rekey_time = 7
dpd_delay = 2
retransmit_base_ms = 300
retransmit_tries = 3
$children_tables
CONF
# The daemon binds the gateway's own address, which lives on the dataplane's TAP.
for _ in $(seq 50); do ns gwa ip "$ipv" addr show dev tap-unprot 2>/dev/null | grep -q "$a_ip" && break; sleep 0.1; done
ip netns exec "$p-gwa" "$daemon" --config "$work/ike.toml" >"$work/daemon.log" 2>&1 &
pids+=($!)
if [ -n "${TRAP:-}" ]; then
  # No tunnel until traffic needs one: this packet is dropped (NoSa) and reported (acquire).
  sleep 1
  ns h1 ping -c 1 -W 1 "$h2_ip" >/dev/null 2>&1
  for _ in $(seq 50); do grep -q "needs the tunnel: initiating" "$work/daemon.log" && break; sleep 0.1; done
  grep -q "needs the tunnel: initiating" "$work/daemon.log" && ok "trap: traffic for the tunnel made our daemon initiate" \
    || bad "trap: no acquire: $(cat "$work/daemon.log")"
fi
for _ in $(seq 100); do grep -q "child SA net up" "$work/daemon.log" && break; sleep 0.1; done
if grep -q "child SA net up" "$work/daemon.log"; then ok "our daemon (initiator) brought the tunnel up: $(grep 'child SA' "$work/daemon.log")"; else bad "tunnel not up: $(cat "$work/daemon.log"; tail -20 "$ss/charon.log")"; fi

ss_swanctl --list-sas >"$ss/sas.txt" 2>&1
if grep -q "ESTABLISHED" "$ss/sas.txt" && grep -q "$want_ike" "$ss/sas.txt" && grep -q "INSTALLED, TUNNEL" "$ss/sas.txt" \
  && grep -q "$want_esp" "$ss/sas.txt"; then
  ok "strongSwan lists the IKE SA ($want_ike) and the installed child SA ($want_esp)"
else
  bad "swanctl --list-sas: $(cat "$ss/sas.txt")"
fi

if [ -n "${AUTH:-}" ]; then
  # charon names how it checked us: an RFC 7427 signature with our certificate's key.
  how=$(grep -o "authentication of 'a@example.test' with [A-Z0-9_]* successful" "$ss/charon.log" | head -1)
  if [ -n "$how" ] && ! grep -q "authentication of 'a@example.test' with pre-shared key" "$ss/charon.log" \
    && grep -q "received end entity cert \"C=CH, O=Interop, CN=a.example.test\"" "$ss/charon.log"; then
    ok "strongSwan checked our certificate: $how"
  else
    bad "certificate authentication in charon's log: $(grep -iE "authentication of|cert" "$ss/charon.log" | head)"
  fi
fi
if [ -n "${CHILDREN:-}" ]; then
  # The second Child SA, by CREATE_CHILD_SA in the same IKE SA, for the upper half.
  for _ in $(seq 50); do grep -q "child SA net2 up" "$work/daemon.log" && break; sleep 0.1; done
  ss_swanctl --list-sas >"$ss/sas2.txt" 2>&1
  if grep -q "child SA net2 up" "$work/daemon.log" && [ "$(grep -c "INSTALLED, TUNNEL" "$ss/sas2.txt")" -eq 2 ] \
    && grep -q "net2: .*INSTALLED" "$ss/sas2.txt" && [ "$(grep -c "ESTABLISHED" "$ss/sas2.txt")" -eq 1 ] \
    && ns h1 ping -c 3 -i 0.2 -W 2 -I "$h1_ip2" "$h2_ip" >"$work/ping2nd" 2>&1 && grep -q " 0% packet loss" "$work/ping2nd"; then
    ok "a second Child SA (CREATE_CHILD_SA) in the same IKE SA carries the upper half: ping from $h1_ip2"
  else
    bad "second child SA: $(grep 'child SA' "$work/daemon.log"; cat "$ss/sas2.txt"; grep loss "$work/ping2nd")"
  fi
fi
if ns h1 ping -c 5 -i 0.2 -W 2 "$h2_ip" >"$work/ping" 2>&1 && grep -q " 0% packet loss" "$work/ping"; then
  ok "ping h1 -> h2 through our gateway and strongSwan"
else
  bad "ping: $(grep loss "$work/ping")"
fi
ns h2 iperf3 -s -1 -D -p 5201 >/dev/null 2>&1
sleep 0.5
if ns h1 timeout 30 iperf3 -c "$h2_ip" -p 5201 -t 3 -J >"$work/iperf.json" 2>"$work/iperf.err"; then
  mbps=$(python3 -c "import json;d=json.load(open('$work/iperf.json'));print(round(d['end']['sum_received']['bits_per_second']/1e6))")
  ok "iperf3 TCP 3 s through the tunnel: $mbps Mbit/s"
else
  bad "iperf3: $(tail -3 "$work/iperf.err")"
fi
"$bin" sas --socket "$work/a.sock" >"$work/sas-a.txt" 2>&1
grep -q "gw-net-in" "$work/sas-a.txt" && grep -q "gw-net-out" "$work/sas-a.txt" \
  && ok "the dataplane holds the negotiated SA pair" || bad "dataplane SAs: $(cat "$work/sas-a.txt")"
if [ -n "${IPV6:-}" ]; then
  # IKE, ESP and the selectors are IPv6 on both sides: nothing fell back to IPv4.
  if grep -qF "local  'b@example.test' @ ${b_ip}[4500]" "$ss/sas.txt" && grep -qF "remote 'a@example.test' @ ${a_ip}[4500]" "$ss/sas.txt" \
    && grep -qF "local  $b_net" "$ss/sas.txt" && grep -qF "remote $a_net" "$ss/sas.txt" \
    && [ "$(awk -v a="$a_ip" -v b="$b_ip" '$1 ~ /^gw-net-/ && $4 == a && $5 == b' "$work/sas-a.txt" | wc -l)" -eq 2 ]; then
    ok "IPv6 throughout: IKE and ESP between [$a_ip]:4500 and [$b_ip]:4500, selectors $a_net === $b_net"
  else
    bad "IPv6 endpoints or selectors: $(cat "$ss/sas.txt" "$work/sas-a.txt")"
  fi
fi
if [ -n "${TRAP:-}" ]; then
  soft=$(grep -c "soft lifetime reached, rekeying" "$work/daemon.log")
  [ "$soft" -ge 2 ] && ok "rekeyed by bytes: $soft soft lifetimes reported by the dataplane during iperf3" \
    || bad "rekey by bytes: $soft soft lifetimes: $(tail -5 "$work/daemon.log")"
fi

# The operator's view: ikectl lists the IKE SA and its Child SA with the dataplane's counters.
ikectl=$(dirname "$daemon")/ikectl
# Fresh traffic on whichever Child SA is current (rekeys reset the per-SA counters).
ns h1 ping -c 3 -i 0.1 -W 1 "$h2_ip" >/dev/null 2>&1
"$ikectl" --socket "$work/ike.sock" list >"$work/ikectl.txt" 2>&1
"$ikectl" --socket "$work/ike.sock" list --json >"$work/ikectl.json" 2>&1
if grep -q "ESTABLISHED" "$work/ikectl.txt" && grep -q "$ike_prop" "$work/ikectl.txt" \
  && python3 -c "import json,sys;d=json.load(open('$work/ikectl.json'));sys.exit(0 if any(c['packets_in']>0 and c['packets_out']>0 for c in d[0]['children']) else 1)"; then
  ok "ikectl lists the IKE SA ($ike_prop) and its Child SA with traffic counters"
else
  bad "ikectl list: $(cat "$work/ikectl.txt")"
fi
cat "$work/ikectl.txt"

if [ -n "${QUICK:-}" ]; then
  echo "strongswan interop ($ike_prop, $esp_prop${TRAP:+, trap}${IPV6:+, IPv6}${AUTH:+, $AUTH certificates}${CHILDREN:+, two child SAs}): $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit
fi

# Rekey under traffic: our daemon rekeys the Child SA every 4 s (CREATE_CHILD_SA, REKEY_SA,
# make-before-break) and the IKE SA every 7 s; a continuous ping for 60 s across many rekeys of
# both loses nothing at our gateway, and neither does a bounded iperf3 UDP stream running across
# the first rekeys (its receiver counts every lost datagram). A loss no greater than the
# overflows counted in receive buffers past our gateway, of strongSwan's userspace ESP or of
# iperf3 (this VM has two cores for everything), with nothing counted on our side, is reported
# and not failed; any other loss fails (scripts/loss-lib.sh, tested by tests/loss_lib_test.sh).
ups_before=$(grep -c "child SA net up" "$work/daemon.log")
ike_before=$(grep -c "IKE SA .* rekeyed" "$work/daemon.log")
# Where a lost packet went: every counter of a loss along h1 -> a -> b -> h2 (and back, for the
# ping's replies), read before and after. Interfaces' drops in all four namespaces; at gateway a
# the dataplane's drop reasons and its ports' own counters, and for each data port the frames
# its veth received less those the dataplane took from the port: the frames the kernel dropped
# when the af_packet ring was full, counted from outside the dataplane (which also counts them
# itself, in rx_missed; either growing is our loss). UDP receive-buffer overflows at b
# (charon's ESP-in-UDP socket: kernel-libipsec decrypts in userspace) and at h2 (iperf3's).
loss_counters() {
  local n veth
  for n in h1 gwa gwb h2; do
    ns "$n" sh -c 'for d in /sys/class/net/*; do
        [ -r "$d/statistics/rx_dropped" ] || continue
        echo "$0 link ${d##*/} rx_dropped $(cat "$d/statistics/rx_dropped")"
        echo "$0 link ${d##*/} tx_dropped $(cat "$d/statistics/tx_dropped")"
      done' "$n"
  done
  # Read just before the dataplane's counters, so that what arrives between the two is little.
  veth=$(ns gwa cat /sys/class/net/a-prot/statistics/rx_packets /sys/class/net/a-unprot/statistics/rx_packets)
  # Frames for other MACs and non-IP frames cannot be the test's packets.
  "$bin" stats --socket "$work/a.sock" --json 2>/dev/null | python3 -c '
import json, sys
# scripts/gw-config: net_af_packet0 drives a-prot, net_af_packet1 a-unprot.
veth = dict(zip(("net_af_packet0", "net_af_packet1"), map(int, sys.argv[1].split())))
try:
    d = json.load(sys.stdin)
except ValueError:
    sys.exit(print("dataplane unreadable 1"))
for x in d["drops"]:
    if x["reason"] not in ("NotForUs", "UnsupportedEthertype"):
        print("dataplane drop", x["reason"], x["count"])
for p in d.get("ports", []):
    for k in ("rx_missed", "rx_errors", "rx_nombuf", "tx_errors"):
        print("dataplane port", p["name"], k, p[k])
    if p["name"] in veth:
        print("gwa ring-gap", p["name"], veth[p["name"]] - p["rx"])' "$veth"
  for n in gwb h2; do
    ns "$n" awk '$1 == "Udp:" && !h {split($0, k); h = 1; next}
      $1 == "Udp:" {for (i = 2; i <= NF; i++) if (k[i] == "RcvbufErrors") print ns, "udp", k[i], $i}' ns="$n" /proc/net/snmp
    ns "$n" awk '$1 == "Udp6RcvbufErrors" {print ns, "udp6", $1, $2}' ns="$n" /proc/net/snmp6
  done
}
loss_counters >"$work/loss-before.txt"
ns h2 iperf3 -s -1 -D -p 5202 >/dev/null 2>&1
sleep 0.3
# -w 4M: the receiver's socket buffer (the client hands it to the server). The default holds
# under 10 ms at 100 Mbit/s, less than a receiver can wait for a core on this 2-vCPU VM. iperf3
# gives up if the kernel grants less (net.core.rmem_max, wmem_max; 212,992 by default, which a
# namespace cannot raise): then it runs with the default.
wflag=()
if [ "$(ns h1 cat /proc/sys/net/core/rmem_max)" -ge 4194304 ] && [ "$(ns h1 cat /proc/sys/net/core/wmem_max)" -ge 4194304 ]; then
  wflag=(-w 4M)
fi
ns h1 timeout 40 iperf3 -c "$h2_ip" -p 5202 -u -b 100M -l 1200 "${wflag[@]}" -t 20 -J >"$work/iperf-rekey.json" 2>&1 &
iperf_pid=$!
ns h1 ping -c 300 -i 0.2 -W 2 "$h2_ip" >"$work/ping-rekey" 2>&1
ping_lost=$(awk '/packets transmitted/ {print $1 - $4}' "$work/ping-rekey")
rekeys=$(( $(grep -c "child SA net up" "$work/daemon.log") - ups_before ))
ike_rekeys=$(( $(grep -c "IKE SA .* rekeyed" "$work/daemon.log") - ike_before ))
if [ "$rekeys" -ge 10 ] && [ "$ike_rekeys" -ge 6 ]; then
  ok "$rekeys child SA and $ike_rekeys IKE SA rekeys during a 60 s ping"
else
  bad "only $rekeys child and $ike_rekeys IKE rekeys during the ping"
fi
wait "$iperf_pid"
loss_counters >"$work/loss-after.txt"
loss_grew "$work/loss-before.txt" "$work/loss-after.txt" >"$work/loss-grew.txt"
read -r iperf_lost iperf_sent < <(python3 -c "import json;d=json.load(open('$work/iperf-rekey.json'))['end']['sum'];print(d['lost_packets'], d['packets'])" 2>/dev/null)
if [ -z "${iperf_lost:-}" ] || [ -z "${ping_lost:-}" ]; then
  bad "no result from iperf3 or ping: $(tail -3 "$work/iperf-rekey.json") $(tail -2 "$work/ping-rekey")"
elif grep -q "dataplane unreadable" "$work/loss-before.txt" "$work/loss-after.txt" \
  || [ "$(grep -c "^gwa ring-gap" "$work/loss-before.txt")" -ne 2 ] \
  || [ "$(grep -c "^gwa ring-gap" "$work/loss-after.txt")" -ne 2 ]; then
  bad "the dataplane's counters could not be read around the rekeys"
elif why=$(loss_verdict "$work/loss-grew.txt" $((iperf_lost + ping_lost))); then
  ok "iperf3 UDP 100 Mbit/s for 20 s and a 5/s ping for 60 s across the rekeys, our gateway lost nothing: iperf3 lost $iperf_lost of $iperf_sent datagrams and ping $ping_lost of 300, $why"
else
  bad "lost around the rekeys: iperf3 $iperf_lost of $iperf_sent datagrams, ping $ping_lost of 300, $why"
  echo "# strongSwan's log about ESP and SAs:"
  grep -iE "esp|spi|child_sa" "$ss/charon.log" | grep -vE "parsed|generating|sending packet|received packet" | tail -20
fi
"$bin" stats --socket "$work/a.sock" >"$work/stats-rekeyed.txt" 2>&1
# As rekey initiator we can install the new inbound SA only once strongSwan's answer brings its
# nonce, and strongSwan sends on the new SA right after answering: the dataplane parks such
# packets until the SA is there. Nothing may be dropped, iperf3 included.
if grep -qE "AuthFailed|Replay|NoSa|InnerSelector|UnknownSpi" "$work/stats-rekeyed.txt"; then
  bad "drops around the rekeys (iperf3 and ping ran across them): $(sed -n '/drop reason/,$p' "$work/stats-rekeyed.txt")"
else
  parked=$(awk 'NR > 1 && $1 ~ /^[0-9]+$/ && NF == 9 {n += $9} END {print n + 0}' "$work/stats-rekeyed.txt")
  ok "across the rekeys (iperf3 included) no packet dropped; $parked arrived before their new SA and waited for it"
fi
ss_swanctl --list-sas >"$ss/sas-rekeyed.txt" 2>&1
[ "$(grep -c "INSTALLED, TUNNEL" "$ss/sas-rekeyed.txt")" -ge 1 ] && ok "strongSwan keeps the rekeyed child SA installed" \
  || bad "strongSwan after rekeys: $(cat "$ss/sas-rekeyed.txt")"

# The control plane restarts (SIGKILL, so it says goodbye to no one) while a ping runs: the
# dataplane keeps forwarding with the SAs it has, the new daemon negotiates afresh and
# replaces them, make-before-break.
ns h1 ping -c 60 -i 0.2 -W 2 "$h2_ip" >"$work/ping-restart" 2>&1 &
ping_pid=$!
sleep 2
kill -9 "${pids[1]}" 2>/dev/null; wait "${pids[1]}" 2>/dev/null
sleep 2
echo "--- restart" >>"$work/daemon.log"
ip netns exec "$p-gwa" "$daemon" --config "$work/ike.toml" >>"$work/daemon.log" 2>&1 &
pids+=($!)
wait "$ping_pid"
if grep -q " 0% packet loss" "$work/ping-restart" && grep -q "removing .* installed before the restart" "$work/daemon.log"; then
  ok "control plane restarted under a 5/s ping: no packet lost, old SAs replaced"
else
  bad "restart: $(grep loss "$work/ping-restart"; sed -n '/--- restart/,$p' "$work/daemon.log")"
fi

# strongSwan deletes the IKE SA: our daemon answers and removes the SAs from the dataplane.
ss_swanctl --terminate --ike gw --timeout 10 >"$ss/terminate.out" 2>&1
for _ in $(seq 50); do grep -q "IKE SA .* deleted" "$work/daemon.log" && break; sleep 0.1; done
sleep 0.3
"$bin" sas --socket "$work/a.sock" >"$work/sas-after-delete.txt" 2>&1
if grep -q "IKE SA .* deleted" "$work/daemon.log" && grep -q "terminate completed successfully" "$ss/terminate.out" \
  && ! grep -q "gw-net-" "$work/sas-after-delete.txt"; then
  ok "a delete from strongSwan is answered and removes our SAs from the dataplane"
else
  bad "delete from strongSwan: $(tail -3 "$ss/terminate.out"; cat "$work/sas-after-delete.txt")"
fi

# Now strongSwan initiates and our daemon answers as responder.
before=$(grep -c "child SA net up" "$work/daemon.log")
ss_swanctl --initiate --ike gw --child net --timeout 15 >"$ss/initiate.out" 2>&1
for _ in $(seq 50); do [ "$(grep -c "child SA net up" "$work/daemon.log")" -gt "$before" ] && break; sleep 0.1; done
if grep -q "CHILD_SA net{.*} established" "$ss/initiate.out" && [ "$(grep -c "child SA net up" "$work/daemon.log")" -gt "$before" ]; then
  ok "strongSwan as initiator, our daemon as responder: child SA established"
else
  bad "strongSwan-initiated: $(tail -5 "$ss/initiate.out")"
fi
if ns h1 ping -c 5 -i 0.2 -W 2 "$h2_ip" >"$work/ping2" 2>&1 && grep -q " 0% packet loss" "$work/ping2"; then
  ok "ping through the SA pair negotiated with us as responder"
else
  bad "ping after responder negotiation: $(grep loss "$work/ping2")"
fi
"$bin" sas --socket "$work/a.sock" >"$work/sas-a.txt" 2>&1

# strongSwan dies: liveness checks go unanswered and our daemon removes the SAs.
# SIGKILL: on SIGTERM charon would first delete its SAs politely.
kill -9 "${pids[0]}" 2>/dev/null; wait "${pids[0]}" 2>/dev/null
for _ in $(seq 100); do grep -q "peer is dead" "$work/daemon.log" && break; sleep 0.1; done
sleep 0.3
"$bin" sas --socket "$work/a.sock" >"$work/sas-after-dpd.txt" 2>&1
if grep -q "peer is dead" "$work/daemon.log" && ! grep -q "gw-net-" "$work/sas-after-dpd.txt"; then
  ok "a dead peer is noticed (liveness checks) and its SAs removed from the dataplane"
else
  bad "dead peer: $(tail -3 "$work/daemon.log"; cat "$work/sas-after-dpd.txt")"
fi
echo "--- our daemon's log"
cat "$work/daemon.log"
echo "--- our dataplane's SAs while up"
cat "$work/sas-a.txt"
echo "strongswan interop${IPV6:+ (IPv6)}${AUTH:+ ($AUTH certificates)}: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
