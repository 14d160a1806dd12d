//! The daemon's TOML configuration, in the spirit of swanctl.conf: connections with addresses,
//! identities, authentication (PSK or certificates), IKE and ESP proposals and the first Child
//! SA's traffic selectors. A bad file is refused with the field named.

use ikev2::crypto::Secret;
use ikev2::ike::{ChildConfig, Connection, LocalAuth, RemoteAuth};
use ikev2::pki::{Cert, Dn, PrivateKey, TrustStore};
use ikev2::proposal::{Algorithms, Kind};
use ikev2::wire::{IdType, Identification, TrafficSelector};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Syntax(String),
    #[error("{0}: {1}")]
    Field(String, String),
}

/// The longest time a configuration may give (ten years, in seconds).
const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    daemon: RawDaemon,
    #[serde(default, rename = "connection")]
    connections: Vec<RawConnection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    dataplane_socket: Option<String>,
    control_socket: Option<String>,
    /// One address, or a list (IPv4 and IPv6).
    listen: toml::Value,
    /// IKE's port (500 by default).
    #[serde(default)]
    port: Option<u16>,
    /// The NAT traversal port: 4500, the only one allowed (see `Config::parse`).
    #[serde(default)]
    natt_port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    name: String,
    local_addr: String,
    remote_addr: String,
    /// Default with a certificate: its subject DN.
    local_id: Option<String>,
    remote_id: Option<String>,
    psk: Option<String>,
    /// "psk" or "pubkey" (swanctl's names); the default is "pubkey" with `cert`, else "psk".
    local_auth: Option<String>,
    /// "psk" or "pubkey"; the default is "pubkey" with `cacerts`, else "psk".
    remote_auth: Option<String>,
    /// Our certificate (PEM or DER), followed in the same PEM file by any intermediate CA
    /// certificates the peer needs to reach its trust anchor. Relative to the config file.
    cert: Option<String>,
    /// Our private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), PEM or DER.
    key: Option<String>,
    /// CA certificates a peer's certificate must chain to.
    #[serde(default)]
    cacerts: Vec<String>,
    proposals: Vec<String>,
    esp_proposals: Vec<String>,
    /// One Child SA: its name and selectors here, or several in `children`.
    #[serde(default = "child_default")]
    child: String,
    #[serde(default)]
    local_ts: Vec<String>,
    #[serde(default)]
    remote_ts: Vec<String>,
    /// Several Child SAs (the first comes up with IKE_AUTH, the others with CREATE_CHILD_SA).
    #[serde(default)]
    children: Vec<RawChild>,
    #[serde(default)]
    start_action: Option<String>,
    /// Seconds without a message from the peer before a liveness check (RFC 7296 2.4).
    #[serde(default)]
    dpd_delay: Option<u64>,
    /// Seconds after which each Child SA is rekeyed, make-before-break (RFC 7296 2.8).
    #[serde(default)]
    rekey_time: Option<u64>,
    /// Seconds after which the IKE SA is rekeyed (its Child SAs move to the new one).
    #[serde(default)]
    ike_rekey_time: Option<u64>,
    /// Up to this many seconds before rekey_time (and ike_rekey_time) each SA is rekeyed, at
    /// random (RFC 7296 2.8), as strongSwan's rand_time; by default a tenth of each.
    #[serde(default)]
    rand_time: Option<u64>,
    /// Bytes after which a Child SA is rekeyed (counted by the dataplane; it dies at 110%).
    #[serde(default)]
    rekey_bytes: Option<u64>,
    /// Seconds after which a Child SA dies if no rekey replaced it (the dataplane removes it,
    /// RFC 4301 4.4.2.1); by default 110% of rekey_time, as strongSwan does.
    #[serde(default)]
    life_time: Option<u64>,
    /// First retransmission after this many milliseconds (doubling), this many sends in all.
    #[serde(default)]
    retransmit_base_ms: Option<u64>,
    #[serde(default)]
    retransmit_tries: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChild {
    name: String,
    local_ts: Vec<String>,
    remote_ts: Vec<String>,
}

fn child_default() -> String {
    "net".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Wait for the peer.
    None,
    /// Initiate when the daemon starts.
    Start,
    /// Install the policies now; initiate when traffic needs the tunnel (an acquire).
    Trap,
}

pub struct ConnConfig {
    pub conn: Connection,
    pub local: IpAddr,
    /// `None` (`%any`): a responder-only connection for peers on any address, told apart by
    /// their IKE identity.
    pub remote: Option<IpAddr>,
    pub start: StartAction,
    pub rekey_bytes: Option<u64>,
    /// Child SA hard lifetime in seconds.
    pub life_time: Option<u64>,
}

pub struct Config {
    pub dataplane_socket: Option<PathBuf>,
    /// The daemon's own socket for `ikectl`.
    pub control_socket: Option<PathBuf>,
    /// The gateway's addresses the daemon speaks IKE on (ports 500 and 4500 each).
    pub listen: Vec<IpAddr>,
    pub port: u16,
    pub natt_port: u16,
    pub connections: Vec<ConnConfig>,
}

/// An IKE identity written as strongSwan does: an IP address, a distinguished name
/// (`C=CH, O=Org, CN=gw`), `user@domain` (RFC822) or a host name (FQDN). As a remote identity,
/// `*` in a DN value or a leading `*` in a name is a wildcard.
pub fn identity(s: &str) -> Result<Identification, String> {
    Ok(match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Identification { id_type: IdType::IPV4_ADDR, data: a.octets().to_vec() },
        Ok(IpAddr::V6(a)) => Identification { id_type: IdType::IPV6_ADDR, data: a.octets().to_vec() },
        Err(_) if s.contains('=') => {
            Identification { id_type: IdType::DER_ASN1_DN, data: Dn::parse(s)?.der().to_vec() }
        }
        Err(_) if s.contains('@') => Identification::rfc822(s),
        Err(_) => Identification::fqdn(s),
    })
}

fn read_file(base: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = base.join(name);
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The authentication settings of one connection.
fn auth(
    c: &RawConnection,
    base: &Path,
    f: &dyn Fn(&str) -> String,
) -> Result<(LocalAuth, RemoteAuth, Identification), ConfigError> {
    let bad = |n: &str, r: String| ConfigError::Field(f(n), r);
    let psk = || -> Result<Secret, ConfigError> {
        match &c.psk {
            Some(p) if p.len() >= 16 => Ok(Secret::from_slice(p.as_bytes())),
            Some(_) => Err(bad("psk", "a pre-shared key needs at least 16 characters".into())),
            None => Err(bad("psk", "needed for psk authentication".into())),
        }
    };
    let local_kind = c.local_auth.as_deref().unwrap_or(if c.cert.is_some() { "pubkey" } else { "psk" });
    let (local_auth, default_id) = match local_kind {
        "psk" => (LocalAuth::Psk(psk()?), None),
        "pubkey" => {
            let name = c.cert.as_deref().ok_or_else(|| bad("cert", "needed for pubkey authentication".into()))?;
            let mut certs = Cert::load_all(&read_file(base, name).map_err(|e| bad("cert", e))?)
                .map_err(|e| bad("cert", e.to_string()))?;
            let cert = certs.remove(0);
            let key_name = c.key.as_deref().ok_or_else(|| bad("key", "needed with cert".into()))?;
            let key = PrivateKey::load(&read_file(base, key_name).map_err(|e| bad("key", e))?)
                .map_err(|e| bad("key", e.to_string()))?;
            if !key.matches(&cert) {
                return Err(bad("key", "not the key of the certificate".into()));
            }
            let id = cert.subject_id();
            (
                LocalAuth::Cert {
                    cert: Arc::new(cert),
                    chain: certs.into_iter().map(Arc::new).collect(),
                    key: Arc::new(key),
                },
                Some(id),
            )
        }
        _ => return Err(bad("local_auth", "\"psk\" or \"pubkey\"".into())),
    };
    let local_id = match (&c.local_id, default_id) {
        (Some(s), _) => identity(s).map_err(|e| bad("local_id", e))?,
        (None, Some(id)) => id,
        (None, None) => return Err(bad("local_id", "needed without a certificate".into())),
    };
    if let LocalAuth::Cert { cert, .. } = &local_auth
        && !cert.binds(&local_id)
    {
        return Err(bad(
            "local_id",
            format!("not in the certificate \"{}\" (subject or subjectAltName)", cert.subject),
        ));
    }
    let remote_kind = c.remote_auth.as_deref().unwrap_or(if c.cacerts.is_empty() { "psk" } else { "pubkey" });
    let remote_auth = match remote_kind {
        "psk" => RemoteAuth::Psk(psk()?),
        "pubkey" => {
            if c.cacerts.is_empty() {
                return Err(bad("cacerts", "needed for pubkey authentication of the peer".into()));
            }
            let mut cas = Vec::new();
            for name in &c.cacerts {
                let certs = Cert::load_all(&read_file(base, name).map_err(|e| bad("cacerts", e))?)
                    .map_err(|e| bad("cacerts", format!("{name}: {e}")))?;
                cas.extend(certs);
            }
            RemoteAuth::Cert(Arc::new(TrustStore::new(cas).map_err(|e| bad("cacerts", e.to_string()))?))
        }
        _ => return Err(bad("remote_auth", "\"psk\" or \"pubkey\"".into())),
    };
    Ok((local_auth, remote_auth, local_id))
}

/// `10.1.0.0/24` (or one address) as a traffic selector: all protocols and ports.
pub fn selector(s: &str) -> Result<TrafficSelector, String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| "bad prefix length")?)),
        None => (s, None),
    };
    match a.trim().parse::<IpAddr>().map_err(|_| "not an address or prefix")? {
        IpAddr::V4(a) => {
            let len = u32::from(len.unwrap_or(32));
            if len > 32 {
                return Err("prefix length over 32".into());
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let start = u32::from(a) & mask;
            Ok(TrafficSelector::ipv4(Ipv4Addr::from(start), Ipv4Addr::from(start | !mask)))
        }
        IpAddr::V6(a) => {
            let len = u32::from(len.unwrap_or(128));
            if len > 128 {
                return Err("prefix length over 128".into());
            }
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            let start = u128::from(a) & mask;
            Ok(TrafficSelector::ipv6(Ipv6Addr::from(start), Ipv6Addr::from(start | !mask)))
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        Config::parse_in(&text, path.parent().unwrap_or(Path::new(".")))
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, Path::new("."))
    }

    /// Parses `text`; file names in it are relative to `base`.
    pub fn parse_in(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let bad = |f: String, r: &str| ConfigError::Field(f, r.to_string());
        let listen_strs: Vec<String> = match &raw.daemon.listen {
            toml::Value::String(a) => vec![a.clone()],
            toml::Value::Array(v) => v.iter().map(|x| x.as_str().unwrap_or("").to_string()).collect(),
            _ => return Err(bad("daemon.listen".into(), "an address or a list of addresses")),
        };
        let mut listen: Vec<IpAddr> = Vec::new();
        for a in &listen_strs {
            listen.push(a.parse().map_err(|_| bad("daemon.listen".into(), "not an IP address"))?);
        }
        if listen.is_empty() {
            return Err(bad("daemon.listen".into(), "at least one address"));
        }
        let mut connections = Vec::new();
        for (i, c) in raw.connections.iter().enumerate() {
            let f = |n: &str| format!("connection[{i}].{n}");
            let local: IpAddr = c.local_addr.parse().map_err(|_| bad(f("local_addr"), "not an IP address"))?;
            if !listen.contains(&local) {
                return Err(bad(f("local_addr"), "not one of daemon.listen"));
            }
            let remote = match c.remote_addr.as_str() {
                "%any" => None,
                a => Some(a.parse().map_err(|_| bad(f("remote_addr"), "not an IP address or %any"))?),
            };
            if remote.is_some_and(|r: IpAddr| r.is_ipv4() != local.is_ipv4()) {
                return Err(bad(f("remote_addr"), "local and remote addresses are of different families"));
            }
            let (local_auth, remote_auth, local_id) = auth(c, base, &f)?;
            let remote_id = match &c.remote_id {
                Some(s) => Some(identity(s).map_err(|e| bad(f("remote_id"), &e))?),
                None => None,
            };
            let parse_all = |list: &[String], kind: Kind, name: &str| -> Result<Vec<Algorithms>, ConfigError> {
                if list.is_empty() {
                    return Err(bad(f(name), "at least one proposal is needed"));
                }
                list.iter().map(|p| Algorithms::parse(kind, p).map_err(|e| bad(f(name), &e.to_string()))).collect()
            };
            let ike = parse_all(&c.proposals, Kind::Ike, "proposals")?;
            let esp = parse_all(&c.esp_proposals, Kind::Esp, "esp_proposals")?;
            // Proposals that parse but that nothing here can run would fail only when a peer
            // picks them (and a responder would drop the peer's IKE_SA_INIT without a word).
            for a in &ike {
                usable_ike(a).map_err(|e| bad(f("proposals"), &e))?;
            }
            for a in &esp {
                // The dataplane seals and opens with AES-GCM-16 only (RFC 4106), 128 or 256.
                if a.encr.iter().any(|&(e, bits)| e != ikev2::wire::encr::AES_GCM_16 || !matches!(bits, 128 | 256)) {
                    return Err(bad(
                        f("esp_proposals"),
                        "the dataplane runs ESP with AES-GCM-16 only, 128- or 256-bit (aes128gcm16, aes256gcm16)",
                    ));
                }
            }
            let ts = |list: &[String], name: &str| -> Result<Vec<TrafficSelector>, ConfigError> {
                list.iter().map(|s| selector(s).map_err(|e| bad(f(name), &e))).collect()
            };
            let start = match c.start_action.as_deref() {
                None | Some("none") => StartAction::None,
                Some("start") => StartAction::Start,
                Some("trap") => StartAction::Trap,
                Some(_) => return Err(bad(f("start_action"), "start_action is \"start\", \"trap\" or \"none\"")),
            };
            if start != StartAction::None && remote.is_none() {
                return Err(bad(f("start_action"), "a connection to %any can only wait for its peers"));
            }
            // Times past any SA's life would overflow the clock arithmetic of the timers.
            for (name, v) in [
                ("rekey_time", c.rekey_time),
                ("ike_rekey_time", c.ike_rekey_time),
                ("life_time", c.life_time),
                ("rand_time", c.rand_time),
                ("dpd_delay", c.dpd_delay),
            ] {
                if v.is_some_and(|s| s > MAX_SECS) {
                    return Err(bad(f(name), "at most 10 years, in seconds"));
                }
            }
            let life_time = c.life_time.or(c.rekey_time.map(|r| r + r.div_ceil(10)));
            if let (Some(life), Some(rekey)) = (life_time, c.rekey_time)
                && life <= rekey
            {
                return Err(bad(f("life_time"), "must be longer than rekey_time"));
            }
            if let Some(rand) = c.rand_time
                && [c.rekey_time, c.ike_rekey_time].into_iter().flatten().any(|r| rand >= r)
            {
                return Err(bad(f("rand_time"), "must be shorter than rekey_time and ike_rekey_time"));
            }
            let mut children = Vec::new();
            if c.children.is_empty() {
                if c.local_ts.is_empty() || c.remote_ts.is_empty() {
                    return Err(bad(f("local_ts"), "local_ts and remote_ts (or children) are needed"));
                }
                let (local_ts, remote_ts) = (ts(&c.local_ts, "local_ts")?, ts(&c.remote_ts, "remote_ts")?);
                // What the daemon will make of them in the dataplane, checked now rather than
                // when a Child SA is up (see `daemon::selectors`).
                crate::daemon::selectors(&local_ts, &remote_ts).map_err(|e| bad(f("local_ts"), &e))?;
                children.push(ChildConfig { name: c.child.clone(), local_ts, remote_ts });
            } else if !c.local_ts.is_empty() || !c.remote_ts.is_empty() {
                return Err(bad(f("children"), "give the selectors in children, not local_ts/remote_ts as well"));
            }
            for (k, ch) in c.children.iter().enumerate() {
                let g = |n: &str| format!("children[{k}].{n}");
                if ch.local_ts.is_empty() || ch.remote_ts.is_empty() {
                    return Err(bad(f(&g("local_ts")), "local_ts and remote_ts are needed"));
                }
                if ch.name.is_empty()
                    || ch.name.contains(char::is_whitespace)
                    || c.children[..k].iter().any(|o| o.name == ch.name)
                {
                    return Err(bad(f(&g("name")), "a unique name without spaces"));
                }
                let (local_ts, remote_ts) = (ts(&ch.local_ts, &g("local_ts"))?, ts(&ch.remote_ts, &g("remote_ts"))?);
                crate::daemon::selectors(&local_ts, &remote_ts).map_err(|e| bad(f(&g("local_ts")), &e))?;
                children.push(ChildConfig { name: ch.name.clone(), local_ts, remote_ts });
            }
            connections.push(ConnConfig {
                conn: Connection {
                    name: c.name.clone(),
                    local_id,
                    remote_id,
                    local_auth,
                    remote_auth,
                    ike,
                    esp,
                    children,
                    dpd_delay: c.dpd_delay.map(std::time::Duration::from_secs),
                    child_rekey: c.rekey_time.map(std::time::Duration::from_secs),
                    ike_rekey: c.ike_rekey_time.map(std::time::Duration::from_secs),
                    rekey_jitter: c.rand_time.map(std::time::Duration::from_secs),
                    // At least 10 ms: with 0, every retransmission would be due at once, back
                    // to back until the tries run out.
                    retransmit_base: c
                        .retransmit_base_ms
                        .map_or(Connection::RETRANSMIT_BASE, |ms| std::time::Duration::from_millis(ms.max(10))),
                    retransmit_tries: c.retransmit_tries.unwrap_or(Connection::RETRANSMIT_TRIES).max(1),
                    remote_addr: remote,
                },
                local,
                remote,
                start,
                rekey_bytes: c.rekey_bytes,
                life_time,
            });
        }
        let (port, natt_port) = (raw.daemon.port.unwrap_or(500), raw.daemon.natt_port.unwrap_or(4500));
        // The dataplane takes ESP in UDP on port 4500 only (RFC 3948), and the IKE code moves
        // there behind a NAT (RFC 7296 2.23): another port would lose inbound traffic.
        if natt_port != 4500 {
            return Err(bad("daemon.natt_port".into(), "must be 4500, where the dataplane takes ESP in UDP"));
        }
        if port == natt_port {
            return Err(bad("daemon.port".into(), "must differ from natt_port"));
        }
        Ok(Config {
            dataplane_socket: raw.daemon.dataplane_socket.map(PathBuf::from),
            control_socket: raw.daemon.control_socket.map(PathBuf::from),
            listen,
            port,
            natt_port,
            connections,
        })
    }
}

/// Whether every algorithm of an IKE proposal is one the IKE code can run (ciphers with
/// their integrity transforms, PRFs, DH groups).
fn usable_ike(a: &Algorithms) -> Result<(), String> {
    use ikev2::crypto::{CipherSuite, DhGroup, PrfAlg};
    for &(encr, bits) in &a.encr {
        let aead = CipherSuite::from_ids(encr, bits, None).is_ok();
        if !aead {
            if a.integ.is_empty() {
                CipherSuite::from_ids(encr, bits, None).map_err(|e| e.to_string())?;
            }
            for &i in &a.integ {
                CipherSuite::from_ids(encr, bits, Some(i)).map_err(|e| e.to_string())?;
            }
        }
    }
    for &p in &a.prf {
        PrfAlg::from_id(p).map_err(|e| e.to_string())?;
    }
    for &d in &a.dh {
        DhGroup::from_id(d).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
listen = "10.77.0.1"
dataplane_socket = "/run/gw.sock"

[[connection]]
name = "gw"
local_addr = "10.77.0.1"
remote_addr = "10.77.0.2"
local_id = "left@example.test"
remote_id = "right.example.test"
psk = "a-long-test-psk-0123456789"
proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
start_action = "start"
"#;

    #[test]
    fn loads_and_refuses_with_the_field_named() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.connections[0].conn.local_id.id_type, IdType::RFC822_ADDR);
        assert_eq!(c.connections[0].conn.remote_id.as_ref().unwrap().id_type, IdType::FQDN);
        assert_eq!(
            c.connections[0].conn.children[0].local_ts,
            vec![TrafficSelector::ipv4([10, 1, 0, 0].into(), [10, 1, 0, 255].into())]
        );
        let two = GOOD.replace("local_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.2.0.0/24\"]\n", "")
            + "[[connection.children]]\nname = \"a\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.2.0.0/25\"]\n"
            + "[[connection.children]]\nname = \"b\"\nlocal_ts = [\"10.1.0.0/24\"]\nremote_ts = [\"10.2.0.128/25\"]\n";
        let c2 = Config::parse(&two).unwrap();
        let names: Vec<&str> = c2.connections[0].conn.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let e = Config::parse(&two.replace("name = \"b\"", "name = \"a\"")).err().unwrap().to_string();
        assert!(e.starts_with("connection[0].children[1].name"), "{e}");
        assert_eq!(c.connections[0].start, StartAction::Start);
        let life = Config::parse(&GOOD.replace("start_action = \"start\"", "rekey_time = 600")).unwrap();
        assert_eq!(life.connections[0].life_time, Some(660), "110% of rekey_time by default");
        assert_eq!(life.connections[0].conn.rekey_jitter, None, "a tenth of each rekey time, in ikev2");
        let rand =
            Config::parse(&GOOD.replace("start_action = \"start\"", "rekey_time = 600\nrand_time = 30")).unwrap();
        assert_eq!(rand.connections[0].conn.rekey_jitter, Some(std::time::Duration::from_secs(30)));
        let any = Config::parse(
            &GOOD
                .replace("remote_addr = \"10.77.0.2\"", "remote_addr = \"%any\"")
                .replace("start_action = \"start\"", ""),
        )
        .unwrap();
        assert_eq!(any.connections[0].remote, None);
        // 17 x 16 prefix pairs: more than the dataplane selectors a Child SA may make.
        let many = |n: usize, net: u8| {
            let list: Vec<String> = (1..=n).map(|h| format!("\"10.{net}.0.{h}/32\"")).collect();
            format!("[{}]", list.join(", "))
        };
        let e = Config::parse(
            &GOOD
                .replace("local_ts = [\"10.1.0.0/24\"]", &format!("local_ts = {}", many(17, 1)))
                .replace("remote_ts = [\"10.2.0.0/24\"]", &format!("remote_ts = {}", many(16, 2))),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.starts_with("connection[0].local_ts") && e.contains("256"), "{e}");
        for (from, to, field) in [
            ("aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519", "connection[0].proposals"),
            ("a-long-test-psk-0123456789", "short", "connection[0].psk"),
            ("10.2.0.0/24", "10.2.0.0/99", "connection[0].remote_ts"),
            ("start_action = \"start\"", "start_action = \"soon\"", "connection[0].start_action"),
            ("remote_addr = \"10.77.0.2\"", "remote_addr = \"%any\"", "connection[0].start_action"),
            ("start_action = \"start\"", "rekey_time = 60\nlife_time = 50", "connection[0].life_time"),
            ("start_action = \"start\"", "rekey_time = 60\nrand_time = 60", "connection[0].rand_time"),
            ("start_action = \"start\"", "rekey_time = 9223372036854775807", "connection[0].rekey_time"),
            ("listen = \"10.77.0.1\"", "listen = \"10.77.0.1\"\nnatt_port = 4501", "daemon.natt_port"),
            ("listen = \"10.77.0.1\"", "listen = \"10.77.0.1\"\nport = 4500", "daemon.port"),
            ("start_action = \"start\"", "ike_rekey_time = 60\nrand_time = 90", "connection[0].rand_time"),
            // Parsed, but not runnable: CBC for ESP (the dataplane does AES-GCM only), an IKE
            // integrity transform the IKE code lacks.
            ("esp_proposals = [\"aes128gcm16\"]", "esp_proposals = [\"aes128-sha256\"]", "connection[0].esp_proposals"),
            ("aes256gcm16-prfsha256-x25519", "aes256-sha384-prfsha256-x25519", "connection[0].proposals"),
        ] {
            let e = Config::parse(&GOOD.replace(from, to)).err().unwrap().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn certificates_and_dn_identities() {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("ikev2/tests/vectors/pki");
        let certs = GOOD
            .replace(
                "psk = \"a-long-test-psk-0123456789\"\n",
                "cert = \"rsa-gw.pem\"\nkey = \"rsa-gw.key.pem\"\ncacerts = [\"ec-ca.pem\"]\n",
            )
            .replace("local_id = \"left@example.test\"\n", "")
            .replace("remote_id = \"right.example.test\"", "remote_id = \"C=CH, O=Test, CN=*\"");
        let c = Config::parse_in(&certs, &vectors).unwrap();
        let conn = &c.connections[0].conn;
        assert_eq!(conn.local_id.id_type, IdType::DER_ASN1_DN, "the certificate's subject by default");
        assert!(matches!(conn.local_auth, LocalAuth::Cert { .. }));
        assert!(matches!(conn.remote_auth, RemoteAuth::Cert(_)));
        assert_eq!(conn.remote_id.as_ref().unwrap().id_type, IdType::DER_ASN1_DN);
        for (from, to, field) in [
            ("rsa-gw.key.pem", "ec-gw.key.pem", "connection[0].key"),
            ("rsa-gw.pem", "missing.pem", "connection[0].cert"),
            ("[\"ec-ca.pem\"]", "[\"ec-gw.pem\"]", "connection[0].cacerts"),
            ("remote_id = \"C=CH, O=Test, CN=*\"", "remote_id = \"C=CH, Q=1\"", "connection[0].remote_id"),
            ("cert = ", "local_id = \"other.example.test\"\ncert = ", "connection[0].local_id"),
            ("cacerts = [\"ec-ca.pem\"]", "remote_auth = \"psk\"", "connection[0].psk"),
        ] {
            let e = Config::parse_in(&certs.replace(from, to), &vectors).err().unwrap().to_string();
            assert!(e.starts_with(field), "{from}: {e}");
        }
    }
}
