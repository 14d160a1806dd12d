//! The dataplane's control-socket protocol: one JSON request per line on a Unix-domain stream
//! socket, one JSON answer per line, a protocol version in every message. Shared by the
//! dataplane (server) and the IKE daemon and CLIs (clients); no DPDK here.
//!
//! Key material travels in [`RawSa`] only over this socket; its `Debug` never shows it.

pub mod line;

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// One SA as written in the configuration file or sent over the control socket. Its `Debug`
/// leaves out the key and salt.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSa {
    pub name: String,
    pub spi: u32,
    pub direction: String,
    pub algorithm: String,
    pub key: HexSecret,
    pub salt: HexSecret,
    pub local: String,
    pub remote: String,
    #[serde(default)]
    pub udp_encap: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_dport: Option<u16>,
    #[serde(default)]
    pub esn: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_window: Option<u32>,
    /// Inbound SAs: the traffic selectors decrypted packets must match, written as the
    /// outbound policy would (local side as `src`). Without them: those of the policies that
    /// name this SA as `sa_in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<Vec<RawSelector>>,
    /// Lifetimes (RFC 4301 4.4.2.1): at the soft limit the control plane is told to rekey, at
    /// the hard limit the SA is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_secs: Option<u64>,
}

/// Key material written as hex (an SA's key or salt), wiped when it goes. The text it was
/// parsed from is wiped where this crate holds it (the control socket's line buffer); a
/// configuration file's text and a parser's scratch copy of an escaped string are not.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct HexSecret(String);

impl HexSecret {
    /// Overwrites the whole buffer, spare capacity included, with zeros.
    fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Drop for HexSecret {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl std::ops::Deref for HexSecret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for HexSecret {
    fn from(s: String) -> Self {
        HexSecret(s)
    }
}

impl From<&str> for HexSecret {
    fn from(s: &str) -> Self {
        HexSecret(s.to_string())
    }
}

impl std::fmt::Debug for RawSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSa")
            .field("name", &self.name)
            .field("spi", &self.spi)
            .field("direction", &self.direction)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("salt", &"<redacted>")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Traffic selectors as written: prefixes, a protocol, port ranges.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    pub src: String,
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
}

/// One policy as written in the configuration file or sent over the control socket.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    pub src: String,
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sa_out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sa_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// One SA as listed for operators and the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SaInfo {
    pub name: String,
    pub spi: u32,
    pub direction: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub age_secs: u64,
}

/// Something the control plane should hear about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SadEvent {
    /// A soft lifetime was reached: rekey this SA (RFC 4301 4.4.2.1).
    SoftExpire { name: String, spi: u32, direction: String },
    /// A hard lifetime was reached: the SA is gone.
    HardExpire { name: String, spi: u32, direction: String },
    /// Traffic matched a protect policy that has no SA (RFC 4301 "acquire").
    Acquire { policy: String, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16 },
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct DropSnapshot {
    pub reason: String,
    pub description: String,
    pub count: u64,
    /// Per worker core, in lcore order.
    pub per_core: Vec<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct CoreSnapshot {
    pub lcore: u32,
    pub rx: u64,
    pub tx: u64,
    pub to_host: u64,
    pub from_host: u64,
    pub encrypted: u64,
    pub decrypted: u64,
    pub bypassed: u64,
    /// ESP frames that arrived before their inbound SA and waited for it (delivered or, if
    /// it never came, dropped as UnknownSpi).
    #[serde(default)]
    pub parked: u64,
}

/// One port's own counters, as its driver keeps them (DPDK's `rte_eth_stats`), with, for a
/// `net_af_packet` port, the kernel's drops in front of its receive rings added to
/// `rx_missed`. They tell apart what the port lost before any worker saw it (`rx_missed`: the
/// receive ring was full; `rx_nombuf`: no buffer to receive into) from what the workers
/// dropped (the drop reasons).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct PortSnapshot {
    /// A data port's DPDK device name as configured (`net_af_packet0`, `0000:3b:00.0`, ...); an
    /// exception path's kernel TAP interface (`tap-unprot`).
    pub name: String,
    /// "protected", "unprotected", or "exception" for a data port's path to the host stack.
    pub role: String,
    pub rx: u64,
    pub tx: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub rx_nombuf: u64,
    pub tx_errors: u64,
}

/// Everything an operator reads: totals per SA and per drop reason, per core and per port.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub cores: Vec<CoreSnapshot>,
    pub sas: Vec<SaInfo>,
    /// Only the reasons that counted something.
    pub drops: Vec<DropSnapshot>,
    /// Every port the dataplane drives, data ports and their exception paths.
    #[serde(default)]
    pub ports: Vec<PortSnapshot>,
}

impl Snapshot {
    /// A plain-text table for people.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:>6} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12} {:>10} {:>8}",
            "lcore", "rx", "tx", "to-host", "from-host", "encrypted", "decrypted", "bypassed", "parked"
        );
        for c in &self.cores {
            let _ = writeln!(
                s,
                "{:>6} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12} {:>10} {:>8}",
                c.lcore, c.rx, c.tx, c.to_host, c.from_host, c.encrypted, c.decrypted, c.bypassed, c.parked
            );
        }
        if !self.ports.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<20} {:<11} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10}",
                "port", "role", "rx", "tx", "rx-missed", "rx-errors", "rx-nombuf", "tx-errors"
            );
            for p in &self.ports {
                let _ = writeln!(
                    s,
                    "{:<20} {:<11} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10}",
                    p.name, p.role, p.rx, p.tx, p.rx_missed, p.rx_errors, p.rx_nombuf, p.tx_errors
                );
            }
        }
        let _ = writeln!(s, "\n{:<16} {:>10} {:>4} {:>12} {:>14}", "SA", "SPI", "dir", "packets", "bytes");
        for a in &self.sas {
            let _ = writeln!(s, "{:<16} {:>#10x} {:>4} {:>12} {:>14}", a.name, a.spi, a.direction, a.packets, a.bytes);
        }
        let _ = writeln!(s, "\n{:<24} {:>10}  description", "drop reason", "count");
        if self.drops.is_empty() {
            let _ = writeln!(s, "(no drops)");
        }
        for d in &self.drops {
            let _ = writeln!(s, "{:<24} {:>10}  {}", d.reason, d.count, d.description);
        }
        s
    }
}

pub const PROTOCOL_VERSION: u32 = 1;

/// At most this many requests on one connection; the dataplane answers them in one go. At
/// some 30 µs per SA a full batch holds its control thread for about 30 ms: short enough for
/// lifetimes and neighbour sharing, large enough to install 100,000 tunnels in seconds.
pub const MAX_BATCH: usize = 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Counters: per core, per SA, per drop reason, per port.
    Stats,
    /// Counters per core, per drop reason and per port, without the SAs: cheap to ask often
    /// with 100,000 SAs.
    Totals,
    /// The installed SAs with their traffic.
    ListSas,
    AddSa {
        sa: RawSa,
    },
    DelSa {
        name: String,
    },
    /// Adds a policy, or replaces the one of the same name.
    SetPolicy {
        policy: RawPolicy,
    },
    DelPolicy {
        name: String,
    },
    /// Events since the last poll.
    PollEvents,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stats: Option<Snapshot>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sas: Option<Vec<SaInfo>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub events: Option<Vec<SadEvent>>,
}

impl line::Versioned for Request {
    fn version(&self) -> u32 {
        self.version
    }
}

impl line::Answer for Response {
    fn refused(version: u32, why: String) -> Self {
        Response { version, error: Some(why), ..Response::default() }
    }
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// The dataplane's control socket.
pub const PROTOCOL: line::Protocol =
    line::Protocol { version: PROTOCOL_VERSION, speaker: "dataplane", max_batch: MAX_BATCH };

/// Sends several requests on one connection, in order, and returns the answers (each may
/// carry an error). The dataplane applies them in one round of its control thread.
pub fn request_many(path: &Path, commands: Vec<Command>) -> Result<Vec<Response>, String> {
    let requests: Vec<Request> =
        commands.into_iter().map(|command| Request { version: PROTOCOL_VERSION, command }).collect();
    line::exchange(path, &requests)
}

/// Sends one request; its answer, or the error it carries.
pub fn request(path: &Path, command: Command) -> Result<Response, String> {
    line::ask(path, Request { version: PROTOCOL_VERSION, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a HexSecret does when it goes: every byte of its buffer, spare capacity included
    /// (a string that grew keeps its old length's room), is zero before the memory is freed.
    #[test]
    fn a_hex_secret_wipes_its_whole_buffer() {
        let mut s = String::with_capacity(80);
        s.push_str("00112233445566778899aabbccddeeff");
        let mut h = HexSecret::from(s);
        let (p, cap) = (h.as_ptr(), h.0.capacity());
        h.wipe();
        assert_eq!(h.0.capacity(), cap, "the buffer is still h's, not freed or moved");
        // SAFETY: `p` points to `cap` bytes of h's live allocation, all initialized (zeroize
        // writes the spare capacity too), and nothing writes to them meanwhile.
        let bytes = unsafe { std::slice::from_raw_parts(p, cap) };
        assert!(bytes.iter().all(|&b| b == 0), "{bytes:?}");
    }

    #[test]
    fn commands_round_trip_and_keys_stay_out_of_debug() {
        let sa = RawSa {
            name: "to-b".into(),
            spi: 0x1001,
            direction: "out".into(),
            algorithm: "aes128gcm16".into(),
            key: "00112233445566778899aabbccddeeff".into(),
            salt: "0a0b0c0d".into(),
            local: "192.0.2.1".into(),
            remote: "192.0.2.2".into(),
            ..RawSa::default()
        };
        let req = Request { version: PROTOCOL_VERSION, command: Command::AddSa { sa: sa.clone() } };
        let text = serde_json::to_string(&req).unwrap();
        assert!(text.starts_with(r#"{"version":1,"command":"add_sa","sa":{"#), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let shown = format!("{req:?}");
        assert!(!shown.contains("0011223344") && !shown.contains("0a0b0c0d"), "{shown}");
        let ev: SadEvent =
            serde_json::from_str(r#"{"event":"soft_expire","name":"x","spi":5,"direction":"in"}"#).unwrap();
        assert_eq!(ev, SadEvent::SoftExpire { name: "x".into(), spi: 5, direction: "in".into() });
    }

    #[test]
    fn port_counters_show_and_older_snapshots_still_parse() {
        let old = r#"{"cores":[],"sas":[],"drops":[]}"#;
        assert_eq!(serde_json::from_str::<Snapshot>(old).unwrap().ports, vec![]);
        let port = PortSnapshot {
            name: "net_af_packet1".into(),
            role: "unprotected".into(),
            rx: 10,
            tx: 9,
            rx_missed: 3,
            rx_nombuf: 2,
            ..PortSnapshot::default()
        };
        let text = Snapshot { ports: vec![port], ..Snapshot::default() }.render();
        let row = text.lines().find(|l| l.starts_with("net_af_packet1")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["net_af_packet1", "unprotected", "10", "9", "3", "0", "2", "0"]
        );
        assert!(text.contains("rx-missed"), "{text}");
    }
}
