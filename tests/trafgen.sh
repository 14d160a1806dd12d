#!/usr/bin/env bash
# The traffic generator (perf/src/bin/trafgen.rs) on DPDK vdevs:
# 1. loopback over net_ring: a fixed-rate trial loses nothing and measures latency; an RFC 2544
#    search ends at a rate that passed;
# 2. through our gateway, on net_af_packet over two veth pairs between two network namespaces
#    (generator | gateway): clear packets in, ESP out that the generator decrypts with the
#    gateway's outbound SA; and ESP in, sealed by the generator as the peer, clear out. Each
#    direction: a search, then the JSON must show a throughput, a passing trial at that rate
#    with no loss, and latency percentiles.
#
# usage: trafgen.sh TRAFGEN_BINARY DATAPLANE_BINARY
set -uo pipefail
tg=$(realpath "$1")
dp=$(realpath "$2")
p=tg$$
work=$(mktemp -d)
pass=0 fail=0
ok() { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; fail=$((fail + 1)); }
gw_pid=

cleanup() {
  [ -n "$gw_pid" ] && kill -INT "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  ip netns del "$p-gen" 2>/dev/null
  ip netns del "$p-gw" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# check JSON_FILE WHAT: a throughput, its trial passed with no loss, and latency percentiles.
check() {
  if python3 - "$1" <<'PY'; then ok "$2"; else bad "$2: $(head -c 600 "$1")"; fi
import json, sys
d = json.load(open(sys.argv[1]))
t = d["throughput_mpps"]
assert t and t > 0, "no throughput"
best = [x for x in d["trials"] if x["pass"] and x["offered_mpps"] == t]
assert best and best[0]["lost"] == 0 and best[0]["received"] == best[0]["sent"] > 0, best
lat = d["latency_us_at_throughput"]
assert lat and 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
print(f"  throughput {t:.3f} Mpps, latency p50 {lat['p50']:.1f} us, p99 {lat['p99']:.1f} us; {len(d['trials'])} trials")
PY
}

eal_gen() { # file prefix, vdevs...
  echo -l 0 --no-huge -m 512 --no-pci --file-prefix="$1" --log-level=lib.eal:error "${@:2}"
}

# 1. Loopback.
# shellcheck disable=SC2046
if "$tg" --tx-port net_ring0 --rx-port net_ring0 --size 64 --rate-mpps 0.2 --duration 0.5 --json "$work/ring.json" \
  -- $(eal_gen "$p-ring" --vdev=net_ring0) >"$work/ring.out" 2>&1 \
  && python3 -c "import json,sys; t=json.load(open('$work/ring.json'))['trials'][0]; sys.exit(not (t['pass'] and t['lost']==0 and t['sent']==100000 and t['latency_us']))"; then
  ok "loopback on net_ring: 100000 packets at 0.2 Mpps, none lost, latency measured"
else
  bad "loopback trial: $(tail -3 "$work/ring.out")"
fi
# shellcheck disable=SC2046
"$tg" --tx-port net_ring0 --rx-port net_ring0 --size imix --search --max-mpps 2 --duration 0.2 --resolution 0.05 \
  --json "$work/ring-search.json" -- $(eal_gen "$p-ring" --vdev=net_ring0) >"$work/ring-search.out" 2>&1
check "$work/ring-search.json" "loopback on net_ring: RFC 2544 search, IMIX"

# 2. Through the gateway.
ip netns add "$p-gen"
ip netns add "$p-gw"
mac_gw_p=02:00:00:00:01:01 mac_gw_u=02:00:00:00:01:02 mac_gen_p=02:00:00:00:02:01 mac_gen_u=02:00:00:00:02:02
ip link add tgp netns "$p-gen" address $mac_gen_p type veth peer name gwp netns "$p-gw" address $mac_gw_p
ip link add tgu netns "$p-gen" address $mac_gen_u type veth peer name gwu netns "$p-gw" address $mac_gw_u
for n in gen gw; do
  for i in $(ip -n "$p-$n" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip netns exec "$p-$n" sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1" 2>/dev/null
    # Room for IMIX's 1500-byte packets in ESP.
    [ "$i" = lo ] || ip -n "$p-$n" link set "$i" mtu 1600
    ip -n "$p-$n" link set "$i" up
  done
done

k_out=00112233445566778899aabbccddeeff s_out=0a0b0c0d
k_in=ffeeddccbbaa99887766554433221100 s_in=01020304
cat >"$work/gw.toml" <<CONF
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "-l", "1", "--file-prefix", "$p-gw", "--log-level=lib.eal:error",
        "--vdev=net_af_packet0,iface=gwp", "--vdev=net_af_packet1,iface=gwu"]

[dataplane]
exception_path = false
crypto = "auto"
control_socket = "$work/gw.sock"

[[port]]
name = "net_af_packet0"
role = "protected"
mac = "$mac_gw_p"
addresses = ["10.1.0.1/24"]

[[port]]
name = "net_af_packet1"
role = "unprotected"
mac = "$mac_gw_u"
addresses = ["192.0.2.1/24"]
mtu = 1600

[[neighbor]]
port = "net_af_packet0"
ip = "10.1.0.10"
mac = "$mac_gen_p"

[[neighbor]]
port = "net_af_packet1"
ip = "192.0.2.2"
mac = "$mac_gen_u"

[[sa]]
name = "out"
spi = 0x1000
direction = "out"
algorithm = "aes128gcm16"
key = "$k_out"
salt = "$s_out"
local = "192.0.2.1"
remote = "192.0.2.2"

[[sa]]
name = "in"
spi = 0x2000
direction = "in"
algorithm = "aes128gcm16"
key = "$k_in"
salt = "$s_in"
local = "192.0.2.1"
remote = "192.0.2.2"

[[policy]]
name = "nets"
src = "10.1.0.0/24"
dst = "10.2.0.0/24"
action = "protect"
sa_out = "out"
sa_in = "in"
CONF
ip netns exec "$p-gw" "$dp" run --config "$work/gw.toml" >"$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!
for _ in $(seq 100); do [ -S "$work/gw.sock" ] && break; sleep 0.1; done
if [ -S "$work/gw.sock" ]; then ok "gateway up on net_af_packet"; else bad "gateway did not start: $(tail -5 "$work/gw.err")"; exit 1; fi

# Rates for af_packet over veth on a shared core: well below a NIC's.
# shellcheck disable=SC2046
ip netns exec "$p-gen" "$tg" --tx-port net_af_packet0 --rx-port net_af_packet1 --dst-mac $mac_gw_p \
  --src 10.1.0.10 --dst 10.2.0.10 --size imix --flows 8 --rx-esp "spi=0x1000,key=$k_out,salt=$s_out" \
  --search --max-mpps 0.4 --duration 0.5 --resolution 0.05 --json "$work/out.json" \
  -- $(eal_gen "$p-gen" --vdev=net_af_packet0,iface=tgp --vdev=net_af_packet1,iface=tgu) >"$work/out.out" 2>&1
check "$work/out.json" "through the gateway, clear in / ESP out (decrypted by the generator): RFC 2544 search, IMIX"
# shellcheck disable=SC2046
ip netns exec "$p-gen" "$tg" --tx-port net_af_packet1 --rx-port net_af_packet0 --dst-mac $mac_gw_u \
  --src 10.2.0.10 --dst 10.1.0.10 --size 64 --tx-esp "spi=0x2000,key=$k_in,salt=$s_in,local=192.0.2.2,remote=192.0.2.1" \
  --search --max-mpps 0.4 --duration 0.5 --resolution 0.05 --json "$work/in.json" \
  -- $(eal_gen "$p-gen" --vdev=net_af_packet0,iface=tgp --vdev=net_af_packet1,iface=tgu) >"$work/in.out" 2>&1
check "$work/in.json" "through the gateway, ESP in (sealed by the generator) / clear out: RFC 2544 search, 64 B"

"$dp" stats --socket "$work/gw.sock" --json >"$work/stats.json" 2>&1
# Every ESP packet the generator sealed authenticated, and both directions carried traffic.
if python3 - "$work/stats.json" <<'PY'; then ok "gateway: traffic both ways, no authentication failures"; else bad "gateway counters: $(head -c 800 "$work/stats.json")"; fi
import json, sys
d = json.load(open(sys.argv[1]))
enc = sum(c["encrypted"] for c in d["cores"])
dec = sum(c["decrypted"] for c in d["cores"])
drops = {x["reason"]: x["count"] for x in d["drops"]}
print(f"  gateway: {enc} encrypted, {dec} decrypted, drops {drops}")
assert enc > 0 and dec > 0
assert "AuthFailed" not in drops and "BadInnerPacket" not in drops, drops
PY
grep -E "^(trial|throughput|note)" "$work/out.out" "$work/in.out" | sed 's/^/  /' | cut -c1-220

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
