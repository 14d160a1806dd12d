//! A line-oriented driver of the `esp` crate for interop tests against independent ESP
//! implementations (tests/scapy_interop.py). One JSON request per stdin line, one JSON answer
//! per stdout line, so a test can push hundreds of packets through one process.
//!
//! Request fields (hex strings for bytes):
//!   op      "encap" | "decap"
//!   spi     u32
//!   key     AES key, 16 or 32 bytes
//!   salt    4 bytes (RFC 4106 section 8.1)
//!   local   this end's tunnel address, remote: the peer's (both IPv4 or both IPv6)
//!   udp     bool, RFC 3948 UDP encapsulation on 4500/4500 (default false)
//!   esn     bool, 64-bit extended sequence numbers (default false)
//!   encap:  seq (u64), packet (the inner IP packet)
//!           -> {"ok":true,"packet":hex} | {"ok":false,"error":name}
//!   decap:  window (u32, default 64), packets (array of outer packets, decapsulated in order
//!           by one inbound SA, so replay shows) or packet (one)
//!           -> {"ok":true,"results":[{"ok":true,"inner":hex,"seq":u64,"version":4|6} |
//!                                    {"ok":false,"error":name}, ...]}
//! Errors are `EspError` variant names, plus `NotEsp` for what `classify` leaves to the host
//! and `UnknownSpi` for an ESP packet of another SA. A malformed request gets
//! {"ok":false,"error":"request: ..."}.

use esp::aead::{GcmKeyLen, KeyMaterial};
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{InboundSa, OutboundSa, SaConfig, SeqCounter, UdpEncap};
use esp::wire::{Classified, NAT_T_PORT, classify};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::sync::Arc;

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).ok_or("bad hex")?, 16).map_err(|e| e.to_string()))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn field<'a>(req: &'a Value, name: &str) -> Result<&'a Value, String> {
    req.get(name).ok_or_else(|| format!("missing field {name}"))
}

fn u64_field(req: &Value, name: &str) -> Result<u64, String> {
    field(req, name)?.as_u64().ok_or_else(|| format!("{name} must be an unsigned integer"))
}

fn str_field<'a>(req: &'a Value, name: &str) -> Result<&'a str, String> {
    field(req, name)?.as_str().ok_or_else(|| format!("{name} must be a string"))
}

fn bool_field(req: &Value, name: &str) -> Result<bool, String> {
    match req.get(name) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| format!("{name} must be a boolean")),
    }
}

fn config(req: &Value) -> Result<SaConfig, String> {
    let spi = u32::try_from(u64_field(req, "spi")?).map_err(|_| "spi must fit in 32 bits")?;
    let key = unhex(str_field(req, "key")?)?;
    let salt = unhex(str_field(req, "salt")?)?;
    let len = match key.len() {
        16 => GcmKeyLen::Aes128,
        32 => GcmKeyLen::Aes256,
        n => return Err(format!("key must be 16 or 32 bytes, not {n}")),
    };
    let key = KeyMaterial::new(len, &key, &salt)?;
    let local: IpAddr = str_field(req, "local")?.parse().map_err(|e| format!("local: {e}"))?;
    let remote: IpAddr = str_field(req, "remote")?.parse().map_err(|e| format!("remote: {e}"))?;
    let encap = bool_field(req, "udp")?.then_some(UdpEncap { sport: NAT_T_PORT, dport: NAT_T_PORT });
    let replay_window = match req.get("window") {
        None => 64,
        Some(v) => v.as_u64().and_then(|w| u32::try_from(w).ok()).ok_or("window must be a u32")?,
    };
    let cfg = SaConfig {
        spi,
        key,
        local,
        remote,
        encap,
        esn: bool_field(req, "esn")?,
        replay_window,
        backend: Default::default(),
    };
    cfg.validate()?;
    Ok(cfg)
}

fn encap(req: &Value) -> Result<Value, String> {
    let cfg = config(req)?;
    let seq = u64_field(req, "seq")?;
    let inner = unhex(str_field(req, "packet")?)?;
    let sa = OutboundSa::new(&cfg, Arc::new(SeqCounter::starting_at(seq)))?;
    let mut buf = VecBuf::new(&inner, 128, 64);
    Ok(match sa.encapsulate(seq, &mut buf) {
        Ok(()) => json!({"ok": true, "packet": hex(buf.data())}),
        Err(e) => json!({"ok": false, "error": format!("{e:?}")}),
    })
}

fn decap_one(sa: &InboundSa, pkt: &[u8]) -> Value {
    let mut buf = VecBuf::new(pkt, 0, 0);
    let outer = match classify(buf.data()) {
        Ok(Classified::Esp(o)) => o,
        Ok(Classified::Other) => return json!({"ok": false, "error": "NotEsp"}),
        Err(e) => return json!({"ok": false, "error": format!("{e:?}")}),
    };
    // The dataplane looks the SA up by SPI; this tool has one.
    if outer.spi() != sa.spi {
        return json!({"ok": false, "error": "UnknownSpi"});
    }
    match sa.decapsulate(&outer, &mut buf) {
        Ok(d) => json!({"ok": true, "inner": hex(buf.data()), "seq": d.seq, "version": d.inner_version}),
        Err(e) => json!({"ok": false, "error": format!("{e:?}")}),
    }
}

fn decap(req: &Value) -> Result<Value, String> {
    let cfg = config(req)?;
    let sa = InboundSa::new(&cfg)?;
    let packets: Vec<Vec<u8>> = match (req.get("packets"), req.get("packet")) {
        (Some(Value::Array(a)), _) => a
            .iter()
            .map(|p| p.as_str().ok_or_else(|| "packets must be hex strings".to_string()).and_then(unhex))
            .collect::<Result<_, _>>()?,
        (None, Some(Value::String(p))) => vec![unhex(p)?],
        _ => return Err("decap needs packets (array) or packet (hex)".into()),
    };
    let results: Vec<Value> = packets.iter().map(|p| decap_one(&sa, p)).collect();
    Ok(json!({"ok": true, "results": results}))
}

fn handle(line: &str) -> Value {
    let answer = serde_json::from_str::<Value>(line).map_err(|e| e.to_string()).and_then(|req| {
        match req.get("op").and_then(Value::as_str) {
            Some("encap") => encap(&req),
            Some("decap") => decap(&req),
            _ => Err("op must be encap or decap".into()),
        }
    });
    answer.unwrap_or_else(|e| json!({"ok": false, "error": format!("request: {e}")}))
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = handle(&line);
        // One answer per request, flushed so a caller may also talk to the tool interactively.
        if writeln!(out, "{answer}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}
