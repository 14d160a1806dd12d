# Gateway b of the netns-topology as a strongSwan 5.9 peer (kernel-libipsec: userspace ESP in
# UDP 4500), for tests/interop_strongswan.sh and scripts/demo. Source it after setting p (the
# namespace prefix) and work (scratch directory); recipe: ../shared/interop/STRONGSWAN.md.
#
#   ss_start IKE_PROPOSAL ESP_PROPOSAL PSK   set up gwb and start charon; sets ss and ss_pid
#   ss_swanctl ARGS...                       swanctl against that charon
# Set ss_ipv6=1 before ss_start for IKE and ESP over IPv6 (fd77::2 <-> fd77::1, as gw-config
# with GW_IPV6_OUTER=1) and IPv6 traffic selectors (fd02::/64 <-> fd01::/64).
# Set ss_pki=DIR before ss_start to authenticate with certificates instead of the PSK:
# DIR/ca.pem is the CA both trust, DIR/b.pem and DIR/b.key strongSwan's certificate and key
# (ss_make_pki makes them).
# Set ss_children="NAME=TS NAME=TS ..." before ss_start for several Child SAs, each from
# strongSwan's subnet to the part TS of the remote one, instead of the one child "net".
# (Each needs a remote TS of its own: kernel-libipsec routes each child's remote TS.)

ss_start() {
  local ike_prop=$1 esp_prop=$2 psk=$3 auth=psk
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
  if [ -n "${ss_pki:-}" ]; then
    auth=pubkey
    mkdir -p "$ss/swanctl/x509ca" "$ss/swanctl/x509" "$ss/swanctl/private"
    cp "$ss_pki/ca.pem" "$ss/swanctl/x509ca/"
    cp "$ss_pki/b.pem" "$ss/swanctl/x509/"
    cp "$ss_pki/b.key" "$ss/swanctl/private/"
  fi
  cat >"$ss/strongswan.conf" <<CONF
charon {
  load = random nonce openssl aes gcm sha1 sha2 hmac kdf pem pkcs1 pkcs8 x509 pubkey curve25519 gmp kernel-libipsec kernel-netlink socket-default vici updown
  port = 500
  port_nat_t = 4500
  install_routes = yes
  filelog {
    charon {
      path = $ss/charon.log
      flush_line = yes
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
      auth = $auth
      id = b@example.test
      $([ "$auth" = pubkey ] && echo "certs = b.pem")
    }
    remote {
      auth = $auth
      id = a@example.test
    }
    children {
$(for c in ${ss_children:-net=$remote_ts}; do
    printf '      %s {\n        local_ts = %s\n        remote_ts = %s\n        mode = tunnel\n        esp_proposals = %s\n      }\n' \
      "${c%%=*}" "$local_ts" "${c#*=}" "$esp_prop"
  done)
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

# ss_make_pki DIR ecdsa|rsa: a CA and a certificate for each gateway, made by strongSwan's pki:
# a.pem/a.key for ours (subject CN=a.example.test, subjectAltName a@example.test) and
# b.pem/b.key for strongSwan's (b@example.test).
ss_make_pki() {
  local dir=$1 type=$2 size=256 g
  [ "$type" = rsa ] && size=3072
  mkdir -p "$dir"
  pki --gen --type "$type" --size "$size" --outform pem >"$dir/ca.key" 2>/dev/null
  pki --self --ca --lifetime 30 --in "$dir/ca.key" --type "$type" --dn "C=CH, O=Interop, CN=Interop CA" \
    --outform pem >"$dir/ca.pem" 2>/dev/null
  for g in a b; do
    [ "$type" = rsa ] && size=2048
    pki --gen --type "$type" --size "$size" --outform pem >"$dir/$g.key" 2>/dev/null
    pki --pub --in "$dir/$g.key" --type "$type" 2>/dev/null \
      | pki --issue --lifetime 30 --cacert "$dir/ca.pem" --cakey "$dir/ca.key" \
        --dn "C=CH, O=Interop, CN=$g.example.test" --san "$g@example.test" --outform pem >"$dir/$g.pem" 2>/dev/null
  done
  [ -s "$dir/a.pem" ] && [ -s "$dir/b.pem" ]
}

ss_swanctl() {
  ip netns exec "$p-gwb" swanctl "$@" --uri "unix://$ss/charon.vici"
}
