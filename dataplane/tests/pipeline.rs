//! The whole per-burst path on plain buffers, two gateways back to back: gateway A encrypts
//! what its protected network sends, gateway B decrypts it. Then every kind of bad input, each
//! dropped and counted under its own reason.

use dataplane::config::Config;
use dataplane::counters::{DropReason, WorkerCounters};
use dataplane::net::{self, Mac};
use dataplane::pipeline::{Ingress, Neighbor, Pipeline, Verdict};
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{OutboundSa, SeqCounter};
use esp::wire::{checksum_add, checksum_finish};
use std::net::IpAddr;
use std::sync::Arc;

#[path = "common/testbed.rs"]
mod testbed;
use testbed::*;

fn ipv4_udp(src: &str, dst: &str, payload_len: usize) -> Vec<u8> {
    let total = 20 + 8 + payload_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    let s: std::net::Ipv4Addr = src.parse().unwrap();
    let d: std::net::Ipv4Addr = dst.parse().unwrap();
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    let c = checksum_finish(checksum_add(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&6000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn ipv6_udp(src: &str, dst: &str, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 8 + payload_len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    let s: std::net::Ipv6Addr = src.parse().unwrap();
    let d: std::net::Ipv6Addr = dst.parse().unwrap();
    p[8..24].copy_from_slice(&s.octets());
    p[24..40].copy_from_slice(&d.octets());
    p[40..42].copy_from_slice(&5000u16.to_be_bytes());
    p[42..44].copy_from_slice(&6000u16.to_be_bytes());
    p
}

fn frame(dst: Mac, src: Mac, ip: &[u8]) -> VecBuf {
    let mut f = vec![0u8; 14];
    let et = if ip[0] >> 4 == 4 { net::ETHERTYPE_IPV4 } else { net::ETHERTYPE_IPV6 };
    net::write_eth(&mut f, dst, src, et);
    f.extend_from_slice(ip);
    VecBuf::new(&f, 128, 64)
}

fn run(p: &mut Pipeline, ingress: Ingress, pkt: VecBuf) -> (Verdict, VecBuf) {
    let mut pkts = [pkt];
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    p.process_burst(ingress, &mut pkts, &mut v, 1);
    let [pkt] = pkts;
    (v[0], pkt)
}

/// Encrypts at A, returns the ESP frame on A's unprotected wire.
fn encrypt(a: &mut Pipeline, inner: &[u8]) -> VecBuf {
    let (v, f) = run(a, Ingress::Port(0), frame(A_PROT, HOST1, inner));
    assert_eq!(v, Verdict::Port(1));
    assert_eq!(net::dst_mac(f.data()), B_UNPROT);
    f
}

#[test]
fn tunnel_both_families_inside_and_out() {
    for (udp, v6_outer, esn) in [(false, false, false), (true, false, true), (false, true, true), (true, true, false)] {
        let (mut a, ca) = pipeline("a", udp, v6_outer, esn);
        let (mut b, cb) = pipeline("b", udp, v6_outer, esn);
        for v6_inner in [false, true] {
            // Four lengths in a row: every amount of ESP padding, 0 to 3.
            for len in 100..104 {
                let inner = if v6_inner {
                    ipv6_udp("fd01::10", "fd02::10", len)
                } else {
                    ipv4_udp("10.1.0.10", "10.2.0.10", len)
                };
                let esp_frame = encrypt(&mut a, &inner);
                let outer = &esp_frame.data()[14..];
                if v6_outer {
                    assert_eq!(outer[0] >> 4, 6);
                    assert_eq!(outer[6], if udp { 17 } else { 50 });
                } else {
                    assert_eq!(outer[0] >> 4, 4);
                    assert_eq!(outer[9], if udp { 17 } else { 50 });
                }
                let (v, out) = run(&mut b, Ingress::Port(1), esp_frame);
                assert_eq!(v, Verdict::Port(0), "udp={udp} v6={v6_outer} esn={esn}");
                assert_eq!(net::dst_mac(out.data()), HOST2);
                let got = &out.data()[14..];
                // Same packet, one hop further on each gateway: TTL/hop limit down by 2.
                let mut want = inner.clone();
                for _ in 0..2 {
                    assert!(net::decrement_ttl(&mut want));
                }
                assert_eq!(got, &want[..]);
            }
        }
        assert_eq!(ca.encrypted.get(), 8);
        assert_eq!(cb.decrypted.get(), 8);
        assert_eq!(ca.sa[0].packets.get(), 8);
        assert_eq!(cb.sa[1].packets.get(), 8);
    }
}

fn expect_drop(p: &mut Pipeline, c: &WorkerCounters, ingress: Ingress, f: VecBuf, reason: DropReason) {
    let before = c.drops(reason);
    let (v, _) = run(p, ingress, f);
    assert_eq!(v, Verdict::Drop(reason));
    assert_eq!(c.drops(reason), before + 1, "{reason:?} counted once");
}

#[test]
fn bad_input_is_dropped_and_counted_by_reason() {
    let (mut a, _) = pipeline("a", true, false, false);
    let (mut b, cb) = pipeline("b", true, false, false);
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    let good = encrypt(&mut a, &inner);
    let bytes = good.data().to_vec();
    let esp_at = 14 + 20 + 8;

    // Truncated at every length: never a panic, always a counted drop.
    for cut in 0..bytes.len() {
        let (v, _) = run(&mut b, Ingress::Port(1), VecBuf::new(&bytes[..cut], 128, 0));
        assert!(matches!(v, Verdict::Drop(_) | Verdict::Host(_)), "cut {cut}: {v:?}");
    }
    expect_drop(&mut b, &cb, Ingress::Port(1), VecBuf::new(&bytes[..10], 0, 0), DropReason::RuntFrame);

    // Unknown SPI.
    let mut f = bytes.clone();
    f[esp_at..esp_at + 4].copy_from_slice(&0x9999u32.to_be_bytes());
    // (Parked, untouched, for the worker to offer again or drop: the SA may be on its way.)
    let (v, parked) = run(&mut b, Ingress::Port(1), VecBuf::new(&f, 128, 0));
    assert_eq!(v, Verdict::Park);
    assert_eq!(parked.data(), &f[..]);

    // Wrong ICV (last byte), then a flipped ciphertext byte.
    let mut f = bytes.clone();
    let n = f.len();
    f[n - 1] ^= 1;
    expect_drop(&mut b, &cb, Ingress::Port(1), VecBuf::new(&f, 128, 0), DropReason::AuthFailed);
    let mut f = bytes.clone();
    f[esp_at + 20] ^= 0x80;
    expect_drop(&mut b, &cb, Ingress::Port(1), VecBuf::new(&f, 128, 0), DropReason::AuthFailed);

    // The genuine packet passes once, then is a replay.
    let (v, _) = run(&mut b, Ingress::Port(1), VecBuf::new(&bytes, 128, 0));
    assert_eq!(v, Verdict::Port(0));
    expect_drop(&mut b, &cb, Ingress::Port(1), VecBuf::new(&bytes, 128, 0), DropReason::ReplayDuplicate);

    // Too old: push the window 100 packets ahead, then replay an early one.
    let early = encrypt(&mut a, &inner);
    for _ in 0..100 {
        let f = encrypt(&mut a, &inner);
        assert_eq!(run(&mut b, Ingress::Port(1), f).0, Verdict::Port(0));
    }
    expect_drop(&mut b, &cb, Ingress::Port(1), early, DropReason::ReplayTooOld);

    // An authentic packet whose inner source is outside the SA's selectors.
    let outside = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    let mut outside_src = outside.clone();
    outside_src[12..16].copy_from_slice(&[10, 9, 0, 1]);
    let c = checksum_finish(checksum_add(0, &{
        let mut h = outside_src[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    outside_src[10..12].copy_from_slice(&c.to_be_bytes());
    // Gateway A would never send it (its policy does not match), so seal it with A's SA by hand
    // through a second pipeline whose policy is wider.
    let wide = gw_config("a", true, false, false).replace("src = \"10.1.0.0/24\"", "src = \"10.0.0.0/8\"");
    let cfg = Config::parse(&wide).unwrap();
    let out_sa = OutboundSa::new(&cfg.sas[0].sa, Arc::new(SeqCounter::starting_at(5000))).unwrap();
    let mut buf = VecBuf::new(&outside_src, 128, 64);
    out_sa.encapsulate(5000, &mut buf).unwrap();
    let mut f = vec![0u8; 14];
    net::write_eth(&mut f, B_UNPROT, A_UNPROT, net::ETHERTYPE_IPV4);
    f.extend_from_slice(buf.data());
    expect_drop(&mut b, &cb, Ingress::Port(1), VecBuf::new(&f, 128, 0), DropReason::InnerSelectorMismatch);

    // Bad padding and bad next header need a valid ICV over bad content: seal by hand.
    let sa_cfg = &cfg.sas[0].sa;
    let aead = esp::aead::AesGcm::new(&sa_cfg.key);
    let salt = sa_cfg.key.salt();
    let make = |seq: u64, payload: &[u8], nh: u8, corrupt_pad: bool| -> VecBuf {
        let mut region = vec![0u8; esp::codec::esp_len(payload.len())];
        region[16..16 + payload.len()].copy_from_slice(payload);
        let p = esp::codec::SealParams {
            aead: &aead,
            salt: &salt,
            spi: sa_cfg.spi,
            seq,
            esn: false,
            iv: seq.to_be_bytes(),
            next_header: nh,
        };
        if corrupt_pad {
            // Seal the payload with its trailer already wrong: pad bytes 9, 9 instead of 1, 2.
            let mut pl = payload.to_vec();
            let pad = esp::codec::pad_len(pl.len());
            assert!(pad >= 1);
            pl.truncate(pl.len());
            let mut r2 = vec![0u8; 16 + pl.len() + pad + 2 + 16];
            r2[16..16 + pl.len()].copy_from_slice(&pl);
            for b in &mut r2[16 + pl.len()..16 + pl.len() + pad] {
                *b = 9;
            }
            r2[16 + pl.len() + pad] = pad as u8;
            r2[16 + pl.len() + pad + 1] = nh;
            r2[..4].copy_from_slice(&sa_cfg.spi.to_be_bytes());
            r2[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
            r2[8..16].copy_from_slice(&seq.to_be_bytes());
            let mut aad = [0u8; 12];
            let al = esp::codec::aad(sa_cfg.spi, seq, false, &mut aad);
            let l = r2.len();
            let tag = esp::aead::Aead::seal(
                &aead,
                &esp::codec::nonce(&salt, &seq.to_be_bytes()),
                &aad[..al],
                &mut r2[16..l - 16],
            );
            r2[l - 16..].copy_from_slice(&tag);
            region = r2;
        } else {
            esp::codec::seal(&p, &mut region, payload.len()).unwrap();
        }
        let mut pkt = vec![0u8; 14 + 20 + 8];
        net::write_eth(&mut pkt, B_UNPROT, A_UNPROT, net::ETHERTYPE_IPV4);
        let total = 20 + 8 + region.len();
        let ip = &mut pkt[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
        ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
        let c = checksum_finish(checksum_add(0, &ip[..20]));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[20..22].copy_from_slice(&4500u16.to_be_bytes());
        ip[22..24].copy_from_slice(&4500u16.to_be_bytes());
        ip[24..26].copy_from_slice(&((8 + region.len()) as u16).to_be_bytes());
        pkt.extend_from_slice(&region);
        VecBuf::new(&pkt, 128, 0)
    };
    expect_drop(&mut b, &cb, Ingress::Port(1), make(6000, &inner[..65], 4, true), DropReason::BadPadding);
    expect_drop(&mut b, &cb, Ingress::Port(1), make(6001, &inner, 17, false), DropReason::BadNextHeader);
    expect_drop(&mut b, &cb, Ingress::Port(1), make(6002, &inner, 59, false), DropReason::DummyPacket);
    expect_drop(&mut b, &cb, Ingress::Port(1), make(6003, &inner[..30], 4, false), DropReason::BadInnerPacket);

    // Plaintext from the unprotected side for a protected flow.
    let clear = frame(B_UNPROT, A_UNPROT, &ipv4_udp("10.1.0.10", "10.2.0.10", 10));
    expect_drop(&mut b, &cb, Ingress::Port(1), clear, DropReason::ClearForProtectedFlow);
    // No policy, unsupported ethertype, someone else's unicast frame.
    let stray = frame(B_PROT, HOST2, &ipv4_udp("10.2.0.10", "10.7.0.1", 10));
    expect_drop(&mut b, &cb, Ingress::Port(0), stray, DropReason::NoPolicy);
    let mut vlan = frame(B_PROT, HOST2, &inner);
    vlan.data_mut()[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    expect_drop(&mut b, &cb, Ingress::Port(0), vlan, DropReason::UnsupportedEthertype);
    expect_drop(&mut b, &cb, Ingress::Port(0), frame(HOST1, HOST2, &inner), DropReason::NotForUs);
    // TTL 1 cannot be forwarded.
    let mut ttl1 = ipv4_udp("10.2.0.10", "10.1.0.10", 10);
    ttl1[8] = 1;
    let c = checksum_finish(checksum_add(0, &{
        let mut h = ttl1[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    ttl1[10..12].copy_from_slice(&c.to_be_bytes());
    expect_drop(&mut b, &cb, Ingress::Port(0), frame(B_PROT, HOST2, &ttl1), DropReason::TtlExpired);
    // A corrupted header checksum: dropped by the gateway that received it, not sealed for the
    // peer to drop (RFC 1812 5.2.2). Options or not, every byte of the header counts.
    for options in [0, 4] {
        let mut bad = ipv4_udp("10.2.0.10", "10.1.0.10", 10);
        if options > 0 {
            bad.splice(20..20, [1u8; 4]);
            bad[0] = 0x46;
            let total = bad.len() as u16;
            bad[2..4].copy_from_slice(&total.to_be_bytes());
        }
        bad[10..12].fill(0);
        let c = checksum_finish(checksum_add(0, &bad[..20 + options]));
        bad[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(run(&mut b, Ingress::Port(0), frame(B_PROT, HOST2, &bad)).0, Verdict::Port(1));
        for at in [1, 8, 15, 19 + options] {
            let mut f = bad.clone();
            f[at] ^= 0x10;
            expect_drop(&mut b, &cb, Ingress::Port(0), frame(B_PROT, HOST2, &f), DropReason::MalformedIp);
        }
    }
}

/// Decrypted packets go to the destination's neighbour as it is now: a changed or a new
/// neighbour address is used from the next packet on, for a few hundred destinations of both
/// families (a guard for any caching of where destinations go).
#[test]
fn forwarding_follows_neighbour_changes() {
    let (mut a, _) = pipeline("a", false, false, false);
    let (mut b, _) = pipeline("b", false, false, false);
    let mut deliver = |b: &mut Pipeline, dst: &str| {
        let inner = if dst.contains(':') { ipv6_udp("fd01::10", dst, 64) } else { ipv4_udp("10.1.0.10", dst, 64) };
        let (v, out) = run(b, Ingress::Port(1), encrypt(&mut a, &inner));
        (v, net::dst_mac(out.data()))
    };
    assert_eq!(deliver(&mut b, "10.2.0.10"), (Verdict::Port(0), HOST2));
    assert_eq!(deliver(&mut b, "10.2.0.10"), (Verdict::Port(0), HOST2));
    let moved = Mac([2, 0x44, 0, 0, 0, 9]);
    b.set_neighbor(Neighbor { port: 0, ip: "10.2.0.10".parse().unwrap(), mac: moved });
    assert_eq!(deliver(&mut b, "10.2.0.10"), (Verdict::Port(0), moved));
    // A host not known yet is held; once learned, its own address is used.
    assert!(matches!(deliver(&mut b, "10.2.0.20").0, Verdict::Hold { port: 0, .. }));
    // 293 destinations: each gets its own neighbour's address, the second time round as the
    // first.
    let hosts: Vec<(String, Mac)> = (2..=254u8)
        .filter(|&i| i != 10)
        .map(|i| (format!("10.2.0.{i}"), Mac([2, 0x55, 0, 0, 0, i])))
        .chain((0..41u8).map(|i| (format!("fd02::{:x}", 0x100 + u32::from(i)), Mac([2, 0x66, 0, 0, 0, i]))))
        .collect();
    for (ip, mac) in &hosts {
        b.set_neighbor(Neighbor { port: 0, ip: ip.parse().unwrap(), mac: *mac });
    }
    for _ in 0..2 {
        for (ip, mac) in &hosts {
            assert_eq!(deliver(&mut b, ip), (Verdict::Port(0), *mac), "{ip}");
        }
    }
    assert_eq!(deliver(&mut b, "10.2.0.10"), (Verdict::Port(0), moved));
}

#[test]
fn host_traffic_and_neighbours() {
    let (mut b, cb) = pipeline("b", true, false, false);
    // ARP from a new host on the protected subnet: learned, and handed to the host stack.
    let mut arp = [0u8; 60];
    let new_host = Mac([2, 0x33, 0, 0, 0, 3]);
    net::arp_request(new_host, "10.2.0.77".parse().unwrap(), "10.2.0.1".parse().unwrap(), &mut arp);
    let (v, _) = run(&mut b, Ingress::Port(0), VecBuf::new(&arp, 0, 0));
    assert_eq!(v, Verdict::Host(0));
    assert_eq!(b.neighbor(0, "10.2.0.77".parse().unwrap()), Some(new_host));
    assert_eq!(b.learned.len(), 1);
    // A ping of the gateway's own address goes to the host stack.
    let ping = frame(B_PROT, HOST2, &ipv4_udp("10.2.0.10", "10.2.0.1", 8));
    assert_eq!(run(&mut b, Ingress::Port(0), ping).0, Verdict::Host(0));
    // What the host stack sends goes out of its port unchanged.
    let (v, out) = run(&mut b, Ingress::Host(1), VecBuf::new(&arp, 0, 0));
    assert_eq!(v, Verdict::Port(1));
    assert_eq!(out.data(), &arp[..]);
    assert_eq!(cb.from_host.get(), 1);
    // Less than a frame is not sent.
    expect_drop(&mut b, &cb, Ingress::Host(1), VecBuf::new(&arp[..13], 0, 0), DropReason::RuntFrame);
    // An unresolved next hop is solicited, rate limited, and the packet counted.
    let to_unknown = frame(B_PROT, HOST2, &ipv4_udp("10.2.0.10", "10.1.0.99", 8));
    let (mut a, ca) = pipeline("a", true, false, false);
    let (v, f) = run(&mut b, Ingress::Port(0), to_unknown);
    assert!(matches!(v, Verdict::Port(1)), "{v:?}");
    let (v, _) = run(&mut a, Ingress::Port(1), f);
    // Held, framed but for the destination MAC, while the neighbour is solicited.
    let Verdict::Hold { port: 0, hop } = v else { panic!("{v:?}") };
    assert_eq!(a.held_hop(hop), Some("10.1.0.99".parse().unwrap()));
    assert_eq!(ca.drops(DropReason::NoNeighbor), 0);
    // (The gateway also asked for its peer at start: next hops it knows it will need.)
    assert!(a.solicit.contains(&(1usize, "192.0.2.2".parse::<IpAddr>().unwrap())));
    assert!(a.solicit.contains(&(0usize, "10.1.0.99".parse::<IpAddr>().unwrap())));
    let mut buf = [0u8; 86];
    let len = a.solicitation(0, "10.1.0.99".parse().unwrap(), &mut buf).unwrap();
    assert_eq!(net::arp_sender(&buf[14..len]).map(|x| x.0), Some("10.1.0.1".parse().unwrap()));
}

#[test]
fn sequence_numbers_are_reserved_per_burst_and_never_repeat() {
    let (mut a, _) = pipeline("a", false, false, false);
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 20);
    let mut pkts: Vec<VecBuf> = (0..32).map(|_| frame(A_PROT, HOST1, &inner)).collect();
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); 32];
    a.process_burst(Ingress::Port(0), &mut pkts, &mut v, 1);
    let seqs: Vec<u32> =
        pkts.iter().map(|p| u32::from_be_bytes(p.data()[14 + 20 + 4..14 + 20 + 8].try_into().unwrap())).collect();
    assert_eq!(seqs, (1..=32).collect::<Vec<u32>>());
}

#[test]
fn two_workers_share_sequence_numbers_and_the_replay_window() {
    let mut a = pipelines("a", true, false, true, 2);
    let mut b = pipelines("b", true, false, true, 2);
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 40);
    // Both of a's workers send on the one SA: their sequence numbers interleave, never repeat.
    let mut seqs = Vec::new();
    let mut frames = Vec::new();
    for k in 0..10 {
        let (p, _) = &mut a[k % 2];
        let f = encrypt(p, &inner);
        seqs.push(u32::from_be_bytes(f.data()[14 + 20 + 8 + 4..14 + 20 + 8 + 8].try_into().unwrap()));
        frames.push(f);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<u32>>());
    // Each packet accepted by one of b's workers is a replay for the other.
    for (k, f) in frames.into_iter().enumerate() {
        let copy = VecBuf::new(f.data(), 128, 0);
        assert_eq!(run(&mut b[k % 2].0, Ingress::Port(1), f).0, Verdict::Port(0));
        let (other, oc) = &mut b[(k + 1) % 2];
        expect_drop(other, oc, Ingress::Port(1), copy, DropReason::ReplayDuplicate);
    }
}

#[test]
fn too_big_for_the_tunnel_is_answered_with_icmp() {
    let (mut a, ca) = pipeline("a", true, false, false);
    // IPv4 with DF: "fragmentation needed" back to the sender, with the tunnel's MTU.
    let mut big = ipv4_udp("10.1.0.10", "10.2.0.10", 1472);
    big[6] = 0x40;
    big[10] = 0;
    big[11] = 0;
    let c = checksum_finish(checksum_add(0, &big[..20]));
    big[10..12].copy_from_slice(&c.to_be_bytes());
    let (v, f) = run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &big));
    assert_eq!(v, Verdict::Port(0));
    assert_eq!(net::dst_mac(f.data()), HOST1);
    let ip = &f.data()[14..];
    let p = esp::wire::Ipv4Packet::new_checked(ip).unwrap();
    assert!(p.checksum_ok());
    assert_eq!((p.src().to_string(), p.dst().to_string(), p.protocol()), ("10.1.0.1".into(), "10.1.0.10".into(), 1));
    assert_eq!(p.total_len(), 576);
    let icmp = p.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(checksum_finish(checksum_add(0, icmp)), 0);
    let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
    // 1500 - outer IPv4 20 - UDP 8 - ESP 8 - IV 8 - ICV 16 = 1440, minus 2 trailer bytes.
    assert_eq!(mtu, 1438);
    assert_eq!(&icmp[8..28], &big[..20], "the original header is quoted");
    assert_eq!(ca.drops(DropReason::MtuExceeded), 1);
    // One that fits goes through.
    let fits = ipv4_udp("10.1.0.10", "10.2.0.10", 1438 - 28);
    assert_eq!(run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &fits)).0, Verdict::Port(1));
    // Rate limited: right after the first, no second ICMP.
    let (v, _) = run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &big));
    assert_eq!(v, Verdict::Drop(DropReason::MtuExceeded));
    assert_eq!(ca.drops(DropReason::MtuExceeded), 2, "each packet counted once");
    // Without DF: dropped (no fragmentation yet), counted.
    let (mut a, ca) = pipeline("a", true, false, false);
    let no_df = ipv4_udp("10.1.0.10", "10.2.0.10", 1472);
    assert_eq!(run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &no_df)).0, Verdict::Drop(DropReason::MtuExceeded));
    assert_eq!(ca.drops(DropReason::MtuExceeded), 1, "counted once");
    // IPv6: "packet too big".
    let (mut a, _) = pipeline("a", true, false, false);
    let big6 = ipv6_udp("fd01::10", "fd02::10", 1452);
    let (v, f) = run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &big6));
    assert_eq!(v, Verdict::Port(0));
    let ip = &f.data()[14..];
    let p = esp::wire::Ipv6Packet::new_checked(ip).unwrap();
    assert_eq!((p.src().to_string(), p.dst().to_string(), p.next_header()), ("fd01::1".into(), "fd01::10".into(), 58));
    assert_eq!(p.total_len(), 1280);
    let icmp = p.payload();
    assert_eq!(icmp[0], 2);
    assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1438);
    let mut sum = checksum_add(0, &ip[8..40]);
    sum = sum.wrapping_add(icmp.len() as u32 + 58);
    assert_eq!(checksum_finish(checksum_add(sum, icmp)), 0);
}

/// A packet too big for the tunnel that came in by a port with no address of its family: the
/// answer's source is another port's address of that family (RFC 4443 2.2(c)); with none at
/// all, the packet is dropped before it is sealed. Either way it counts as one drop.
#[test]
fn too_big_without_an_address_on_the_ingress_port() {
    let v4_only = gw_config("a", true, false, false).replace(r#"["10.1.0.1/24", "fd01::1/64"]"#, r#"["10.1.0.1/24"]"#);
    let big6 = ipv6_udp("fd01::10", "fd02::10", 1452);
    // The host's network routed to the protected port, which has only IPv4 addresses.
    let routed = format!("{v4_only}\n[[route]]\nprefix = \"fd01::/64\"\nport = \"p0\"\n");
    let (mut a, ca) = pipelines_from("a", &routed, 1).remove(0);
    let (v, f) = run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &big6));
    assert_eq!(v, Verdict::Port(0));
    let p = esp::wire::Ipv6Packet::new_checked(&f.data()[14..]).unwrap();
    assert_eq!(
        (p.src().to_string(), p.dst().to_string(), p.payload()[0]),
        ("2001:db8::1".into(), "fd01::10".into(), 2)
    );
    assert_eq!((ca.drops(DropReason::MtuExceeded), ca.encrypted.get()), (1, 0));
    // No IPv6 address on any port (the tunnel is IPv4): nothing to answer from.
    let no_v6 = v4_only.replace(r#"["192.0.2.1/24", "2001:db8::1/64"]"#, r#"["192.0.2.1/24"]"#);
    let (mut a, ca) = pipelines_from("a", &no_v6, 1).remove(0);
    let (v, _) = run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &big6));
    assert_eq!(v, Verdict::Drop(DropReason::MtuExceeded));
    assert_eq!((ca.drops(DropReason::MtuExceeded), ca.encrypted.get()), (1, 0));
    // One that fits still goes through.
    let fits = ipv6_udp("fd01::10", "fd02::10", 1000);
    assert_eq!(run(&mut a, Ingress::Port(0), frame(A_PROT, HOST1, &fits)).0, Verdict::Port(1));
}

// ---- Programmed at run time through the control thread, as the IKE daemon will do it ----

use crossbeam::queue::ArrayQueue;
use dataplane::control::Command;
use dataplane::controller::Controller;
use dataplane::sad::SadEvent;
use dataplane::worker::Event;
use std::time::{Duration, Instant};

/// One worker of a gateway with ports but no SAs or policies, its control thread, and the
/// rings between them.
struct Controlled {
    ctl: Controller,
    p: Pipeline,
    c: Arc<WorkerCounters>,
    ring: Arc<ArrayQueue<dataplane::pipeline::Update>>,
    events: Arc<ArrayQueue<Event>>,
}

impl Controlled {
    fn new(me: &str) -> Self {
        let full = gw_config(me, true, false, false);
        let ports_only = &full[..full.find("[[sa]]").unwrap()];
        let cfg = Config::parse(ports_only).unwrap();
        let macs = if me == "a" { [A_PROT, A_UNPROT] } else { [B_PROT, B_UNPROT] };
        let (mut ps, sad) = dataplane::gateway::build_pipelines(&cfg, &macs, &[0], 1_000_000).unwrap();
        let mut p = ps.remove(0);
        let (host, host_mac, peer, peer_mac) = if me == "a" {
            ("10.1.0.10", HOST1, "192.0.2.2", B_UNPROT)
        } else {
            ("10.2.0.10", HOST2, "192.0.2.1", A_UNPROT)
        };
        p.set_neighbor(Neighbor { port: 0, ip: host.parse().unwrap(), mac: host_mac });
        p.set_neighbor(Neighbor { port: 1, ip: peer.parse().unwrap(), mac: peer_mac });
        let c = p.counters().clone();
        let ring = Arc::new(ArrayQueue::new(8));
        let events = Arc::new(ArrayQueue::new(64));
        let ctl = Controller::new(sad, vec![c.clone()], vec![ring.clone()], vec![events.clone()]);
        Controlled { ctl, p, c, ring, events }
    }

    /// A control-socket command, as JSON text the way a client sends it.
    fn command(&mut self, json: &str) {
        let cmd: Command = serde_json::from_str(json).unwrap();
        let r = self.ctl.handle(cmd);
        assert_eq!(r.error, None, "{json}");
        self.pump();
    }

    /// What the worker does between bursts: apply updates, report retired objects and acquires.
    fn pump(&mut self) {
        loop {
            while let Some(u) = self.ring.pop() {
                if let Some(r) = self.p.apply(u) {
                    let _ = self.events.push(Event::Retired(r));
                }
            }
            for (id, k) in self.p.acquire.drain(..) {
                let _ = self.events.push(Event::Acquire(id, k));
            }
            self.ctl.tick(Instant::now());
            if self.ctl.flushed() && self.ring.is_empty() {
                break;
            }
        }
    }

    fn events(&mut self) -> Vec<SadEvent> {
        self.ctl.handle(Command::PollEvents).events.unwrap()
    }
}

fn sa_json(name: &str, dir: &str, spi: u32, key: &str, local: &str, remote: &str, extra: &str) -> String {
    format!(
        r#"{{"command":"add_sa","sa":{{"name":"{name}","spi":{spi},"direction":"{dir}","algorithm":"aes128gcm16",
        "key":"{key}","salt":"01020304","local":"{local}","remote":"{remote}","udp_encap":true{extra}}}}}"#
    )
}

const KEY1: &str = "000102030405060708090a0b0c0d0e0f";
const KEY2: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

#[test]
fn programmed_at_run_time_acquire_then_install_then_rekey_without_loss() {
    let mut a = Controlled::new("a");
    let mut b = Controlled::new("b");
    let policy = |sa_out: &str, sa_in: &str, src: &str, dst: &str| {
        format!(
            r#"{{"command":"set_policy","policy":{{"name":"nets","src":"{src}","dst":"{dst}","action":"protect","sa_out":"{sa_out}","sa_in":"{sa_in}"}}}}"#
        )
    };
    // A trap policy first: traffic that needs an SA is dropped, counted, and asked for.
    a.command(&policy("a-out-1", "a-in-1", "10.1.0.0/24", "10.2.0.0/24"));
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    let (v, _) = run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner));
    assert_eq!(v, Verdict::Drop(DropReason::NoSa));
    a.pump();
    let ev = a.events();
    assert!(
        matches!(&ev[..], [SadEvent::Acquire { policy, proto: 17, dport: 6000, .. }] if policy == "nets"),
        "{ev:?}"
    );

    // Install the SA pair on both sides (B's policy mirrors A's).
    b.command(&policy("b-out-1", "b-in-1", "10.2.0.0/24", "10.1.0.0/24"));
    b.command(&sa_json("b-in-1", "in", 0x1001, KEY1, "192.0.2.2", "192.0.2.1", ""));
    a.command(&sa_json("a-out-1", "out", 0x1001, KEY1, "192.0.2.1", "192.0.2.2", ""));
    let deliver = |a: &mut Controlled, b: &mut Controlled| {
        let (v, f) = run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner));
        assert_eq!(v, Verdict::Port(1));
        let (v, _) = run(&mut b.p, Ingress::Port(1), f);
        assert_eq!(v, Verdict::Port(0));
    };
    for _ in 0..5 {
        deliver(&mut a, &mut b);
    }

    // Rekey, make-before-break (ARCHITECTURE.md): the new inbound SA first, then outbound
    // switches (new SA, policy pointed at it, old SA removed), and the old inbound SA goes last.
    // A packet already encrypted with the old SA and still in flight must arrive too.
    let in_flight = run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner)).1;
    b.command(&sa_json(
        "b-in-2",
        "in",
        0x1002,
        KEY2,
        "192.0.2.2",
        "192.0.2.1",
        r#","selectors":[{"src":"10.2.0.0/24","dst":"10.1.0.0/24"}]"#,
    ));
    deliver(&mut a, &mut b);
    a.command(&sa_json("a-out-2", "out", 0x1002, KEY2, "192.0.2.1", "192.0.2.2", ""));
    a.command(&policy("a-out-2", "a-in-2", "10.1.0.0/24", "10.2.0.0/24"));
    a.command(r#"{"command":"del_sa","name":"a-out-1"}"#);
    let (v, f) = run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner));
    assert_eq!(v, Verdict::Port(1));
    let spi = u32::from_be_bytes(f.data()[14 + 28..14 + 32].try_into().unwrap());
    assert_eq!(spi, 0x1002, "outbound switched to the new SA");
    assert_eq!(run(&mut b.p, Ingress::Port(1), f).0, Verdict::Port(0));
    assert_eq!(
        run(&mut b.p, Ingress::Port(1), in_flight).0,
        Verdict::Port(0),
        "old SA still accepted in the grace period"
    );
    b.command(r#"{"command":"del_sa","name":"b-in-1"}"#);
    assert_eq!(b.c.drops(DropReason::AuthFailed) + b.c.drops(DropReason::InnerSelectorMismatch), 0);
    assert_eq!(a.c.drops(DropReason::NoSa), 1, "only the packet before the first SA existed");

    // The retired SAs went back to the control thread.
    let listed = b.ctl.handle(Command::ListSas).sas.unwrap();
    assert_eq!(listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["b-in-2"]);
    assert_eq!(listed[0].packets, 1, "the one packet sent after the switch");
}

#[test]
fn esp_that_beats_its_inbound_sa_is_parked_then_delivered() {
    // We started a rekey; the peer answered and sends on the new SA at once, before our
    // control plane has installed the new inbound SA here (RFC 7296 2.8 make-before-break).
    let mut a = Controlled::new("a");
    let mut b = Controlled::new("b");
    a.command(&sa_json("a-out-2", "out", 0x1002, KEY2, "192.0.2.1", "192.0.2.2", ""));
    a.command(
        r#"{"command":"set_policy","policy":{"name":"nets","src":"10.1.0.0/24","dst":"10.2.0.0/24","action":"protect","sa_out":"a-out-2"}}"#,
    );
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    let early = encrypt(&mut a.p, &inner);
    let bytes = early.data().to_vec();
    let (v, early) = run(&mut b.p, Ingress::Port(1), early);
    assert_eq!(v, Verdict::Park);
    assert_eq!(early.data(), &bytes[..], "a parked frame is untouched");
    let rx = b.c.rx.get();
    b.command(&sa_json(
        "b-in-2",
        "in",
        0x1002,
        KEY2,
        "192.0.2.2",
        "192.0.2.1",
        r#","selectors":[{"src":"10.2.0.0/24","dst":"10.1.0.0/24"}]"#,
    ));
    let mut pkts = [early];
    let mut v = [Verdict::Park];
    b.p.reprocess(1, &mut pkts, &mut v, 2);
    assert_eq!(v[0], Verdict::Port(0), "delivered once its SA is there");
    // The inner packet, past the TTL and checksum the two gateways decremented.
    assert_eq!(&pkts[0].data()[14 + 12..14 + inner.len()], &inner[12..]);
    assert_eq!(b.c.rx.get(), rx, "received once, counted once");
    assert_eq!(b.c.drops(DropReason::UnknownSpi), 0);
}

#[test]
fn lifetimes_soft_then_hard() {
    let mut a = Controlled::new("a");
    a.command(
        r#"{"command":"set_policy","policy":{"name":"nets","src":"10.1.0.0/24","dst":"10.2.0.0/24","action":"protect","sa_out":"out"}}"#,
    );
    a.command(&sa_json("out", "out", 0x1001, KEY1, "192.0.2.1", "192.0.2.2", r#","soft_packets":3,"hard_packets":5"#));
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    let send = |a: &mut Controlled| run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner)).0;
    for _ in 0..3 {
        assert_eq!(send(&mut a), Verdict::Port(1));
    }
    // Lifetimes are checked every 100 ms of the control thread's clock.
    a.ctl.tick(Instant::now() + Duration::from_millis(150));
    let ev = a.events();
    assert!(matches!(&ev[..], [SadEvent::SoftExpire { name, spi: 0x1001, .. }] if name == "out"), "{ev:?}");
    for _ in 0..2 {
        assert_eq!(send(&mut a), Verdict::Port(1));
    }
    a.ctl.tick(Instant::now() + Duration::from_millis(300));
    a.pump();
    let ev = a.events();
    assert!(matches!(&ev[..], [SadEvent::HardExpire { name, .. }] if name == "out"), "{ev:?}");
    assert_eq!(send(&mut a), Verdict::Drop(DropReason::NoSa), "the SA is gone after its hard lifetime");
}

#[test]
fn control_commands_are_checked() {
    let mut a = Controlled::new("a");
    let bad = |a: &mut Controlled, json: &str| a.ctl.handle(serde_json::from_str(json).unwrap()).error.unwrap();
    let e = bad(&mut a, &sa_json("x", "out", 0x1001, "0011", "192.0.2.1", "192.0.2.2", ""));
    assert!(e.starts_with("sa.key:"), "{e}");
    assert!(!e.contains("0011"), "the key is not echoed: {e}");
    a.command(&sa_json("x", "in", 0x1001, KEY1, "192.0.2.1", "192.0.2.2", ""));
    let e = bad(&mut a, &sa_json("x", "in", 0x1002, KEY1, "192.0.2.1", "192.0.2.2", ""));
    assert!(e.contains("exists already"), "{e}");
    let e = bad(&mut a, &sa_json("y", "in", 0x1001, KEY1, "192.0.2.1", "192.0.2.2", ""));
    assert!(e.contains("SPI 0x1001"), "{e}");
    let e = bad(&mut a, r#"{"command":"del_sa","name":"nope"}"#);
    assert!(e.contains("no SA named"), "{e}");
    let e = bad(
        &mut a,
        r#"{"command":"set_policy","policy":{"name":"p","src":"10.1.0.0/24","dst":"10.2.0.0/24","action":"protect","sa_out":"x"}}"#,
    );
    assert!(e.contains("wrong direction"), "{e}");
}

/// Policies changed one by one at run time: a replaced policy keeps its place among policies
/// of equal priority, a deleted one stops matching, and removing or installing an SA
/// re-resolves only the policies that name it.
#[test]
fn policies_replaced_deleted_and_re_resolved_one_by_one() {
    let mut a = Controlled::new("a");
    let policy = |name: &str, dst: &str, action: &str| {
        format!(
            r#"{{"command":"set_policy","policy":{{"name":"{name}","src":"10.1.0.0/24","dst":"{dst}","action":"{action}"{}}}}}"#,
            if action == "protect" { r#","sa_out":"out""# } else { "" }
        )
    };
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    let send = |a: &mut Controlled| run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner)).0;
    a.command(&sa_json("out", "out", 0x1001, KEY1, "192.0.2.1", "192.0.2.2", ""));
    // Same priority: the first configured wins, and keeps winning when it is replaced.
    a.command(&policy("wide", "10.2.0.0/16", "discard"));
    a.command(&policy("narrow", "10.2.0.0/24", "protect"));
    assert_eq!(send(&mut a), Verdict::Drop(DropReason::PolicyDiscard));
    a.command(&policy("wide", "10.2.0.0/15", "discard"));
    assert_eq!(send(&mut a), Verdict::Drop(DropReason::PolicyDiscard), "replaced in place, still first");
    a.command(r#"{"command":"del_policy","name":"wide"}"#);
    assert_eq!(send(&mut a), Verdict::Port(1), "deleted: the narrow policy protects");
    // The SA goes: its policy now has none (an acquire); a new one of the same name is used.
    a.command(r#"{"command":"del_sa","name":"out"}"#);
    assert_eq!(send(&mut a), Verdict::Drop(DropReason::NoSa));
    a.command(&sa_json("out", "out", 0x1002, KEY2, "192.0.2.1", "192.0.2.2", ""));
    let (v, b) = run(&mut a.p, Ingress::Port(0), frame(A_PROT, HOST1, &inner));
    assert_eq!(v, Verdict::Port(1));
    assert_eq!(
        &b.data()[net::ETH_HDR_LEN + 28..net::ETH_HDR_LEN + 32],
        &0x1002u32.to_be_bytes(),
        "sent with the new SA's SPI"
    );
    let e = a.ctl.handle(serde_json::from_str(r#"{"command":"del_policy","name":"wide"}"#).unwrap()).error.unwrap();
    assert!(e.contains("no policy named"), "{e}");
}

#[test]
fn an_outbound_sa_near_the_end_of_its_numbers_reports_it_once() {
    use dataplane::pipeline::Update;
    for esn in [false, true] {
        let (mut a, ca) = pipeline("a", false, false, esn);
        let cfg = Config::parse(&gw_config("a", false, false, esn)).unwrap();
        let sa_cfg = &cfg.sas[0].sa;
        let spi = sa_cfg.spi;
        let at = |next: u64| OutboundSa::new(sa_cfg, Arc::new(SeqCounter::starting_at(next))).unwrap();
        let (soft, last) = (at(1).seq_soft(), at(1).seq_last());
        assert_eq!(last, if esn { u64::MAX >> 1 } else { u64::from(u32::MAX) });
        assert_eq!(last - soft, last / 16, "a sixteenth of the space is left for the rekey");
        // The SA in slot 0 ("out", the first in the configuration) with its counter `next`.
        let burst_from = |a: &mut Pipeline, next: Option<u64>| -> Vec<Verdict> {
            if let Some(next) = next {
                a.apply(Update::AddOutbound { slot: 0, sa: Box::new(at(next)) });
            }
            let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
            let mut pkts: Vec<VecBuf> = (0..4).map(|_| frame(A_PROT, HOST1, &inner)).collect();
            let mut v = [Verdict::Drop(DropReason::NoRoute); 4];
            a.process_burst(Ingress::Port(0), &mut pkts, &mut v, 1);
            v.to_vec()
        };
        // Numbers soft-2 .. soft+1: the run crosses the point once.
        assert_eq!(burst_from(&mut a, Some(soft - 2)), vec![Verdict::Port(1); 4]);
        assert_eq!(a.seq_limits, vec![(0, spi, false)], "esn={esn}");
        a.seq_limits.clear();
        assert_eq!(burst_from(&mut a, None), vec![Verdict::Port(1); 4]);
        assert!(a.seq_limits.is_empty(), "reported once");
        // Numbers last-1 .. last+2: two go out, the last number among them (reported once),
        // and two are past the end.
        let v = burst_from(&mut a, Some(last - 1));
        let exhausted = Verdict::Drop(DropReason::SeqExhausted);
        assert_eq!(v, vec![Verdict::Port(1), Verdict::Port(1), exhausted, exhausted], "esn={esn}");
        assert_eq!(a.seq_limits, vec![(0, spi, true)]);
        a.seq_limits.clear();
        assert_eq!(burst_from(&mut a, None), vec![exhausted; 4]);
        assert!(a.seq_limits.is_empty(), "reported once");
        assert_eq!(ca.drops(DropReason::SeqExhausted), 6);
    }
}

#[test]
fn an_inbound_sa_takes_new_selectors_between_bursts() {
    use dataplane::pipeline::{Retired, Update};
    use dataplane::policy::{PortRange, Selector};
    let (mut a, _) = pipeline("a", false, false, false);
    let (mut b, cb) = pipeline("b", false, false, false);
    let inner = ipv4_udp("10.1.0.10", "10.2.0.10", 64);
    // B's selectors are written as its outbound policy: local (10.2/24) as the source.
    let to = |remote: &str| Selector {
        src: "10.2.0.0/24".parse().unwrap(),
        dst: remote.parse().unwrap(),
        proto: None,
        sport: PortRange::ANY,
        dport: PortRange::ANY,
    };
    let retired = b.apply(Update::SetInboundSelectors { spi: 0x1001, selectors: vec![to("10.9.0.0/16")].into() });
    assert!(matches!(retired, Some(Retired::Selectors(old)) if old.len() == 2), "the configured two go back");
    expect_drop(&mut b, &cb, Ingress::Port(1), encrypt(&mut a, &inner), DropReason::InnerSelectorMismatch);
    b.apply(Update::SetInboundSelectors { spi: 0x1001, selectors: vec![to("10.1.0.0/24")].into() });
    assert_eq!(run(&mut b, Ingress::Port(1), encrypt(&mut a, &inner)).0, Verdict::Port(0));
    assert!(b.apply(Update::SetInboundSelectors { spi: 0x7777, selectors: vec![].into() }).is_none(), "no such SA");
}
