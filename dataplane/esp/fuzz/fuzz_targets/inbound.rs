//! Inbound path on bytes from the network: `classify`, `flow_key` and `InboundSa::decapsulate`.
//!
//! The first input byte picks the SA (bits 1 ESN, 2 UDP encapsulation, 4 IPv6 endpoints,
//! 8 AES-256) and the mode (16 sealed, 32 and 64 sealed-mode options):
//! - raw: the rest is an outer packet as received. Random bytes never carry a valid ICV, so
//!   this reaches the header parsing, the length checks and the replay check; a packet rejected
//!   before the window update must get the same answer a second time.
//! - sealed: the harness builds a correctly authenticated packet around a fuzzed plaintext
//!   (payload, padding, pad length, next header all chosen by the fuzzer), so the code after
//!   the ICV check (trailer, inner header, window update) is reached too. The result is checked
//!   against a small model of RFC 4303 3.4.4 / 2.4 written here; then a few more packets with
//!   fuzzed sequence numbers go through the same SA, and every accepted one must be refused as
//!   a duplicate when sent again.
#![no_main]

#[path = "common.rs"]
mod common;

use common::*;
use esp::EspError;
use esp::aead::{Aead, AesGcm};
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{Decapsulated, InboundSa};
use esp::wire::{Classified, EspOuter, classify, flow_key};
use libfuzzer_sys::fuzz_target;
use std::hint::black_box;

struct Opts {
    esn: bool,
    udp: bool,
    v6: bool,
    aes256: bool,
    /// Sealed mode: keep a plaintext length that is not a multiple of 4 (else it is cut down).
    unaligned: bool,
    /// Sealed mode: if the payload starts like an IPv4 header, give it a valid checksum.
    fix_checksum: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let o = Opts {
        esn: mode & 1 != 0,
        udp: mode & 2 != 0,
        v6: mode & 4 != 0,
        aes256: mode & 8 != 0,
        unaligned: mode & 0x20 != 0,
        fix_checksum: mode & 0x40 != 0,
    };
    if mode & 0x10 == 0 { raw(&o, rest) } else { sealed(&o, rest) }
});

fn new_sa(o: &Opts) -> InboundSa {
    InboundSa::new(&config(o.esn, o.udp, o.v6, o.aes256)).expect("valid SA")
}

fn decap(sa: &InboundSa, outer: &EspOuter, pkt: &[u8]) -> (Result<Decapsulated, EspError>, VecBuf) {
    let mut buf = VecBuf::new(pkt, 0, 0);
    let r = sa.decapsulate(outer, &mut buf);
    (r, buf)
}

fn raw(o: &Opts, pkt: &[u8]) {
    let _ = black_box(flow_key(black_box(pkt)));
    let Ok(Classified::Esp(outer)) = black_box(classify(black_box(pkt))) else { return };
    assert!(outer.esp_offset() + outer.esp_len() <= pkt.len(), "classify points past the packet");
    let sa = new_sa(o);
    let (first, buf) = decap(&sa, &outer, pkt);
    match black_box(first) {
        Ok(_) => {
            let _ = black_box(flow_key(buf.data()));
        }
        Err(e) => {
            if matches!(e, EspError::Truncated | EspError::BadLength | EspError::AuthFailed)
                || matches!(e, EspError::ReplayTooOld | EspError::ReplayDuplicate)
            {
                // Rejected before the window update: nothing may have changed.
                let (again, _) = decap(&sa, &outer, pkt);
                assert_eq!(again.err(), Some(e), "second attempt differs");
            }
        }
    }
}

/// Peer -> gateway ESP packet with a valid ICV for the full sequence number `seq`.
fn seal(aead: &AesGcm, o: &Opts, tos: u8, seq: u64, plain: &[u8]) -> Vec<u8> {
    let esp_len = 16 + plain.len() + 16;
    let mut pkt = outer_headers(o.v6, o.udp, tos, esp_len);
    let iv = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
    pkt.extend_from_slice(&SPI.to_be_bytes());
    pkt.extend_from_slice(&(seq as u32).to_be_bytes());
    pkt.extend_from_slice(&iv);
    // RFC 4106 section 5: AAD is SPI || seq (32 bits), or SPI || seq high || seq low with ESN.
    let mut aad = SPI.to_be_bytes().to_vec();
    if o.esn {
        aad.extend_from_slice(&seq.to_be_bytes());
    } else {
        aad.extend_from_slice(&(seq as u32).to_be_bytes());
    }
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&SALT);
    nonce[4..].copy_from_slice(&iv);
    let mut ct = plain.to_vec();
    let tag = aead.seal(&nonce, &aad, &mut ct);
    pkt.extend_from_slice(&ct);
    pkt.extend_from_slice(&tag);
    pkt
}

/// What RFC 4303 says about an authenticated plaintext (payload, padding, pad length, next
/// header) in tunnel mode: the inner packet's length, or why it is dropped.
fn model(plain: &[u8]) -> Result<usize, EspError> {
    let n = plain.len();
    let nh = plain[n - 1];
    let pad = usize::from(plain[n - 2]);
    if pad + 2 > n {
        return Err(EspError::BadPadLength);
    }
    let payload = &plain[..n - 2 - pad];
    if plain[n - 2 - pad..n - 2].iter().enumerate().any(|(i, &b)| usize::from(b) != i + 1) {
        return Err(EspError::BadPadding);
    }
    match nh {
        59 => Err(EspError::DummyPacket),
        4 => {
            let bad = Err(EspError::BadInnerPacket);
            if payload.len() < 20 || payload[0] >> 4 != 4 {
                return bad;
            }
            let ihl = usize::from(payload[0] & 15) * 4;
            let total = usize::from(u16::from_be_bytes([payload[2], payload[3]]));
            if ihl < 20 || total < ihl || total > payload.len() || inet_checksum(&payload[..ihl]) != 0 {
                return bad;
            }
            Ok(total)
        }
        41 => {
            if payload.len() < 40 || payload[0] >> 4 != 6 {
                return Err(EspError::BadInnerPacket);
            }
            let total = 40 + usize::from(u16::from_be_bytes([payload[4], payload[5]]));
            if total > payload.len() {
                return Err(EspError::BadInnerPacket);
            }
            Ok(total)
        }
        _ => Err(EspError::BadNextHeader),
    }
}

/// Writes a valid header checksum into an IPv4 inner packet, where the trailer says there is one.
fn fix_inner_checksum(plain: &mut [u8]) {
    let n = plain.len();
    let pad = usize::from(plain[n - 2]);
    if plain[n - 1] != 4 || pad + 2 > n {
        return;
    }
    let payload = &mut plain[..n - 2 - pad];
    if payload.len() < 20 || payload[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(payload[0] & 15) * 4;
    if ihl < 20 || ihl > payload.len() {
        return;
    }
    payload[10..12].fill(0);
    let c = inet_checksum(&payload[..ihl]);
    payload[10..12].copy_from_slice(&c.to_be_bytes());
}

fn classify_ok(pkt: &[u8], o: &Opts, esp_len: usize, seq_low: u32) -> EspOuter {
    let Ok(Classified::Esp(outer)) = classify(pkt) else { panic!("a well-formed ESP packet is not classified as ESP") };
    let hl = if o.v6 { 40 } else { 20 } + if o.udp { 8 } else { 0 };
    assert_eq!(outer.esp_offset(), hl);
    assert_eq!(outer.esp_len(), esp_len);
    assert_eq!((outer.spi(), outer.seq_low()), (SPI, seq_low));
    assert_eq!(outer.udp_encapsulated(), o.udp);
    outer
}

/// RFC 6040 4.2 decapsulation table, written out independently of the esp crate: the ECN
/// field the inner header must end up with (`None`: unchanged), or the drop.
fn ecn_model(plain: &[u8], outer_tos: u8) -> Result<Option<u8>, EspError> {
    let inner = if plain[0] >> 4 == 4 { plain[1] & 3 } else { (plain[1] >> 4) & 3 };
    match (inner, outer_tos & 3) {
        (0b00, 0b11) => Err(EspError::CongestionOnNotEct),
        (0b00, _) | (0b11, _) => Ok(None),
        (_, 0b11) => Ok(Some(0b11)),
        (0b10, 0b01) => Ok(Some(0b01)),
        _ => Ok(None),
    }
}

fn sealed(o: &Opts, rest: &[u8]) {
    // [n][n % 8 extra sequence numbers, 4 bytes each][seq_low: 4][tos][plaintext ...]
    let Some((&n, rest)) = rest.split_first() else { return };
    let extra_len = usize::from(n % 8) * 4;
    if rest.len() < extra_len + 5 {
        return;
    }
    let (extras, rest) = rest.split_at(extra_len);
    let seq_low = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let tos = rest[4];
    let mut plain = rest[5..].to_vec();
    if !o.unaligned {
        plain.truncate(plain.len() / 4 * 4);
    }
    if plain.len() < 2 || plain.len() > 60_000 {
        return;
    }
    if o.fix_checksum {
        fix_inner_checksum(&mut plain);
    }
    let plain = &plain[..];
    let cfg = config(o.esn, o.udp, o.v6, o.aes256);
    let aead = AesGcm::new(&cfg.key);
    let sa = InboundSa::new(&cfg).expect("valid SA");

    let checked = sa.replay_window().check(seq_low);
    let seq = sa.replay_window().infer(seq_low).unwrap_or(u64::from(seq_low));
    let pkt = seal(&aead, o, tos, seq, plain);
    let outer = classify_ok(&pkt, o, 32 + plain.len(), seq_low);
    let _ = black_box(flow_key(&pkt));

    // RFC 4303 3.4.3 / 3.4.4 order: length, replay check, ICV, trailer, window update, inner.
    let expected = if plain.len() % 4 != 0 {
        Err(EspError::BadLength)
    } else {
        checked.and_then(|_| model(plain)).and_then(|len| ecn_model(plain, tos).map(|ecn| (len, ecn)))
    };
    let (got, buf) = decap(&sa, &outer, &pkt);
    match (&got, expected) {
        (Ok(d), Ok((inner_len, new_ecn))) => {
            assert_eq!(d.seq, seq);
            assert_eq!(buf.data().len(), inner_len);
            let mut want = plain[..inner_len].to_vec();
            let got = buf.data();
            if let Some(ecn) = new_ecn {
                let shift = if d.inner_version == 4 { 0 } else { 4 };
                want[1] = (want[1] & !(3 << shift)) | (ecn << shift);
            }
            if new_ecn.is_some() && d.inner_version == 4 {
                // The header checksum changed with it: it must still verify; the rest is equal.
                let ihl = usize::from(got[0] & 15) * 4;
                assert_eq!(inet_checksum(&got[..ihl]), 0, "inner checksum broken by the ECN update");
                assert_eq!((&got[..10], &got[12..]), (&want[..10], &want[12..]));
            } else {
                assert_eq!(got, &want[..], "inner packet altered");
            }
            let _ = black_box(flow_key(buf.data()));
        }
        (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ()), "decapsulate disagrees with the model"),
    }

    // The same packet again.
    let (again, _) = decap(&sa, &outer, &pkt);
    match got {
        Err(EspError::BadLength | EspError::ReplayTooOld | EspError::ReplayDuplicate) => {
            assert_eq!(again.err(), got.err())
        }
        // Authenticated but dropped after: the window recorded it (RFC 4303 3.4.3).
        Err(EspError::BadPadLength | EspError::BadPadding | EspError::CongestionOnNotEct) => {
            assert_eq!(again.err(), Some(EspError::ReplayDuplicate))
        }
        _ => assert_eq!(again.err(), Some(EspError::ReplayDuplicate), "an authenticated packet replayed"),
    }

    // More packets through the same window: a minimal valid inner IPv4 packet each.
    let mut small = ipv4_header(0, false, 59, 0, PEER4, GW4, 20).to_vec();
    small.extend_from_slice(&[1, 2, 2, 4]);
    for c in extras.chunks_exact(4) {
        let low = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let checked = sa.replay_window().check(low);
        let seq = sa.replay_window().infer(low).unwrap_or(u64::from(low));
        // The small inner packet is Not-ECT: keep CE off the outer header (RFC 6040 would drop it).
        let pkt = seal(&aead, o, tos & !3, seq, &small);
        let outer = classify_ok(&pkt, o, 32 + small.len(), low);
        let (got, _) = decap(&sa, &outer, &pkt);
        match checked {
            Ok(s) => {
                assert_eq!(got.map(|d| d.seq), Ok(s), "a fresh valid packet was refused");
                assert!(sa.replay_window().top() >= s);
                let (again, _) = decap(&sa, &outer, &pkt);
                assert_eq!(again.err(), Some(EspError::ReplayDuplicate));
            }
            Err(e) => assert_eq!(got.err(), Some(e)),
        }
    }
}
