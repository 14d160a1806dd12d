//! trafgen's receive side (`perf/src/stamp.rs`): reading the stamp back from a frame off the
//! wire, in the clear or through ESP, and counting what came back in a trial.
//!
//! Input: a header of 23 bytes, then frames as records `length (2 bytes, little endian),
//! bytes`.
//! - byte 0, flags: 0x01 IPv6 inner packet, 0x02 ESP, 0x04 IPv6 outer header, 0x08
//!   intel-ipsec-mb (where it runs, else RustCrypto `aes-gcm`), 0x10 AES-256;
//! - byte 1: IPv4 option words (its value modulo 11), and how many sequence numbers beyond the
//!   stamp's have been offered;
//! - bytes 2-3: inner packet length (64 to 1500);
//! - bytes 4-17: the stamp (trial, sequence number, TSC);
//! - bytes 18-19: a byte position to change, byte 20: what to XOR into it;
//! - bytes 21-22: how many sequence numbers the trial sends at most (1 to 65536).
//!
//! Checked:
//! - a packet stamped as trafgen stamps it reads back exactly, in the clear (with or without
//!   an SA) and through ESP sealed for the SA, and again (the generator's SA keeps no replay
//!   window: trafgen counts duplicates itself);
//! - a changed byte of the ESP header, payload or ICV is never read as a stamp; a changed byte
//!   of the Ethernet header changes nothing; a changed byte of the clear stamp's magic leaves no
//!   stamp;
//! - any frame, with or without an SA: no panic;
//! - the tally agrees with a model (a set of the numbers seen) on every packet and on each of
//!   its three counts, for the stamp's trial and after a reset to the next trial.
#![no_main]

#[path = "../../../perf/src/stamp.rs"]
mod stamp;

use esp::aead::{Backend, GcmKeyLen, KeyMaterial};
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{InboundSa, OutboundSa, SaConfig, SeqCounter};
use esp::wire::{self, Classified, checksum_add, checksum_finish};
use libfuzzer_sys::fuzz_target;
use stamp::{ETH_LEN, STAMP_LEN, Stamp, Tally, stamp_of, stamp_offset};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

const HEADER: usize = 23;

fn sa_pair(mode: u8) -> (OutboundSa, InboundSa) {
    let (len, key): (GcmKeyLen, &[u8]) =
        if mode & 16 != 0 { (GcmKeyLen::Aes256, &[0x5a; 32]) } else { (GcmKeyLen::Aes128, &[0xa5; 16]) };
    let backend = if mode & 8 != 0 {
        dataplane::crypto::choose("ipsec-mb").map(|(b, _)| b).unwrap_or(Backend::RustCrypto)
    } else {
        Backend::RustCrypto
    };
    let (gen_addr, dut): (IpAddr, IpAddr) = if mode & 4 != 0 {
        ("2001:db8::2".parse().unwrap(), "2001:db8::1".parse().unwrap())
    } else {
        ("192.0.2.2".parse().unwrap(), "192.0.2.1".parse().unwrap())
    };
    let cfg = |local, remote| SaConfig {
        spi: 0x1234,
        key: KeyMaterial::new(len, key, &[1, 2, 3, 4]).unwrap(),
        local,
        remote,
        encap: None,
        esn: false,
        replay_window: 0,
        backend,
    };
    (
        OutboundSa::new(&cfg(dut, gen_addr), Arc::new(SeqCounter::default())).unwrap(),
        InboundSa::new(&cfg(gen_addr, dut)).unwrap(),
    )
}

/// A UDP packet of `total` bytes carrying `s`, laid out here (not by trafgen's code): IPv4
/// with `opt_words` words of options and a valid header checksum, or IPv6.
fn stamped_packet(v6: bool, opt_words: usize, total: usize, s: &Stamp) -> Vec<u8> {
    let hdr = if v6 { 40 } else { 20 + 4 * opt_words };
    let total = total.max(hdr + 8 + STAMP_LEN);
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
    } else {
        p[0] = 0x40 | (5 + opt_words as u8);
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        // Options: no-operation (RFC 791 3.1), then end of list.
        p[20..hdr].fill(1);
        if hdr > 20 {
            p[hdr - 1] = 0;
        }
        // `InboundSa::finish` checks an inner IPv4 header's checksum.
        let c = checksum_finish(checksum_add(0, &p[..hdr]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p[hdr + 4..hdr + 6].copy_from_slice(&((total - hdr) as u16).to_be_bytes());
    s.write(&mut p[hdr + 8..]);
    p
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02; ETH_LEN];
    let et: u16 = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    f[12..14].copy_from_slice(&et.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn read(sa: Option<&InboundSa>, f: &[u8]) -> Option<Stamp> {
    stamp_of(sa, &mut VecBuf::new(f, 128, 64))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let (h, mut rest) = data.split_at(HEADER);
    let mode = h[0];
    let (v6_inner, esp) = (mode & 1 != 0, mode & 2 != 0);
    let opt_words = usize::from(h[1] % 11);
    let total = 64 + usize::from(u16::from_le_bytes([h[2], h[3]])) % 1437;
    let s = Stamp {
        trial: u16::from_le_bytes([h[4], h[5]]),
        seq: u32::from_le_bytes([h[6], h[7], h[8], h[9]]) % (1 << 16),
        tsc: u64::from_le_bytes(h[10..18].try_into().unwrap()),
    };
    let pos = usize::from(u16::from_le_bytes([h[18], h[19]]));
    let xor = h[20];
    let trial_total = 1 + u64::from(u16::from_le_bytes([h[21], h[22]]));
    let (out, inb) = sa_pair(mode);

    let ip = stamped_packet(v6_inner, opt_words, total, &s);
    assert_eq!(stamp_offset(&ip).map(|o| o + STAMP_LEN <= ip.len()), Some(true));
    let (sent, outer_end) = if esp {
        let mut b = VecBuf::new(&ip, 128, 64);
        out.encapsulate(u64::from(s.seq) + 1, &mut b).unwrap();
        // Everything from the ESP header on is authenticated.
        let Ok(Classified::Esp(outer)) = wire::classify(b.data()) else { panic!("not ESP after sealing") };
        (frame(b.data()), ETH_LEN + outer.esp_offset())
    } else {
        (frame(&ip), ETH_LEN)
    };
    // Read back, twice: no replay window drops the second.
    assert_eq!(read(Some(&inb), &sent), Some(s), "stamp read back (esp: {esp})");
    assert_eq!(read(Some(&inb), &sent), Some(s), "stamp read back a second time");
    assert_eq!(read(None, &sent).is_some(), !esp, "ESP without the SA is no stamp");

    let mut changed = sent.clone();
    let at = pos % changed.len();
    changed[at] ^= xor;
    let got = read(Some(&inb), &changed);
    if xor != 0 {
        if at < ETH_LEN {
            assert_eq!(got, Some(s), "the Ethernet header is not read");
        } else if esp && at >= outer_end {
            assert_eq!(got, None, "a changed ESP byte {at} must fail authentication");
        } else if !esp {
            let magic = ETH_LEN + stamp_offset(&ip).unwrap();
            if (magic..magic + 2).contains(&at) {
                assert_eq!(got, None, "no magic, no stamp");
            }
        }
    }

    // The tally against a set of the numbers received, over the stamps read from the sent
    // frame, the changed frame and every frame of the input (with and without the SA).
    let mut stamps = vec![Some(s), got, Some(s)];
    while let [l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        stamps.push(read(Some(&inb), &tail[..len]));
        stamps.push(read(None, &tail[..len]));
        rest = &tail[len..];
    }
    let offered = u64::from(s.seq) + 1 + u64::from(h[1]);
    let mut tally = Tally::default();
    for trial in [s.trial, s.trial.wrapping_add(1)] {
        tally.reset(trial, trial_total);
        let mut seen = HashSet::new();
        let (mut received, mut duplicates, mut foreign) = (0, 0, 0);
        for st in &stamps {
            let first = tally.count(*st, offered);
            match st.filter(|x| x.trial == trial && u64::from(x.seq) < offered.min(trial_total)) {
                Some(x) if seen.insert(x.seq) => {
                    assert_eq!(first, Some(x.tsc), "first arrival of {x:?}");
                    received += 1;
                }
                Some(x) => {
                    assert_eq!(first, None, "duplicate {x:?}");
                    duplicates += 1;
                }
                None => {
                    assert_eq!(first, None, "foreign {st:?}");
                    foreign += 1;
                }
            }
        }
        assert_eq!((tally.received, tally.duplicates, tally.foreign), (received, duplicates, foreign));
    }
});
