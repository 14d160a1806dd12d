//! Outbound then inbound: a valid inner IPv4/IPv6 packet built around fuzzed bytes is
//! encapsulated by an `OutboundSa` and decapsulated by the matching `InboundSa`.
//! Untampered it must come back byte for byte; with one byte flipped anywhere from the ESP
//! header on (SPI, sequence number, IV, ciphertext, ICV) it must be refused. A flip in the
//! outer IP/UDP header, which the ICV does not cover, may pass or fail but must not panic.
//!
//! Input: [flags][seq: 8][tamper position: 2][tamper mask][tos][proto][payload ...]
//! flags: 1 ESN, 2 UDP, 4 outer IPv6, 8 inner IPv6, 16 AES-256, 32 tamper, 64 DF.
//! ESN sequence numbers get a high half of 0..3; the inbound window is walked up to it first.
#![no_main]

#[path = "common.rs"]
mod common;

use common::*;
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{InboundSa, OutboundSa, SeqCounter};
use esp::wire::{Classified, classify, flow_key};
use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

fn inner_packet(v6: bool, tos: u8, df: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = if v6 {
        let src = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
        let dst = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 7);
        ipv6_header(tos, u32::from(proto) * 0x1111, proto, src, dst, payload.len()).to_vec()
    } else {
        let (src, dst) = (Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 2, 0, 7));
        ipv4_header(tos, df, proto, 0x4242, src, dst, 20 + payload.len()).to_vec()
    };
    p.extend_from_slice(payload);
    p
}

fn encap(out: &OutboundSa, seq: u64, inner: &[u8]) -> Vec<u8> {
    let mut buf = VecBuf::new(inner, out.overhead_front(), 64);
    out.encapsulate(seq, &mut buf).expect("encapsulating a valid packet");
    buf.data().to_vec()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 14 {
        return;
    }
    let flags = data[0];
    let (esn, udp, outer_v6, inner_v6, aes256, tamper, df) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        flags & 8 != 0,
        flags & 16 != 0,
        flags & 32 != 0,
        flags & 64 != 0,
    );
    let raw_seq = u64::from_be_bytes(data[1..9].try_into().unwrap());
    let tamper_pos = usize::from(u16::from_be_bytes([data[9], data[10]]));
    let mask = if data[11] == 0 { 0x80 } else { data[11] };
    let (tos, proto) = (data[12], data[13]);
    let payload = &data[14..];
    if payload.len() > 60_000 {
        return;
    }

    // A sequence number the receiver can reach. The window starts at 0 and infers the high half
    // (RFC 4303 A2.2); priming packets walk it up one subspace at a time, to (high, 1).
    let high = if esn { (raw_seq >> 32) % 4 } else { 0 };
    let mut low = raw_seq as u32;
    if (high == 0 && low == 0) || (high > 0 && low == 1) {
        low += 1; // 0 is never sent; (high, 1) is a priming packet
    }
    let seq = (high << 32) | u64::from(low);
    let mut priming: Vec<u64> = (0..high).flat_map(|k| [(k << 32) | 0x8000_0000, ((k + 1) << 32) | 1]).collect();
    if esn && low >= 0xffff_ffc1 {
        // With the window's top low half below 63 (case B) the last 63 low values read as the
        // subspace below; move the top to the middle of this subspace first.
        priming.push((high << 32) | 0x8000_0000);
    }

    let cfg = config(esn, udp, outer_v6, aes256);
    let out = OutboundSa::new(&cfg, Arc::new(SeqCounter::starting_at(seq))).expect("valid SA");
    let inb = InboundSa::new(&cfg).expect("valid SA");

    let prime_inner = inner_packet(inner_v6, 0, false, 59, &[]);
    for s in priming {
        let mut buf = VecBuf::new(&encap(&out, s, &prime_inner), 0, 0);
        let Ok(Classified::Esp(o)) = classify(buf.data()) else { panic!("priming packet not ESP") };
        assert_eq!(inb.decapsulate(&o, &mut buf).map(|d| d.seq), Ok(s), "priming packet refused");
    }

    let inner = inner_packet(inner_v6, tos, df, proto, payload);
    let mut pkt = encap(&out, seq, &inner);
    let esp_at = if outer_v6 { 40 } else { 20 } + if udp { 8 } else { 0 };
    let _ = black_box(flow_key(&pkt));

    let flipped = tamper.then(|| {
        let at = tamper_pos % pkt.len();
        pkt[at] ^= mask;
        at
    });

    let mut buf = VecBuf::new(&pkt, 0, 0);
    let classified = classify(buf.data());
    let result = match classified {
        Ok(Classified::Esp(o)) => {
            if flipped.is_none() {
                assert_eq!((o.spi(), o.seq_low(), o.esp_offset()), (cfg.spi, seq as u32, esp_at));
                assert_eq!(o.esp_len(), pkt.len() - esp_at);
                assert_eq!(o.udp_encapsulated(), udp);
            }
            Some((o, inb.decapsulate(&o, &mut buf)))
        }
        _ => None,
    };
    match flipped {
        None => {
            let Some((o, r)) = result else { panic!("our own packet is not ESP: {classified:?}") };
            let d = r.expect("untampered packet refused");
            assert_eq!(d.seq, seq);
            assert_eq!(d.inner_version, if inner_v6 { 6 } else { 4 });
            assert_eq!(buf.data(), &inner[..], "round trip altered the inner packet");
            // And once is enough.
            let mut again = VecBuf::new(&pkt, 0, 0);
            assert_eq!(inb.decapsulate(&o, &mut again).err(), Some(esp::EspError::ReplayDuplicate));
        }
        Some(at) if at >= esp_at => {
            if let Some((_, r)) = result {
                assert!(r.is_err(), "byte {at} of the ESP part flipped (mask {mask:#x}) and still accepted");
            }
        }
        Some(_) => {
            // Outer header: not covered by the ICV; only must not panic.
            if let Some((_, Ok(_))) = result {
                let _ = black_box(flow_key(buf.data()));
            }
        }
    }
    black_box(result);
});
