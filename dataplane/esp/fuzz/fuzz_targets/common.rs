//! Pieces both fuzz targets use: fixed SAs and header builders written independently of
//! `esp::wire` (so a bug there is not copied into the oracle).
#![allow(dead_code)]

use esp::aead::{GcmKeyLen, KeyMaterial};
use esp::sa::{SaConfig, UdpEncap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const SPI: u32 = 0x1234_5678;
pub const KEY: [u8; 32] = *b"fuzz-key-fuzz-key-fuzz-key-fuzz!";
pub const SALT: [u8; 4] = [0xca, 0xfe, 0xba, 0xbe];
pub const GW4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const PEER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);

/// One direction of an SA from the gateway's point of view (local = gateway).
pub fn config(esn: bool, udp: bool, v6: bool, aes256: bool) -> SaConfig {
    let (len, key) = if aes256 { (GcmKeyLen::Aes256, &KEY[..]) } else { (GcmKeyLen::Aes128, &KEY[..16]) };
    let (local, remote) = if v6 { (IpAddr::V6(GW6), IpAddr::V6(PEER6)) } else { (IpAddr::V4(GW4), IpAddr::V4(PEER4)) };
    SaConfig {
        spi: SPI,
        key: KeyMaterial::new(len, key, &SALT).expect("fixed key lengths are right"),
        local,
        remote,
        encap: udp.then_some(UdpEncap { sport: 4500, dport: 4500 }),
        esn,
        replay_window: 64,
        backend: Default::default(),
    }
}

/// RFC 1071 checksum of `data` (independent of esp::wire).
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
        sum += u64::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header for a packet of `total` bytes, with a valid checksum.
pub fn ipv4_header(tos: u8, df: bool, proto: u8, id: u16, src: Ipv4Addr, dst: Ipv4Addr, total: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = if df { 0x40 } else { 0 };
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = inet_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An IPv6 header for a packet with `payload` bytes after it.
pub fn ipv6_header(tc: u8, flow: u32, nh: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> [u8; 40] {
    let mut h = [0u8; 40];
    let first = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0xf_ffff);
    h[0..4].copy_from_slice(&first.to_be_bytes());
    h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    h[6] = nh;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

/// Outer IP (+ UDP 4500) headers, peer -> gateway, in front of an ESP part of `esp_len` bytes.
/// The UDP checksum is zero (RFC 3948 2.1 over IPv4; receivers here do not check it).
pub fn outer_headers(v6: bool, udp: bool, tos: u8, esp_len: usize) -> Vec<u8> {
    let udp_len = if udp { 8 } else { 0 };
    let proto = if udp { 17 } else { 50 };
    let mut out = if v6 {
        ipv6_header(tos, 0, proto, PEER6, GW6, udp_len + esp_len).to_vec()
    } else {
        ipv4_header(tos, false, proto, 1, PEER4, GW4, 20 + udp_len + esp_len).to_vec()
    };
    if udp {
        out.extend_from_slice(&4500u16.to_be_bytes());
        out.extend_from_slice(&4500u16.to_be_bytes());
        out.extend_from_slice(&((udp_len + esp_len) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out
}
