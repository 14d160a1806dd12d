//! The dataplane's TOML configuration: DPDK EAL arguments, ports with their roles and the
//! gateway's own addresses, routes, static neighbours, manually keyed SAs and the security
//! policy database. [`Config::load`] refuses a bad file with the field and the reason.

use crate::net::{Mac, Prefix};
use crate::policy::{PortRange, Selector};
use esp::aead::{GcmKeyLen, KeyMaterial};
use esp::sa::{SaConfig, UdpEncap};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

/// A refused configuration: which field, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Syntax(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field { field: field.into(), reason: reason.into() }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    eal: RawEal,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default, rename = "port")]
    ports: Vec<RawPort>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default, rename = "neighbor")]
    neighbors: Vec<RawNeighbor>,
    #[serde(default, rename = "sa")]
    sas: Vec<RawSa>,
    #[serde(default, rename = "policy")]
    policies: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEal {
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    mbufs: Option<u32>,
    burst: Option<usize>,
    idle_sleep_us: Option<u64>,
    control_socket: Option<String>,
    rx_desc: Option<u16>,
    max_sas: Option<usize>,
    /// AES-GCM implementation: "auto" (the fastest here), "aes-gcm", "aws-lc" or "ipsec-mb".
    crypto: Option<String>,
    /// false: no TAPs; what would go to the host stack is dropped (benchmarks).
    exception_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    role: String,
    #[serde(default)]
    addresses: Vec<String>,
    tap: Option<String>,
    mtu: Option<u16>,
    mac: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    via: Option<String>,
    port: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    ip: String,
    mac: String,
    port: String,
}

pub use ctlproto::{RawPolicy, RawSa, RawSelector};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Faces the protected networks: plaintext in, plaintext out.
    Protected,
    /// Faces the peers: ESP in, ESP out.
    Unprotected,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Protected, Role::Unprotected];

    /// As the configuration file and the counters spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Protected => "protected",
            Role::Unprotected => "unprotected",
        }
    }
}

#[derive(Clone, Debug)]
pub struct PortConf {
    pub name: String,
    pub role: Role,
    /// The gateway's own addresses on this port, with their subnets.
    pub addresses: Vec<Prefix>,
    /// Kernel interface name of the exception-path TAP.
    pub tap: String,
    pub mtu: u16,
    /// Overrides the port's own MAC address.
    pub mac: Option<Mac>,
}

#[derive(Clone, Debug)]
pub struct RouteConf {
    pub prefix: Prefix,
    pub via: Option<IpAddr>,
    pub port: usize,
}

#[derive(Clone, Debug)]
pub struct NeighborConf {
    pub ip: IpAddr,
    pub mac: Mac,
    pub port: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// Soft and hard lifetimes of an SA; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
    pub soft_packets: Option<u64>,
    pub hard_packets: Option<u64>,
    pub soft_secs: Option<u64>,
    pub hard_secs: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct SaConf {
    pub name: String,
    pub direction: Direction,
    pub sa: SaConfig,
    /// Inbound: explicit traffic selectors (else those of the policies naming the SA).
    pub selectors: Option<Vec<Selector>>,
    pub lifetime: Lifetime,
}

/// What a policy does, with SAs by name (they may come and go while the policy stays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    Protect { sa_out: String, sa_in: Option<String> },
    Bypass,
    Discard,
}

#[derive(Clone, Debug)]
pub struct PolicyConf {
    pub name: String,
    pub selector: Selector,
    pub action: PolicyAction,
    pub priority: u32,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub eal_args: Vec<String>,
    pub mbufs: u32,
    pub burst: usize,
    pub idle_sleep_us: u64,
    pub rx_desc: u16,
    pub control_socket: Option<String>,
    /// SA slots (the per-core per-SA counters are sized for them).
    pub max_sas: usize,
    /// The AES-GCM backend by name, or "auto".
    pub crypto: String,
    /// Kernel TAPs for traffic to the gateway itself (ARP, ND, IKE); off only for benchmarks.
    pub exception_path: bool,
    pub ports: Vec<PortConf>,
    pub routes: Vec<RouteConf>,
    pub neighbors: Vec<NeighborConf>,
    pub sas: Vec<SaConf>,
    pub policies: Vec<PolicyConf>,
}

/// The values of `[dataplane] crypto` (see [`crate::crypto`]).
pub const CRYPTO_NAMES: [&str; 4] = ["auto", "aes-gcm", "aws-lc", "ipsec-mb"];

/// Hex digits (optionally after `0x`) as bytes; `None` for an odd count or a non-hex character.
/// Written into a vector of its final size, so that no outgrown copy of key material is left
/// behind (a caller parsing a key wipes the result).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_start_matches("0x");
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    for i in (0..s.len()).step_by(2) {
        out.push(u8::from_str_radix(&s[i..i + 2], 16).ok()?);
    }
    Some(out)
}

fn parse_proto(v: &Option<toml::Value>) -> Result<Option<u8>, String> {
    match v {
        None => Ok(None),
        Some(toml::Value::Integer(n)) => u8::try_from(*n).map(Some).map_err(|_| "protocol number must be 0-255".into()),
        Some(toml::Value::String(s)) => match s.as_str() {
            "any" => Ok(None),
            "icmp" => Ok(Some(1)),
            "tcp" => Ok(Some(6)),
            "udp" => Ok(Some(17)),
            "ipv6-icmp" | "icmpv6" => Ok(Some(58)),
            "sctp" => Ok(Some(132)),
            other => other.parse::<u8>().map(Some).map_err(|_| format!("unknown protocol {other:?}")),
        },
        Some(_) => Err("protocol must be a name (tcp, udp, icmp, any) or a number".into()),
    }
}

/// Checks one selector; `f` names its fields for the error.
pub fn check_selector(
    src: &str,
    dst: &str,
    proto: &Option<toml::Value>,
    sport: Option<&str>,
    dport: Option<&str>,
    f: &dyn Fn(&str) -> String,
) -> Result<Selector, ConfigError> {
    let src: Prefix = src.parse().map_err(|e: &str| field(f("src"), e))?;
    let dst: Prefix = dst.parse().map_err(|e: &str| field(f("dst"), e))?;
    if src.addr.is_ipv4() != dst.addr.is_ipv4() {
        return Err(field(f("dst"), "src and dst are of different address families"));
    }
    let proto = parse_proto(proto).map_err(|e| field(f("proto"), e))?;
    let sport = PortRange::parse(sport).map_err(|e| field(f("sport"), e))?;
    let dport = PortRange::parse(dport).map_err(|e| field(f("dport"), e))?;
    Ok(Selector { src, dst, proto, sport, dport })
}

/// Checks one SA; `f` turns a field name into the name shown in errors (`sa[3].key`).
pub fn check_sa(s: &RawSa, f: &dyn Fn(&str) -> String) -> Result<SaConf, ConfigError> {
    if s.name.is_empty() {
        return Err(field(f("name"), "an SA needs a name"));
    }
    let direction = match s.direction.as_str() {
        "in" | "inbound" => Direction::In,
        "out" | "outbound" => Direction::Out,
        other => return Err(field(f("direction"), format!("{other:?} is neither \"in\" nor \"out\""))),
    };
    let alg = match s.algorithm.as_str() {
        "aes128gcm16" | "aes128gcm" | "aes-gcm-128" => GcmKeyLen::Aes128,
        "aes256gcm16" | "aes256gcm" | "aes-gcm-256" => GcmKeyLen::Aes256,
        other => {
            return Err(field(f("algorithm"), format!("{other:?} is not supported; use aes128gcm16 or aes256gcm16")));
        }
    };
    let key = zeroize::Zeroizing::new(parse_hex(&s.key).ok_or_else(|| field(f("key"), "must be hex digits"))?);
    let salt = zeroize::Zeroizing::new(parse_hex(&s.salt).ok_or_else(|| field(f("salt"), "must be hex digits"))?);
    if key.len() != alg.key_len() {
        return Err(field(f("key"), format!("{} needs a {}-byte key, got {}", s.algorithm, alg.key_len(), key.len())));
    }
    let key = KeyMaterial::new(alg, &key, &salt).map_err(|e| field(f("salt"), e))?;
    let local: IpAddr = s.local.parse().map_err(|_| field(f("local"), "not an IP address"))?;
    let remote: IpAddr = s.remote.parse().map_err(|_| field(f("remote"), "not an IP address"))?;
    let encap = s.udp_encap.then(|| UdpEncap {
        sport: s.udp_sport.unwrap_or(esp::wire::NAT_T_PORT),
        dport: s.udp_dport.unwrap_or(esp::wire::NAT_T_PORT),
    });
    if !s.udp_encap && (s.udp_sport.is_some() || s.udp_dport.is_some()) {
        return Err(field(f("udp_sport"), "UDP ports need udp_encap = true"));
    }
    let sa = SaConfig {
        spi: s.spi,
        key,
        local,
        remote,
        encap,
        esn: s.esn,
        replay_window: s.replay_window.unwrap_or(1024),
        // The gateway's choice (`[dataplane] crypto`) is set when the SA is installed.
        backend: Default::default(),
    };
    if let Err(e) = sa.validate() {
        let which = if e.contains("SPI") { "spi" } else { "remote" };
        return Err(field(f(which), e));
    }
    if direction == Direction::In
        && let Err(e) = esp::replay::ReplayWindow::new(sa.replay_window, sa.esn)
    {
        return Err(field(f("replay_window"), e));
    }
    let selectors = match &s.selectors {
        None => None,
        Some(list) => {
            if direction == Direction::Out {
                return Err(field(
                    f("selectors"),
                    "only inbound SAs carry selectors; outbound traffic is chosen by policies",
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            for (j, r) in list.iter().enumerate() {
                let g = |n: &str| f(&format!("selectors[{j}].{n}"));
                out.push(check_selector(&r.src, &r.dst, &r.proto, r.sport.as_deref(), r.dport.as_deref(), &g)?);
            }
            Some(out)
        }
    };
    let lifetime = Lifetime {
        soft_bytes: s.soft_bytes,
        hard_bytes: s.hard_bytes,
        soft_packets: s.soft_packets,
        hard_packets: s.hard_packets,
        soft_secs: s.soft_secs,
        hard_secs: s.hard_secs,
    };
    for (soft, hard, name) in [
        (lifetime.soft_bytes, lifetime.hard_bytes, "soft_bytes"),
        (lifetime.soft_packets, lifetime.hard_packets, "soft_packets"),
        (lifetime.soft_secs, lifetime.hard_secs, "soft_secs"),
    ] {
        if let (Some(s), Some(h)) = (soft, hard)
            && s >= h
        {
            return Err(field(f(name), "the soft limit must be below the hard limit"));
        }
    }
    Ok(SaConf { name: s.name.clone(), direction, sa, selectors, lifetime })
}

/// Checks one policy; `find_sa` tells the direction of an SA by name (None: no such SA).
/// With `allow_missing`, a protect policy may name SAs that do not exist yet (the control
/// plane installs the policy first, and is asked for the SA when traffic needs it).
pub fn check_policy(
    p: &RawPolicy,
    f: &dyn Fn(&str) -> String,
    find_sa: &dyn Fn(&str) -> Option<Direction>,
    allow_missing: bool,
) -> Result<PolicyConf, ConfigError> {
    if p.name.is_empty() {
        return Err(field(f("name"), "a policy needs a name"));
    }
    let selector = check_selector(&p.src, &p.dst, &p.proto, p.sport.as_deref(), p.dport.as_deref(), f)?;
    let sa = |name: &Option<String>, fname: &str, dir: Direction| -> Result<Option<String>, ConfigError> {
        let Some(name) = name else { return Ok(None) };
        match find_sa(name) {
            None if allow_missing => Ok(Some(name.clone())),
            None => Err(field(f(fname), format!("no SA named {name:?}"))),
            Some(d) if d != dir => Err(field(f(fname), format!("SA {name:?} has the wrong direction"))),
            Some(_) => Ok(Some(name.clone())),
        }
    };
    let action = match p.action.as_str() {
        "protect" => {
            let Some(sa_out) = sa(&p.sa_out, "sa_out", Direction::Out)? else {
                return Err(field(f("sa_out"), "a protect policy names its outbound SA"));
            };
            PolicyAction::Protect { sa_out, sa_in: sa(&p.sa_in, "sa_in", Direction::In)? }
        }
        "bypass" => PolicyAction::Bypass,
        "discard" => PolicyAction::Discard,
        other => return Err(field(f("action"), format!("{other:?} is not protect, bypass or discard"))),
    };
    if !matches!(action, PolicyAction::Protect { .. }) && (p.sa_out.is_some() || p.sa_in.is_some()) {
        return Err(field(f("action"), "only protect policies name SAs"));
    }
    Ok(PolicyConf { name: p.name.clone(), selector, action, priority: p.priority.unwrap_or(100) })
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let d = &raw.dataplane;
        let burst = d.burst.unwrap_or(32);
        if !(1..=256).contains(&burst) {
            return Err(field("dataplane.burst", "must be between 1 and 256"));
        }
        let mbufs = d.mbufs.unwrap_or(8191);
        if mbufs < 1024 {
            return Err(field("dataplane.mbufs", "at least 1024 mbufs are needed"));
        }

        let mut ports = Vec::new();
        for (i, p) in raw.ports.iter().enumerate() {
            let f = |n: &str| format!("port[{i}].{n}");
            if p.name.is_empty() {
                return Err(field(f("name"), "must name a DPDK device (PCI address or vdev name)"));
            }
            if ports.iter().any(|q: &PortConf| q.name == p.name) {
                return Err(field(f("name"), format!("port {:?} is listed twice", p.name)));
            }
            let Some(role) = Role::ALL.into_iter().find(|r| r.name() == p.role) else {
                return Err(field(f("role"), format!("{:?} is neither \"protected\" nor \"unprotected\"", p.role)));
            };
            let mut addresses = Vec::new();
            for (j, a) in p.addresses.iter().enumerate() {
                let pre: Prefix = a.parse().map_err(|e: &str| field(format!("port[{i}].addresses[{j}]"), e))?;
                addresses.push(pre);
            }
            let tap = p.tap.clone().unwrap_or_else(|| format!("gwtap{i}"));
            if tap.is_empty() || tap.len() > 15 {
                return Err(field(f("tap"), "an interface name has 1 to 15 characters"));
            }
            let mtu = p.mtu.unwrap_or(1500);
            if !(576..=9000).contains(&mtu) {
                return Err(field(f("mtu"), "must be between 576 and 9000"));
            }
            let mac = match &p.mac {
                Some(m) => Some(m.parse::<Mac>().map_err(|e| field(f("mac"), e))?),
                None => None,
            };
            if mac.is_some_and(|m| m.is_multicast()) {
                return Err(field(f("mac"), "a port's MAC address must be unicast"));
            }
            ports.push(PortConf { name: p.name.clone(), role, addresses, tap, mtu, mac });
        }
        if ports.is_empty() {
            return Err(field("port", "at least one port is needed"));
        }
        let port_index = |name: &str, fname: String| {
            ports.iter().position(|p| p.name == name).ok_or_else(|| field(fname, format!("no port named {name:?}")))
        };

        let mut routes = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            let prefix: Prefix = r.prefix.parse().map_err(|e: &str| field(format!("route[{i}].prefix"), e))?;
            let via = match &r.via {
                Some(v) => {
                    Some(v.parse::<IpAddr>().map_err(|_| field(format!("route[{i}].via"), "not an IP address"))?)
                }
                None => None,
            };
            if via.is_some_and(|v| v.is_ipv4() != prefix.addr.is_ipv4()) {
                return Err(field(format!("route[{i}].via"), "next hop and prefix are of different families"));
            }
            let port = port_index(&r.port, format!("route[{i}].port"))?;
            routes.push(RouteConf { prefix, via, port });
        }

        let mut neighbors = Vec::new();
        for (i, n) in raw.neighbors.iter().enumerate() {
            let ip = n.ip.parse().map_err(|_| field(format!("neighbor[{i}].ip"), "not an IP address"))?;
            let mac = n.mac.parse().map_err(|e: &str| field(format!("neighbor[{i}].mac"), e))?;
            let port = port_index(&n.port, format!("neighbor[{i}].port"))?;
            neighbors.push(NeighborConf { ip, mac, port });
        }

        // Indexed, so that a configuration of 100,000 tunnels loads in linear time.
        let mut sas: Vec<SaConf> = Vec::new();
        let mut directions: std::collections::HashMap<&str, Direction> = Default::default();
        let mut inbound_spis = std::collections::HashSet::new();
        for (i, s) in raw.sas.iter().enumerate() {
            let f = |n: &str| format!("sa[{i}].{n}");
            if directions.contains_key(s.name.as_str()) {
                return Err(field(f("name"), format!("SA name {:?} is used twice", s.name)));
            }
            let sa = check_sa(s, &f)?;
            if sa.direction == Direction::In && !inbound_spis.insert(s.spi) {
                return Err(field(f("spi"), format!("inbound SPI {:#x} is used twice", s.spi)));
            }
            directions.insert(&s.name, sa.direction);
            sas.push(sa);
        }

        let crypto = d.crypto.clone().unwrap_or_else(|| "auto".into());
        if !CRYPTO_NAMES.contains(&crypto.as_str()) {
            return Err(field("dataplane.crypto".to_string(), format!("one of {}", CRYPTO_NAMES.join(", "))));
        }
        let mut policies = Vec::new();
        for (i, p) in raw.policies.iter().enumerate() {
            let f = |n: &str| format!("policy[{i}].{n}");
            let find = |name: &str| directions.get(name).copied();
            policies.push(check_policy(p, &f, &find, false)?);
        }

        Ok(Config {
            eal_args: raw.eal.args,
            mbufs,
            burst,
            idle_sleep_us: d.idle_sleep_us.unwrap_or(0),
            rx_desc: d.rx_desc.unwrap_or(1024),
            control_socket: d.control_socket.clone(),
            max_sas: d.max_sas.unwrap_or(4096).max(raw.sas.len()),
            crypto,
            exception_path: d.exception_path.unwrap_or(true),
            ports,
            routes,
            neighbors,
            sas,
            policies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[eal]
args = ["--no-huge", "-m", "256"]

[[port]]
name = "net_tap0"
role = "protected"
addresses = ["10.1.0.1/24"]

[[port]]
name = "net_tap1"
role = "unprotected"
addresses = ["192.0.2.1/24", "2001:db8::1/64"]

[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.254"
port = "net_tap1"

[[sa]]
name = "out"
spi = 0x1001
direction = "out"
algorithm = "aes128gcm16"
key = "00112233445566778899aabbccddeeff"
salt = "01020304"
local = "192.0.2.1"
remote = "192.0.2.2"
udp_encap = true

[[sa]]
name = "in"
spi = 0x2001
direction = "in"
algorithm = "aes256gcm16"
key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
salt = "01020304"
local = "192.0.2.1"
remote = "192.0.2.2"
esn = true
replay_window = 4096

[[policy]]
name = "net"
src = "10.1.0.0/24"
dst = "10.2.0.0/24"
action = "protect"
sa_out = "out"
sa_in = "in"
"#;

    #[test]
    fn a_good_file_loads() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.sas[1].sa.replay_window, 4096);
        assert_eq!(c.sas[0].sa.encap, Some(UdpEncap { sport: 4500, dport: 4500 }));
        assert_eq!(c.policies[0].action, PolicyAction::Protect { sa_out: "out".into(), sa_in: Some("in".into()) });
        assert_eq!(c.ports[0].tap, "gwtap0");
        // The roles' names read back as the file spells them.
        assert_eq!(c.ports.iter().map(|p| p.role.name()).collect::<Vec<_>>(), ["protected", "unprotected"]);
    }

    fn refused(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        Config::parse(&GOOD.replacen(from, to, 1)).unwrap_err().to_string()
    }

    #[test]
    fn bad_fields_are_named() {
        let e = refused("key = \"00112233445566778899aabbccddeeff\"", "key = \"0011\"");
        assert!(e.starts_with("sa[0].key:"), "{e}");
        let e = refused("salt = \"01020304\"", "salt = \"0102\"");
        assert!(e.starts_with("sa[0].salt:"), "{e}");
        let e = refused("spi = 0x1001", "spi = 7");
        assert!(e.starts_with("sa[0].spi:"), "{e}");
        let e = refused("replay_window = 4096", "replay_window = 8");
        assert!(e.starts_with("sa[1].replay_window:"), "{e}");
        let e = refused("role = \"protected\"", "role = \"inside\"");
        assert!(e.starts_with("port[0].role:"), "{e}");
        let e = refused("sa_in = \"in\"", "sa_in = \"nope\"");
        assert!(e.starts_with("policy[0].sa_in:"), "{e}");
        let e = refused("sa_in = \"in\"", "sa_in = \"out\"");
        assert!(e.contains("wrong direction"), "{e}");
        let e = refused("port = \"net_tap1\"", "port = \"eth9\"");
        assert!(e.starts_with("route[0].port:"), "{e}");
        let e = refused("dst = \"10.2.0.0/24\"", "dst = \"2001:db8::/64\"");
        assert!(e.starts_with("policy[0].dst:"), "{e}");
        let e = refused("algorithm = \"aes128gcm16\"", "algorithm = \"3des\"");
        assert!(e.starts_with("sa[0].algorithm:"), "{e}");
        let e = refused("remote = \"192.0.2.2\"", "remote = \"2001:db8::2\"");
        assert!(e.starts_with("sa[0].remote:"), "{e}");
        let e = refused("[[port]]", "[[port]]\nspeed = 3");
        assert!(e.contains("speed"), "{e}");
    }
}
