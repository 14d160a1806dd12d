# Gateway b of the netns-topology as a strongSwan 5.9 peer (kernel-libipsec: userspace ESP in
# UDP 4500), for tests/interop_strongswan.sh and scripts/demo. Source it after setting p (the
# namespace prefix) and work (scratch directory); recipe: ../shared/interop/STRONGSWAN.md.
#
#   ss_start IKE_PROPOSAL ESP_PROPOSAL PSK   set up gwb and start charon; sets ss and ss_pid
#   ss_swanctl ARGS...                       swanctl against that charon

ss_start() {
  local ike_prop=$1 esp_prop=$2 psk=$3
  # Gateway b is a plain Linux router running charon: its stack must see its own interfaces.
  ip netns exec "$p-gwb" nft delete table netdev dataplane_only
  ip netns exec "$p-gwb" ip addr add 10.77.0.2/24 dev b-unprot
  ip netns exec "$p-gwb" ip addr add 10.2.0.1/24 dev b-prot
  ip netns exec "$p-gwb" sysctl -qw net.ipv4.ip_forward=1
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
    local_addrs = 10.77.0.2
    remote_addrs = 10.77.0.1
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
        local_ts = 10.2.0.0/24
        remote_ts = 10.1.0.0/24
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
