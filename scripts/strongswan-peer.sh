# Gateway b of the netns-topology as a strongSwan 5.9 peer (kernel-libipsec: userspace ESP in
# UDP 4500), for tests/interop_strongswan.sh and scripts/demo. Source it after setting p (the
# namespace prefix) and work (scratch directory); recipe: ../shared/interop/STRONGSWAN.md.
#
#   ss_start IKE_PROPOSAL ESP_PROPOSAL PSK   set up gwb and start charon; sets ss and ss_pid
#   ss_swanctl ARGS...                       swanctl against that charon
# Set ss_ipv6=1 before ss_start for IKE and ESP over IPv6 (fd77::2 <-> fd77::1, as gw-config
# with GW_IPV6_OUTER=1) and IPv6 traffic selectors (fd02::/64 <-> fd01::/64).

ss_start() {
  local ike_prop=$1 esp_prop=$2 psk=$3
  local local_addr=10.77.0.2 remote_addr=10.77.0.1 local_ts=10.2.0.0/24 remote_ts=10.1.0.0/24
  # Gateway b is a plain Linux router running charon: its stack must see its own interfaces.
  ip netns exec "$p-gwb" nft delete table netdev dataplane_only
  if [ -n "${ss_ipv6:-}" ]; then
    local_addr=fd77::2 remote_addr=fd77::1 local_ts=fd02::/64 remote_ts=fd01::/64
    # A router (forwarding first: it then sends no router solicitations). netns-topology left
    # IPv6 off on the gateways' veths. nodad: the addresses are usable at once.
    ip netns exec "$p-gwb" sysctl -qw net.ipv6.conf.all.forwarding=1
    ip netns exec "$p-gwb" sysctl -qw net.ipv6.conf.b-unprot.disable_ipv6=0 net.ipv6.conf.b-prot.disable_ipv6=0
    ip netns exec "$p-gwb" ip addr add fd77::2/64 dev b-unprot nodad
    ip netns exec "$p-gwb" ip addr add fd02::1/64 dev b-prot nodad
  else
    ip netns exec "$p-gwb" ip addr add 10.77.0.2/24 dev b-unprot
    ip netns exec "$p-gwb" ip addr add 10.2.0.1/24 dev b-prot
    ip netns exec "$p-gwb" sysctl -qw net.ipv4.ip_forward=1
  fi
  ss=$work/ss
  mkdir -p "$ss/swanctl"
  cat >"$ss/strongswan.conf" <<CONF
charon {
  load = random nonce openssl aes gcm sha1 sha2 hmac kdf pem pkcs1 pkcs8 x509 pubkey curve25519 gmp kernel-libipsec kernel-netlink socket-default vici updown
  port = 500
  port_nat_t = 4500
  install_routes = yes
  filelog {
    charon {
      path = $ss/charon.log
      default = 1
      ike = 2
    }
  }
  plugins {
    vici {
      socket = unix://$ss/charon.vici
    }
  }
}
CONF
  cat >"$ss/swanctl/swanctl.conf" <<CONF
connections {
  gw {
    version = 2
    local_addrs = $local_addr
    remote_addrs = $remote_addr
    proposals = $ike_prop
    local {
      auth = psk
      id = b@example.test
    }
    remote {
      auth = psk
      id = a@example.test
    }
    children {
      net {
        local_ts = $local_ts
        remote_ts = $remote_ts
        mode = tunnel
        esp_proposals = $esp_prop
      }
    }
  }
}
secrets {
  ike-1 {
    id-1 = a@example.test
    id-2 = b@example.test
    secret = "$psk"
  }
}
CONF
  export STRONGSWAN_CONF=$ss/strongswan.conf SWANCTL_DIR=$ss/swanctl
  # A private /run: charon's pid file path is compiled in. Not through a function, so that
  # ss_pid is charon itself.
  ip netns exec "$p-gwb" sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' >"$ss/charon.out" 2>&1 &
  ss_pid=$!
  local _
  for _ in $(seq 50); do [ -S "$ss/charon.vici" ] && break; sleep 0.1; done
}

ss_swanctl() {
  ip netns exec "$p-gwb" swanctl "$@" --uri "unix://$ss/charon.vici"
}
