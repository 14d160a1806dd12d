#!/usr/bin/env bash
# Captures real IKEv2 messages between two strongSwan 5.9 charons (kernel-libipsec) running in two
# network namespaces of their own, and writes them as hex vectors next to this script.
# Needs root, strongswan-charon/swanctl/pki, tcpdump, tshark and python3-cryptography.
# Usage: controlplane/ikev2/tests/vectors/capture.sh [OUTDIR (default: this directory)]
#
# Scenario psk:  PSK on both sides, initiator proposals aes256gcm16-prfsha256-x25519 and
#                aes128gcm16-prfsha256-ecp256, a virtual IP requested from the responder's pool (CP),
#                then a delete of the IKE SA (INFORMATIONAL).
# Scenario cert: ECDSA certificates (AUTH method 14, RFC 7427), initiator proposals
#                aes256-sha256-x25519 and aes128gcm16-prfsha256-ecp256 but a responder that accepts only
#                the ecp256 one, so the first IKE_SA_INIT is answered by INVALID_KE_PAYLOAD; IPv4 and
#                IPv6 traffic selectors with a protocol/port; the initiator offers ESP with and without ESN
#                (libipsec has no ESN, so the responder prefers AES-GCM).
# The messages on port 4500 carry the 4-byte non-ESP marker (RFC 3948), which is stripped here.
# Encrypted (SK) messages are also decrypted with the keys charon logs at `ike = 4` (AES-GCM,
# RFC 5282) and their inner payload chain is written to NAME.inner.txt.
# Traffic stays inside the two namespaces; they are removed on exit.
# SPIs, nonces and keys are random: tests/wire_strongswan.rs pins the SPIs of this capture, so a
# new capture (into another OUTDIR first) means updating those constants.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
W=$(mktemp -d /tmp/ikecap.XXXXXX)
NI=ikecap-i NR=ikecap-r
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  ip netns del $NI 2>/dev/null || true
  ip netns del $NR 2>/dev/null || true
}
trap cleanup EXIT

ip netns add $NI
ip netns add $NR
ip link add ikc-i netns $NI type veth peer name ikc-r netns $NR
ip -n $NI addr add 10.77.0.1/24 dev ikc-i
ip -n $NR addr add 10.77.0.2/24 dev ikc-r
ip -n $NI link set ikc-i up
ip -n $NR link set ikc-r up
ip -n $NI link set lo up
ip -n $NR link set lo up
# An address inside each protected subnet, so that libipsec's routes have a source.
ip -n $NI addr add 10.1.0.1/24 dev lo
ip -n $NR addr add 10.2.0.1/24 dev lo
ip -n $NI addr add fd00:1::1/64 dev lo
ip -n $NR addr add fd00:2::1/64 dev lo

conf() { # DIR
  cat >"$1/strongswan.conf" <<EOF
charon {
  load = random nonce openssl aes gcm sha1 sha2 hmac kdf pem pkcs1 pkcs8 x509 pubkey revocation constraints curve25519 gmp attr kernel-libipsec kernel-netlink socket-default vici updown
  port = 500
  port_nat_t = 4500
  install_routes = yes
  retransmit_tries = 2
  filelog {
    charon {
      path = $1/charon.log
      default = 1
      ike = 4
    }
  }
  plugins {
    vici {
      socket = unix://$1/charon.vici
    }
  }
}
EOF
}

start() { # NS DIR
  STRONGSWAN_CONF=$2/strongswan.conf ip netns exec "$1" sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' \
    >"$2/stdout" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [ -S "$2/charon.vici" ] && break; sleep 0.1; done
  sw "$2" --load-all >/dev/null
}
sw() { # DIR ARGS
  local d=$1; shift
  SWANCTL_DIR=$d/swanctl STRONGSWAN_CONF=$d/strongswan.conf swanctl "$@" --uri "unix://$d/charon.vici"
}
stop() { # wait for both charons to go
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

secrets='secrets {
  ike-1 {
    id-1 = left@example.test
    id-2 = right@example.test
    secret = "a-long-test-psk-0123456789"
  }
}'

scenario_psk() {
  local d=$W/psk
  mkdir -p "$d/i/swanctl" "$d/r/swanctl"
  conf "$d/i"; conf "$d/r"
  cat >"$d/i/swanctl/swanctl.conf" <<EOF
connections {
  gw {
    version = 2
    local_addrs = 10.77.0.1
    remote_addrs = 10.77.0.2
    proposals = aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256
    vips = 0.0.0.0
    local {
      auth = psk
      id = left@example.test
    }
    remote {
      auth = psk
      id = right@example.test
    }
    children {
      net {
        remote_ts = 10.2.0.0/24
        mode = tunnel
        esp_proposals = aes128gcm16, aes256gcm16
      }
    }
  }
}
$secrets
EOF
  cat >"$d/r/swanctl/swanctl.conf" <<EOF
connections {
  gw {
    version = 2
    local_addrs = 10.77.0.2
    remote_addrs = 10.77.0.1
    proposals = aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256
    pools = p4
    local {
      auth = psk
      id = right@example.test
    }
    remote {
      auth = psk
      id = left@example.test
    }
    children {
      net {
        local_ts = 10.2.0.0/24
        mode = tunnel
        esp_proposals = aes128gcm16, aes256gcm16
      }
    }
  }
}
pools {
  p4 {
    addrs = 10.3.0.0/28
  }
}
$secrets
EOF
  run_scenario "$d" psk gw net
}

scenario_cert() {
  local d=$W/cert
  mkdir -p "$d/pki" "$d/i/swanctl"/{x509,x509ca,private} "$d/r/swanctl"/{x509,x509ca,private}
  conf "$d/i"; conf "$d/r"
  (
    cd "$d/pki"
    pki --gen --type ecdsa --size 256 >ca.key
    pki --self --ca --in ca.key --dn "CN=Test CA" >ca.crt
    for n in left right; do
      pki --gen --type ecdsa --size 256 >$n.key
      pki --pub --in $n.key | pki --issue --cacert ca.crt --cakey ca.key --dn "CN=$n.example.test" \
        --san $n.example.test --flag serverAuth --flag ikeIntermediate >$n.crt
    done
  )
  cp "$d/pki/ca.crt" "$d/i/swanctl/x509ca/"; cp "$d/pki/ca.crt" "$d/r/swanctl/x509ca/"
  cp "$d/pki/left.crt" "$d/i/swanctl/x509/"; cp "$d/pki/left.key" "$d/i/swanctl/private/"
  cp "$d/pki/right.crt" "$d/r/swanctl/x509/"; cp "$d/pki/right.key" "$d/r/swanctl/private/"
  cat >"$d/i/swanctl/swanctl.conf" <<EOF
connections {
  gw {
    version = 2
    local_addrs = 10.77.0.1
    remote_addrs = 10.77.0.2
    proposals = aes256-sha256-x25519, aes128gcm16-prfsha256-ecp256
    local {
      auth = pubkey
      certs = left.crt
      id = left.example.test
    }
    remote {
      auth = pubkey
      id = right.example.test
      cacerts = ca.crt
    }
    children {
      net {
        local_ts = 10.1.0.0/24, fd00:1::/64
        remote_ts = 10.2.0.0/24[udp/53], fd00:2::/64
        mode = tunnel
        esp_proposals = aes256-sha256-esn-noesn, aes128gcm16
      }
    }
  }
}
EOF
  cat >"$d/r/swanctl/swanctl.conf" <<EOF
connections {
  gw {
    version = 2
    local_addrs = 10.77.0.2
    remote_addrs = 10.77.0.1
    proposals = aes128gcm16-prfsha256-ecp256
    local {
      auth = pubkey
      certs = right.crt
      id = right.example.test
    }
    remote {
      auth = pubkey
      id = left.example.test
      cacerts = ca.crt
    }
    children {
      net {
        local_ts = 10.2.0.0/24[udp/53], fd00:2::/64
        remote_ts = 10.1.0.0/24, fd00:1::/64
        mode = tunnel
        esp_proposals = aes128gcm16, aes256-sha256-noesn
      }
    }
  }
}
EOF
  run_scenario "$d" cert gw net
}

run_scenario() { # DIR NAME IKE CHILD
  local d=$1 name=$2
  ip netns exec $NI tcpdump -i ikc-i -s 0 -U -w "$d/cap.pcap" 'udp port 500 or udp port 4500' >"$d/tcpdump.log" 2>&1 &
  local tp=$!
  sleep 1
  start $NR "$d/r"
  start $NI "$d/i"
  sw "$d/i" --initiate --ike "$3" --child "$4" --timeout 15 >"$d/initiate.log" 2>&1 || true
  sw "$d/i" --list-sas >"$d/list-sas.log" 2>&1 || true
  sw "$d/i" --terminate --ike "$3" --timeout 10 >"$d/terminate.log" 2>&1 || true
  sleep 1
  stop
  kill $tp; wait $tp 2>/dev/null || true
  cp "$d/cap.pcap" "$W/$name.pcap"
  python3 "$here/extract.py" "$d/cap.pcap" "$d/i/charon.log" "$name" "$out"
}

scenario_psk
scenario_cert
echo "pcaps and logs in $W"
