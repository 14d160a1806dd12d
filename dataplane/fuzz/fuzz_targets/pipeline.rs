//! Frames from the wire through whole worker pipelines (`Pipeline::process_burst`): Ethernet,
//! ARP and neighbour discovery, IPv4/IPv6 headers, the SPD, ESP classification and opening,
//! path-MTU answers, TTL, framing. Two gateways, A and B, as the integration tests build them
//! (dataplane/tests/common/testbed.rs): A protects 10.1.0.0/24 and fd01::/64 towards B's
//! 10.2.0.0/24 and fd02::/64, each with one SA pair.
//!
//! The first input byte picks the SAs (bit 1 UDP encapsulation, 2 IPv6 endpoints, 4 ESN) and
//! the AES-GCM backend (8: intel-ipsec-mb where it runs, else RustCrypto `aes-gcm`). The rest
//! is a list of records `kind, length (2 bytes, little endian), bytes`; consecutive records of
//! the same kind make a burst (at most 32). The kind's low two bits:
//! - 0, 1: a frame as received on A's protected / unprotected port (with 4 set, the harness
//!   writes an Ethernet header for A's MAC and the IP version found at the start of the bytes;
//!   with 8 set, the frame comes from A's host stack instead);
//! - 2: a frame as received on B's unprotected port (4 as above);
//! - 3: an IP packet from a host behind A (with 4 set, the harness puts its addresses inside
//!   the protected networks and repairs its length fields and IPv4 checksum). Whatever A seals
//!   goes on to B, and B must open every one of those packets: it forwards the packet A took
//!   in, TTL or hop limit down by two, gives it to its host stack if it is addressed to B, or
//!   drops it because its TTL ran out.
//!
//! Checked for every burst: no panic; every verdict names a port that exists (and a held next
//! hop that exists); every frame sent has at least an Ethernet header; each drop verdict is
//! counted once (a packet answered with an ICMP error is counted as a drop though its verdict
//! is the answer's).
#![no_main]

#[path = "../../tests/common/testbed.rs"]
mod testbed;

use dataplane::counters::{DropReason, WorkerCounters};
use dataplane::net::{self, Mac};
use dataplane::pipeline::{Ingress, Neighbor, Pipeline, Verdict};
use esp::buf::{PacketBuf, VecBuf};
use esp::wire::{checksum_add, checksum_finish};
use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use testbed::{A_PROT, A_UNPROT, B_UNPROT, HOST1, HOST2, gw_config, pipelines_from};

const BURST: usize = 32;
/// Longest record: a jumbo frame's worth, more than any port's MTU here.
const MAX_RECORD: usize = 9200;

/// One worker of gateway `me`, as the integration tests build it, with the AES-GCM backend
/// `crypto` and few SA slots (each input builds two gateways).
fn gateway(me: &str, udp: bool, v6_outer: bool, esn: bool, crypto: &str) -> Pipeline {
    let conf = format!("[dataplane]\ncrypto = \"{crypto}\"\nmax_sas = 16\n{}", gw_config(me, udp, v6_outer, esn));
    pipelines_from(me, &conf, 1).remove(0).0
}

/// A's neighbour entries for B's tunnel endpoints (both families).
fn pin_peer(a: &mut Pipeline) {
    for ip in ["192.0.2.2", "2001:db8::2"] {
        a.set_neighbor(Neighbor { port: 1, ip: ip.parse().expect("address"), mac: B_UNPROT });
    }
}

fn total_drops(c: &WorkerCounters) -> u64 {
    DropReason::ALL.iter().map(|&r| c.drops(r)).sum()
}

/// Runs one burst and checks what every burst must satisfy (see the top of this file).
fn burst(p: &mut Pipeline, ingress: Ingress, pkts: &mut [VecBuf], now: u64) -> Vec<Verdict> {
    let c = p.counters().clone();
    let drops0 = total_drops(&c);
    let mut verdicts = vec![Verdict::Drop(DropReason::NoRoom); pkts.len()];
    p.process_burst(ingress, pkts, &mut verdicts, now);
    let ports = p.ports().len();
    let (mut dropped, mut answered) = (0, 0);
    for (v, pkt) in verdicts.iter().zip(pkts.iter()) {
        match *v {
            Verdict::Port(n) | Verdict::Host(n) => assert!(usize::from(n) < ports, "{v:?}"),
            Verdict::Hold { port, hop } => {
                assert!(usize::from(port) < ports, "{v:?}");
                assert!(p.held_hop(hop).is_some(), "{v:?}");
            }
            Verdict::Park | Verdict::Drop(_) => {}
        }
        match *v {
            Verdict::Port(_) | Verdict::Hold { .. } => assert!(pkt.len() >= 14, "{v:?}: {} bytes", pkt.len()),
            _ => {}
        }
        match (*v, ingress) {
            (Verdict::Drop(_), _) => dropped += 1,
            // Back out of the port it came in by: an ICMP error answering the packet, which
            // itself counts as dropped. (Nothing else goes back where it came from with these
            // configurations: no bypass policies, and each side's hosts behind its own port.)
            (Verdict::Port(n) | Verdict::Hold { port: n, .. }, Ingress::Port(i)) if usize::from(n) == i => {
                answered += 1
            }
            _ => {}
        }
    }
    assert_eq!(total_drops(&c) - drops0, dropped + answered, "each drop counted once: {verdicts:?}");
    verdicts
}

fn framed(dst: Mac, src: Mac, ip: &[u8]) -> Vec<u8> {
    let et = if ip.first().is_some_and(|b| b >> 4 == 6) { net::ETHERTYPE_IPV6 } else { net::ETHERTYPE_IPV4 };
    let mut f = vec![0u8; 14];
    net::write_eth(&mut f, dst, src, et);
    f.extend_from_slice(ip);
    f
}

/// With `repair`: addresses inside the protected networks (host parts from the input),
/// length fields that match the bytes, a valid IPv4 header checksum.
fn host_packet(bytes: &[u8], repair: bool) -> Vec<u8> {
    let mut ip = bytes.to_vec();
    if !repair {
        return ip;
    }
    match ip.first().map(|b| b >> 4) {
        Some(6) if ip.len() >= 40 => {
            let payload = (ip.len() - 40).min(usize::from(u16::MAX)) as u16;
            ip[4..6].copy_from_slice(&payload.to_be_bytes());
            ip[8..10].copy_from_slice(&[0xfd, 0x01]);
            ip[10..16].fill(0);
            ip[24..26].copy_from_slice(&[0xfd, 0x02]);
            ip[26..32].fill(0);
        }
        Some(4) if ip.len() >= 20 => {
            let ihl = (usize::from(ip[0] & 0x0f) * 4).clamp(20, ip.len() / 4 * 4).min(60);
            ip[0] = 0x40 | (ihl / 4) as u8;
            let total = ip.len().min(usize::from(u16::MAX)) as u16;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[12..15].copy_from_slice(&[10, 1, 0]);
            ip[16..19].copy_from_slice(&[10, 2, 0]);
            ip[10..12].fill(0);
            let c = checksum_finish(checksum_add(0, &ip[..ihl]));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
    ip
}

/// The IP packet `ip` as it is after `hops` routers forwarded it: cut to its header's length,
/// TTL or hop limit down by `hops`. `None` if that cannot be worked out here or the TTL runs
/// out on the way.
fn expected(ip: &[u8], hops: usize) -> Option<Vec<u8>> {
    let len = match ip.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
        6 => 40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?])),
        _ => return None,
    };
    let mut want = ip.get(..len)?.to_vec();
    (0..hops).all(|_| net::decrement_ttl(&mut want)).then_some(want)
}

/// Whether `ip` is addressed to one of gateway B's own protected-side addresses.
fn for_b(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => ip.get(16..20) == Some(&[10, 2, 0, 1][..]),
        Some(6) => {
            ip.get(24..40).is_some_and(|d| d[..2] == [0xfd, 0x02] && d[2..15].iter().all(|&b| b == 0) && d[15] == 1)
        }
        _ => false,
    }
}

/// B's verdict on a packet A sealed: opened and forwarded as A took it in (to the host's MAC,
/// or held while a new host's address is resolved), given to B's host stack if addressed to
/// B, or dropped because its TTL ran out. A sealed only what it could parse and checksum, so
/// nothing else may happen to it.
fn check_opened(v: Verdict, out: &VecBuf, sent: &[u8]) {
    let data = &out.data()[14.min(out.len())..];
    match (v, expected(sent, 2)) {
        (Verdict::Host(0), _) if for_b(sent) => {
            assert_eq!(Some(data.to_vec()), expected(sent, 1), "B's host stack gets what A took in");
        }
        (Verdict::Port(0) | Verdict::Hold { port: 0, .. }, Some(want)) if !for_b(sent) => {
            if v == Verdict::Port(0) {
                assert_eq!(net::dst_mac(out.data()), HOST2);
            }
            assert_eq!(data, &want[..], "B forwards what A took in");
        }
        (Verdict::Drop(DropReason::TtlExpired), None) if !for_b(sent) => {}
        (other, want) => panic!("B's verdict on a packet A sealed: {other:?} (forwardable: {})", want.is_some()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let (udp, v6_outer, esn) = (mode & 1 != 0, mode & 2 != 0, mode & 4 != 0);
    let crypto = if mode & 8 != 0 && dataplane::crypto::choose("ipsec-mb").is_ok() { "ipsec-mb" } else { "aes-gcm" };
    let mut a = gateway("a", udp, v6_outer, esn, crypto);
    let mut b = gateway("b", udp, v6_outer, esn, crypto);
    let mut records: Vec<(u8, &[u8])> = Vec::new();
    while let [kind, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(MAX_RECORD).min(tail.len());
        records.push((*kind & 0x0f, &tail[..len]));
        rest = &tail[len..];
    }
    let mut now = 1_000_000u64;
    for group in records.chunk_by(|x, y| x.0 == y.0) {
        for chunk in group.chunks(BURST) {
            now += 7_919;
            let kind = chunk[0].0;
            let eth = kind & 4 != 0;
            match kind & 3 {
                0 | 1 => {
                    let port = usize::from(kind & 1);
                    let mac = if port == 0 { A_PROT } else { A_UNPROT };
                    let ingress = if kind & 8 != 0 { Ingress::Host(port) } else { Ingress::Port(port) };
                    let mut pkts: Vec<VecBuf> = chunk
                        .iter()
                        .map(|r| VecBuf::new(&if eth { framed(mac, HOST1, r.1) } else { r.1.to_vec() }, 128, 64))
                        .collect();
                    black_box(burst(&mut a, ingress, &mut pkts, now));
                }
                2 => {
                    let mut pkts: Vec<VecBuf> = chunk
                        .iter()
                        .map(|r| {
                            VecBuf::new(&if eth { framed(B_UNPROT, A_UNPROT, r.1) } else { r.1.to_vec() }, 128, 64)
                        })
                        .collect();
                    black_box(burst(&mut b, Ingress::Port(1), &mut pkts, now));
                }
                _ => {
                    // Frames on A's unprotected port may have taught it another address for B
                    // (ARP, neighbour advertisements), as any router learns: B's is put back.
                    pin_peer(&mut a);
                    let sent: Vec<Vec<u8>> = chunk.iter().map(|r| host_packet(r.1, eth)).collect();
                    let mut pkts: Vec<VecBuf> =
                        sent.iter().map(|ip| VecBuf::new(&framed(A_PROT, HOST1, ip), 128, 64)).collect();
                    let verdicts = burst(&mut a, Ingress::Port(0), &mut pkts, now);
                    // What A sealed, on to B as one burst.
                    let (mut esp, originals): (Vec<VecBuf>, Vec<&Vec<u8>>) = verdicts
                        .iter()
                        .zip(pkts)
                        .zip(&sent)
                        .filter(|((v, _), _)| **v == Verdict::Port(1))
                        .map(|((_, f), ip)| (f, ip))
                        .unzip();
                    if esp.is_empty() {
                        continue;
                    }
                    for f in &esp {
                        assert_eq!(net::dst_mac(f.data()), B_UNPROT);
                    }
                    let opened = burst(&mut b, Ingress::Port(1), &mut esp, now);
                    for ((v, out), ip) in opened.into_iter().zip(&esp).zip(originals) {
                        check_opened(v, out, ip);
                    }
                }
            }
        }
    }
});
