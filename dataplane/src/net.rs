//! Link-layer and addressing pieces the gateway needs around ESP: Ethernet framing, ARP
//! (RFC 826), IPv6 neighbour discovery (RFC 4861) messages, IP prefixes, TTL handling.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;
use esp::buf::PacketBuf;
use esp::wire::{PROTO_ICMP, PROTO_ICMPV6, addr_bits, checksum_add, checksum_finish};

pub const ETH_HDR_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const BROADCAST: Mac = Mac([0xff; 6]);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl FromStr for Mac {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or("a MAC address has six colon-separated hex bytes")?;
            *b = u8::from_str_radix(p, 16).map_err(|_| "a MAC address has six colon-separated hex bytes")?;
        }
        if parts.next().is_some() {
            return Err("a MAC address has six colon-separated hex bytes");
        }
        Ok(Mac(out))
    }
}

/// An IP prefix such as `10.1.0.0/24` or `2001:db8::/64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, &'static str> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err("prefix length too long for the address family");
        }
        Ok(Prefix { addr, len })
    }

    /// The prefix that matches everything of one family.
    pub fn any(v6: bool) -> Self {
        if v6 {
            Prefix { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), len: 0 }
        } else {
            Prefix { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), len: 0 }
        }
    }

    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_bits(ip.is_ipv6(), addr_bits(ip))
    }

    /// [`Self::contains`] for an address as a number (IPv4 in the low 32 bits), as
    /// [`esp::wire::FlowKey`] holds it.
    #[inline]
    pub fn contains_bits(&self, v6: bool, addr: u128) -> bool {
        let width = if v6 { 128 } else { 32 };
        // Equal in the prefix's bits: nothing left of the difference once the host bits are
        // shifted out (a shift by the whole width, for /0, leaves nothing).
        self.addr.is_ipv6() == v6
            && (addr_bits(self.addr) ^ addr).checked_shr(width - u32::from(self.len)).unwrap_or(0) == 0
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Prefix {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len)) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len)) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Prefix { addr, len: self.len }
    }
}

impl FromStr for Prefix {
    type Err = &'static str;
    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| "not an IP address or prefix (like 10.0.0.0/24)")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l.trim().parse::<u8>().map_err(|_| "prefix length is not a number")?,
            None => max,
        };
        Prefix::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[inline]
pub fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

#[inline]
pub fn dst_mac(frame: &[u8]) -> Mac {
    Mac([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]])
}

#[inline]
pub fn src_mac(frame: &[u8]) -> Mac {
    Mac([frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]])
}

#[inline]
pub fn write_eth(frame: &mut [u8], dst: Mac, src: Mac, ethertype: u16) {
    frame[..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// What an ARP packet tells about its sender (RFC 826: every receiver may learn the sender's
/// mapping). `None` unless it is Ethernet/IPv4 ARP.
pub fn arp_sender(payload: &[u8]) -> Option<(Ipv4Addr, Mac, Ipv4Addr)> {
    if payload.len() < 28 || payload[0..2] != [0, 1] || payload[2..4] != [8, 0] || payload[4] != 6 || payload[5] != 4 {
        return None;
    }
    let mac = Mac(payload[8..14].try_into().ok()?);
    let spa = Ipv4Addr::new(payload[14], payload[15], payload[16], payload[17]);
    let tpa = Ipv4Addr::new(payload[24], payload[25], payload[26], payload[27]);
    Some((spa, mac, tpa))
}

/// An ARP request frame (60 bytes, padded to the Ethernet minimum).
pub fn arp_request(src_mac: Mac, src_ip: Ipv4Addr, target: Ipv4Addr, out: &mut [u8; 60]) {
    *out = [0; 60];
    write_eth(out, BROADCAST, src_mac, ETHERTYPE_ARP);
    let a = &mut out[ETH_HDR_LEN..];
    a[0..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    a[8..14].copy_from_slice(&src_mac.0);
    a[14..18].copy_from_slice(&src_ip.octets());
    a[24..28].copy_from_slice(&target.octets());
}

/// The solicited-node multicast address of `ip` (RFC 4291 2.7.1) and its MAC (RFC 2464 7).
fn solicited_node(ip: Ipv6Addr) -> (Ipv6Addr, Mac) {
    let o = ip.octets();
    let a = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]));
    let m = Mac([0x33, 0x33, 0xff, o[13], o[14], o[15]]);
    (a, m)
}

/// A neighbour solicitation for `target` (RFC 4861 4.3) with the source link-layer option.
/// Returns the frame length written to `out`.
pub fn neighbor_solicitation(src_mac: Mac, src_ip: Ipv6Addr, target: Ipv6Addr, out: &mut [u8; 86]) -> usize {
    let (dst, dmac) = solicited_node(target);
    *out = [0; 86];
    write_eth(out, dmac, src_mac, ETHERTYPE_IPV6);
    let ip = &mut out[ETH_HDR_LEN..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = PROTO_ICMPV6;
    ip[7] = 255; // RFC 4861 7.1.1: hop limit 255
    ip[8..24].copy_from_slice(&src_ip.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut ip[40..72];
    icmp[0] = 135;
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = 1; // source link-layer address option, length 1 (8 bytes)
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&src_mac.0);
    let mut sum = checksum_add(0, &ip[8..40]);
    sum = sum.wrapping_add(32 + u32::from(PROTO_ICMPV6));
    sum = checksum_add(sum, &ip[40..72]);
    let c = checksum_finish(sum);
    ip[42..44].copy_from_slice(&c.to_be_bytes());
    ETH_HDR_LEN + 72
}

/// What a neighbour advertisement or solicitation (RFC 4861 4.3, 4.4) says about a link-layer
/// address: (ip, mac). For an advertisement the target; for a solicitation the source.
pub fn ndp_learn(ip6: &[u8]) -> Option<(Ipv6Addr, Mac)> {
    if ip6.len() < 40 + 24 || ip6[6] != PROTO_ICMPV6 || ip6[7] != 255 {
        return None;
    }
    let icmp = &ip6[40..];
    let (addr, want_opt) = match icmp[0] {
        135 => (Ipv6Addr::from(<[u8; 16]>::try_from(&ip6[8..24]).ok()?), 1),
        136 => (Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?), 2),
        _ => return None,
    };
    if addr.is_unspecified() {
        return None;
    }
    let mut opts = &icmp[24..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == want_opt && len >= 8 {
            return Some((addr, Mac(opts[2..8].try_into().ok()?)));
        }
        opts = &opts[len..];
    }
    None
}

/// Turns the IP packet in `pkt` into an ICMP "fragmentation needed" (RFC 792, RFC 1191) or
/// ICMPv6 "packet too big" (RFC 4443 3.2) error from `src` to `dst` quoting it, in place.
/// False (packet unchanged or unusable) if there is no room.
pub fn icmp_too_big<B: PacketBuf>(pkt: &mut B, src: IpAddr, dst: IpAddr, mtu: u32) -> bool {
    let v4 = src.is_ipv4();
    // As much of the original as fits in the minimum MTU (RFC 1812 4.3.2.3, RFC 4443 2.4(c)).
    let (hdr, max_total) = if v4 { (20 + 8, 576) } else { (40 + 8, 1280) };
    let quote = pkt.len().min(max_total - hdr);
    if !pkt.trim(pkt.len() - quote) {
        return false;
    }
    let Some(p) = pkt.prepend(hdr) else { return false };
    let total = p.len();
    p[..hdr].fill(0);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[8] = 64;
            p[9] = PROTO_ICMP;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = checksum_finish(checksum_add(0, &p[..20]));
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p[20] = 3; // destination unreachable
            p[21] = 4; // fragmentation needed and DF set
            p[26..28].copy_from_slice(&(mtu.min(0xffff) as u16).to_be_bytes());
            let c = checksum_finish(checksum_add(0, &p[20..]));
            p[22..24].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = (total - 40) as u16;
            p[0] = 0x60;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
            p[6] = PROTO_ICMPV6;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p[40] = 2; // packet too big
            p[44..48].copy_from_slice(&mtu.to_be_bytes());
            let mut sum = checksum_add(0, &p[8..40]);
            sum = sum.wrapping_add(u32::from(plen)).wrapping_add(u32::from(PROTO_ICMPV6));
            let c = checksum_finish(checksum_add(sum, &p[40..]));
            p[42..44].copy_from_slice(&c.to_be_bytes());
        }
        _ => return false,
    }
    true
}

/// Decrements the TTL or hop limit of a forwarded packet (RFC 1812 5.3.1, RFC 8200 3).
/// False if it would reach zero: the packet must not be forwarded.
#[inline]
pub fn decrement_ttl(ip: &mut [u8]) -> bool {
    match ip[0] >> 4 {
        4 => {
            if ip[8] <= 1 {
                return false;
            }
            ip[8] -= 1;
            // RFC 1624 incremental update: the TTL is the high byte of its 16-bit word.
            let sum = u32::from(u16::from_be_bytes([ip[10], ip[11]])) + 0x0100;
            let sum = (sum & 0xffff) + (sum >> 16);
            ip[10..12].copy_from_slice(&(sum as u16).to_be_bytes());
            true
        }
        _ => {
            if ip[7] <= 1 {
                return false;
            }
            ip[7] -= 1;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esp::wire::Ipv4Packet;

    #[test]
    fn prefixes_parse_and_match() {
        let p: Prefix = "10.1.0.0/24".parse().unwrap();
        assert!(p.contains("10.1.0.77".parse().unwrap()));
        assert!(!p.contains("10.1.1.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let any: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("1.2.3.4".parse().unwrap()));
        let v6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert_eq!("10.0.0.1".parse::<Prefix>().unwrap().len, 32);
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("banana/3".parse::<Prefix>().is_err());
        assert_eq!("10.1.2.3/16".parse::<Prefix>().unwrap().network().to_string(), "10.1.0.0/16");
    }

    /// `contains` against its definition, bit by bit on the addresses' bytes: every length of
    /// both families, addresses that differ from the prefix in one bit or not at all, and the
    /// other family never.
    #[test]
    fn prefix_contains_is_a_bitwise_prefix_match() {
        let bit = |b: &[u8], i: usize| b[i / 8] >> (7 - i % 8) & 1;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for v6 in [false, true] {
            let width = if v6 { 128 } else { 32 };
            for len in 0..=width {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let base: Vec<u8> = (0..width / 8).map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8).collect();
                let ip = |b: &[u8]| match b.len() {
                    4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap())),
                    _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap())),
                };
                let p = Prefix::new(ip(&base), len as u8).unwrap();
                for flip in std::iter::once(None).chain((0..width).map(Some)) {
                    let mut a = base.clone();
                    if let Some(f) = flip {
                        a[f / 8] ^= 0x80 >> (f % 8);
                    }
                    let want = (0..len).all(|i| bit(&a, i) == bit(&base, i));
                    assert_eq!(p.contains(ip(&a)), want, "{p} {}", ip(&a));
                    let other = if v6 { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
                    assert!(!p.contains(other));
                }
            }
        }
    }

    #[test]
    fn macs_parse() {
        assert_eq!("02:00:00:00:00:0a".parse::<Mac>().unwrap().0, [2, 0, 0, 0, 0, 10]);
        assert!("02:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:00:01".parse::<Mac>().is_err());
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        let mut h = [
            0x45, 0x00, 0x00, 0x14, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
            0x00, 0x02,
        ];
        let c = checksum_finish(checksum_add(0, &h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        for _ in 0..63 {
            assert!(decrement_ttl(&mut h));
            assert!(Ipv4Packet::new_checked(&h[..]).unwrap().checksum_ok());
        }
        assert_eq!(h[8], 1);
        assert!(!decrement_ttl(&mut h));
    }

    #[test]
    fn arp_and_ndp_round_trip() {
        let mut f = [0u8; 60];
        let me = Mac([2, 0, 0, 0, 0, 1]);
        arp_request(me, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), &mut f);
        assert_eq!(ethertype(&f), ETHERTYPE_ARP);
        assert_eq!(arp_sender(&f[14..]), Some((Ipv4Addr::new(10, 0, 0, 1), me, Ipv4Addr::new(10, 0, 0, 2))));
        let mut n = [0u8; 86];
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let len = neighbor_solicitation(me, src, "2001:db8::2".parse().unwrap(), &mut n);
        assert_eq!(len, 86);
        assert_eq!(ndp_learn(&n[14..]), Some((src, me)));
        // The ICMPv6 checksum over the pseudo-header verifies.
        let ip = &n[14..];
        let mut sum = checksum_add(0, &ip[8..40]);
        sum = sum.wrapping_add(32 + 58);
        assert_eq!(checksum_finish(checksum_add(sum, &ip[40..72])), 0);
    }
}
