//! Checked views of the headers the ESP stages read and write: IPv4, IPv6, UDP and the ESP
//! header. Each view is created with `new_checked`, after which its accessors cannot go out of
//! bounds.

use crate::EspError;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const IPV4_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
pub const UDP_HDR_LEN: usize = 8;
/// SPI and sequence number (RFC 4303 section 2).
pub const ESP_HDR_LEN: usize = 8;

pub const PROTO_IPV4: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6's extension headers (RFC 8200 4, and the later ones of IANA's list): what follows
/// them, ports included, is not walked to. Hop-by-hop, Routing, Fragment, Authentication
/// Header, Destination Options, Mobility, HIP, Shim6, and the two for experiments.
const IPV6_EXTENSION_HEADERS: [u8; 10] = [0, 43, 44, 51, 60, 135, 139, 140, 253, 254];
/// "No next header": marks a dummy packet (RFC 4303 section 2.6).
pub const PROTO_NONE: u8 = 59;

/// UDP port for NAT traversal (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Adds `data` to a partial Internet checksum (RFC 1071), as 16-bit big-endian words; a
/// trailing odd byte is padded with zero. Partial sums can be chained, each chunk but the last
/// of even length. The result is not yet folded: see [`checksum_finish`].
#[inline]
pub fn checksum_add(sum: u32, data: &[u8]) -> u32 {
    // One's complement addition is associative and commutative, so 32-bit words can be
    // accumulated in 64 bits and folded once at the end (RFC 1071 section 2 (C)).
    let mut acc = u64::from(sum);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
    }
    if rest.len() % 2 == 1 {
        acc += u64::from(rest[rest.len() - 1]) << 8;
    }
    // Fold 64 -> 32 bits (twice covers every carry).
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = acc as u32;
    // Keep room for callers that add a few more words before finishing.
    (acc & 0xffff) + (acc >> 16)
}

/// Folds and complements a partial sum into an Internet checksum (RFC 1071).
#[inline]
pub fn checksum_finish(sum: u32) -> u16 {
    // Two folds bring any 32-bit sum into 16 bits (the first leaves at most 0x1_fffe), without
    // a loop to predict.
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Whether an option-less IPv4 header's checksum holds: its 16-bit words add up to 0xffff in
/// ones' complement (RFC 1071). That sum is the same in either byte order, byte-swapped, and
/// 0xffff swapped is 0xffff (RFC 1071 2(B)), so the words are added as they lie in memory:
/// five 32-bit loads without byte swaps, folded to 16 bits. Half the instructions of the
/// general sum, on a check every inbound ESP packet gets twice (outer and inner header).
#[inline]
fn header_sums_to_all_ones(h: &[u8; IPV4_HDR_LEN]) -> bool {
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let s = word(0) + word(4) + word(8) + word(12) + word(16); // below 2^35
    let s = (s & 0xffff_ffff) + (s >> 32); // below 2^32 + 8
    let s = (s & 0xffff) + (s >> 16); // at most 0x1_ffff
    let s = (s & 0xffff) + (s >> 16); // at most 0x1_0000, which would fold to 1
    s == 0xffff
}

/// A checked IPv4 header. Options are allowed; the total length must fit in the buffer.
pub struct Ipv4Packet<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, EspError> {
        let b = buf.as_ref();
        if b.len() < IPV4_HDR_LEN {
            return Err(EspError::Truncated);
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if b[0] >> 4 != 4 || ihl < IPV4_HDR_LEN {
            return Err(EspError::BadOuterHeader);
        }
        let total = usize::from(be16(b, 2));
        if total < ihl {
            return Err(EspError::BadOuterHeader);
        }
        if total > b.len() {
            return Err(EspError::Truncated);
        }
        Ok(Ipv4Packet(buf))
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.0.as_ref()[0] & 0x0f) * 4
    }
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.0.as_ref(), 2))
    }
    pub fn tos(&self) -> u8 {
        self.0.as_ref()[1]
    }
    pub fn ttl(&self) -> u8 {
        self.0.as_ref()[8]
    }
    pub fn protocol(&self) -> u8 {
        self.0.as_ref()[9]
    }
    pub fn dont_fragment(&self) -> bool {
        self.0.as_ref()[6] & 0x40 != 0
    }
    /// More-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        be16(self.0.as_ref(), 6) & 0x3fff != 0
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.0.as_ref(), 12))
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.0.as_ref(), 16))
    }
    pub fn checksum_ok(&self) -> bool {
        ipv4_checksum_ok(self.0.as_ref())
    }
    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.0.as_ref()[self.header_len()..self.total_len()]
    }
}

/// Whether the IPv4 header at the start of `pkt` has a right checksum (RFC 791 3.1, summed as
/// RFC 1071 says): the header its IHL gives, all of it in `pkt` (false if not, or if the IHL
/// is below 5), options included. For a header parsed already ([`flow_key_and_len`],
/// [`Ipv4Packet::new_checked`]), so nothing else of it is checked again.
#[inline]
pub fn ipv4_checksum_ok(pkt: &[u8]) -> bool {
    let ihl = pkt.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    match pkt.first_chunk::<IPV4_HDR_LEN>() {
        Some(h) if ihl == IPV4_HDR_LEN => header_sums_to_all_ones(h),
        _ => ihl > IPV4_HDR_LEN && pkt.get(..ihl).is_some_and(|h| checksum_finish(checksum_add(0, h)) == 0),
    }
}

/// A checked fixed IPv6 header; the payload length must fit in the buffer.
pub struct Ipv6Packet<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, EspError> {
        let b = buf.as_ref();
        if b.len() < IPV6_HDR_LEN {
            return Err(EspError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(EspError::BadOuterHeader);
        }
        if IPV6_HDR_LEN + usize::from(be16(b, 4)) > b.len() {
            return Err(EspError::Truncated);
        }
        Ok(Ipv6Packet(buf))
    }
    pub fn traffic_class(&self) -> u8 {
        let b = self.0.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.0.as_ref(), 4))
    }
    pub fn total_len(&self) -> usize {
        IPV6_HDR_LEN + self.payload_len()
    }
    pub fn next_header(&self) -> u8 {
        self.0.as_ref()[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.0.as_ref()[7]
    }
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.0.as_ref()[8..24]).unwrap_or_default())
    }
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.0.as_ref()[24..40]).unwrap_or_default())
    }
    pub fn payload(&self) -> &[u8] {
        &self.0.as_ref()[IPV6_HDR_LEN..self.total_len()]
    }
}

/// The parts of an IP packet that classification and policy lookup need: the 5-tuple.
/// Ports are 0 for protocols without them; for ICMP they carry type and code (RFC 4301 4.4.1.1
/// lets selectors match ICMP type/code in the port fields). `opaque`: the packet's protocol has
/// ports but the packet does not show them (a later fragment, an IPv6 fragment header, a first
/// fragment cut before them): RFC 4301 4.4.1.1's OPAQUE, which matches only selectors that
/// take any port (ports are then 0).
///
/// Addresses are numbers (IPv4 in the low 32 bits), which is what the SPD hashes and masks,
/// and every field is whole and aligned: a key of two `IpAddr`s (a tag byte, then the address
/// at an odd offset) is written byte by byte and read back in words, and those reads wait for
/// the stores to retire (store-forwarding stalls, several percent of a 64-byte packet's time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub src: u128,
    pub dst: u128,
    pub v6: bool,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub opaque: bool,
}

/// An address as a number, IPv4 in the low 32 bits.
#[inline]
pub fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[inline]
fn addr_from_bits(v6: bool, bits: u128) -> IpAddr {
    if v6 { IpAddr::V6(Ipv6Addr::from(bits)) } else { IpAddr::V4(Ipv4Addr::from(bits as u32)) }
}

impl FlowKey {
    /// The key of a flow between `src` and `dst` (of one family; `src`'s decides).
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Self {
        FlowKey { src: addr_bits(src), dst: addr_bits(dst), v6: src.is_ipv6(), proto, sport, dport, opaque: false }
    }

    #[inline]
    pub fn src_ip(&self) -> IpAddr {
        addr_from_bits(self.v6, self.src)
    }

    #[inline]
    pub fn dst_ip(&self) -> IpAddr {
        addr_from_bits(self.v6, self.dst)
    }
}

/// Reads the 5-tuple of an IPv4 or IPv6 packet. IPv6 extension headers are not walked: the
/// protocol is the first next-header value, which is what RFC 4301 selectors see for the common
/// case (an operator who needs extension headers matched selects on "any" protocol). Inlined so
/// that the key is built in registers (see [`FlowKey`]).
#[inline(always)]
pub fn flow_key(pkt: &[u8]) -> Result<FlowKey, EspError> {
    flow_key_and_len(pkt).map(|(k, _)| k)
}

/// [`flow_key`] and the packet's total length from its header (the buffer may hold more:
/// Ethernet padding), from one parse of the header.
#[inline(always)]
pub fn flow_key_and_len(pkt: &[u8]) -> Result<(FlowKey, usize), EspError> {
    let (src, dst, v6, proto, l4_at, total_len, first_fragment) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(pkt)?;
            let off = be16(pkt, 6) & 0x1fff;
            let (src, dst) = (u128::from(u32::from(p.src())), u128::from(u32::from(p.dst())));
            (src, dst, false, p.protocol(), p.header_len(), p.total_len(), off == 0)
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(pkt)?;
            let (src, dst) = (u128::from(p.src()), u128::from(p.dst()));
            (src, dst, true, p.next_header(), IPV6_HDR_LEN, p.total_len(), true)
        }
        Some(_) => return Err(EspError::BadOuterHeader),
        None => return Err(EspError::Truncated),
    };
    let l4 = &pkt[l4_at..total_len];
    let (sport, dport, opaque) = match proto {
        PROTO_TCP | PROTO_UDP | 132 if first_fragment && l4.len() >= 4 => (be16(l4, 0), be16(l4, 2), false),
        PROTO_ICMP | PROTO_ICMPV6 if first_fragment && l4.len() >= 2 => (u16::from(l4[0]), u16::from(l4[1]), false),
        PROTO_TCP | PROTO_UDP | 132 | PROTO_ICMP | PROTO_ICMPV6 => (0, 0, true),
        // IPv6 extension headers are not walked: the ports (if any) behind them are unseen.
        p if v6 && IPV6_EXTENSION_HEADERS.contains(&p) => (0, 0, true),
        _ => (0, 0, false),
    };
    Ok((FlowKey { src, dst, v6, proto, sport, dport, opaque }, total_len))
}

/// Where the ESP header starts in an outer packet, and what the outer headers say that
/// decapsulation needs: SPI, low sequence number bits, offset and length of the ESP part,
/// outer TOS, and whether it came in UDP (RFC 3948).
///
/// Two words, each written whole. A burst keeps one per packet between classifying and
/// opening it, and copies them with wide loads; a load that spans several narrower stores
/// still in flight cannot take its data from them and waits for them to complete (a
/// store-forwarding stall). The struct used to be 80 bytes built field by field (it carried the
/// outer addresses and UDP ports too, which nothing read), and copying it stalled on every
/// inbound packet: about 6% of the decapsulation stage's samples at 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspOuter {
    /// The ESP header's first 8 bytes, SPI then sequence number (RFC 4303 2), read as one
    /// big-endian number. A word, not bytes: an array of bytes may sit at any offset of the
    /// enums it travels in, and the compiler copies it with loads that straddle other fields.
    header: u64,
    /// Offset of the ESP header from the start of the outer IP header (bits 0-15), length of
    /// the ESP part from header to ICV (bits 16-31), the outer TOS byte (bits 32-39) and
    /// whether the ESP part came in UDP (bit 40).
    place: u64,
}

impl EspOuter {
    fn new(header: u64, esp_offset: u16, esp_len: u16, tos: u8, udp: bool) -> Self {
        let place = u64::from(esp_offset) | u64::from(esp_len) << 16 | u64::from(tos) << 32 | u64::from(udp) << 40;
        EspOuter { header, place }
    }

    #[inline]
    pub fn spi(&self) -> u32 {
        (self.header >> 32) as u32
    }

    /// The sequence number field: the low 32 bits of the sequence number (RFC 4303 2.2).
    #[inline]
    pub fn seq_low(&self) -> u32 {
        self.header as u32
    }

    /// Offset of the ESP header from the start of the outer IP header.
    #[inline]
    pub fn esp_offset(&self) -> usize {
        (self.place & 0xffff) as usize
    }

    /// Length of the ESP part, header to ICV.
    #[inline]
    pub fn esp_len(&self) -> usize {
        (self.place >> 16 & 0xffff) as usize
    }

    /// Outer DSCP/ECN byte, for ECN decapsulation (RFC 6040).
    #[inline]
    pub fn tos(&self) -> u8 {
        (self.place >> 32) as u8
    }

    /// Whether the ESP part came in UDP on the NAT-T port (RFC 3948).
    #[inline]
    pub fn udp_encapsulated(&self) -> bool {
        self.place >> 40 & 1 == 1
    }
}

/// What an IP packet addressed to the gateway is, as far as IPsec cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified {
    /// ESP, either plain (protocol 50) or in UDP on the NAT-T port.
    Esp(EspOuter),
    /// IKE on UDP 4500 (non-ESP marker), a NAT-T keepalive, or anything else: the host stack's.
    Other,
}

/// Classifies a packet addressed to the gateway (RFC 3948 section 2.2: on UDP 4500 a zero
/// SPI field is the non-ESP marker of IKE, a single 0xff byte a NAT keepalive).
pub fn classify(pkt: &[u8]) -> Result<Classified, EspError> {
    let (v6, proto, payload, tos) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(pkt)?;
            if !p.checksum_ok() {
                return Err(EspError::BadOuterHeader);
            }
            if p.is_fragment() && matches!(p.protocol(), PROTO_ESP | PROTO_UDP) {
                return Err(EspError::OuterFragment);
            }
            (false, p.protocol(), p.header_len(), p.tos())
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(pkt)?;
            (true, p.next_header(), IPV6_HDR_LEN, p.traffic_class())
        }
        Some(_) => return Err(EspError::BadOuterHeader),
        None => return Err(EspError::Truncated),
    };
    let end = if v6 { IPV6_HDR_LEN + usize::from(be16(pkt, 4)) } else { usize::from(be16(pkt, 2)) };
    let esp_offset = match proto {
        PROTO_ESP => payload,
        PROTO_UDP => {
            if end < payload + UDP_HDR_LEN {
                return Err(EspError::Truncated);
            }
            if be16(pkt, payload + 2) != NAT_T_PORT {
                return Ok(Classified::Other);
            }
            let body = payload + UDP_HDR_LEN;
            if end - body < ESP_HDR_LEN || be32(pkt, body) == 0 {
                // Keepalive (one 0xff byte) or non-ESP marker: IKE.
                return Ok(Classified::Other);
            }
            body
        }
        _ => return Ok(Classified::Other),
    };
    if end < esp_offset + ESP_HDR_LEN {
        return Err(EspError::Truncated);
    }
    // Both fit 16 bits: the ESP header starts within 48 bytes, and it ends where the outer
    // length field (16 bits, counted from the ESP header's start or before it) says.
    let (Ok(offset), Ok(len)) = (u16::try_from(esp_offset), u16::try_from(end - esp_offset)) else {
        return Err(EspError::BadOuterHeader);
    };
    let Some(&header) = pkt.get(esp_offset..esp_offset + ESP_HDR_LEN).and_then(|h| h.first_chunk()) else {
        return Err(EspError::Truncated);
    };
    Ok(Classified::Esp(EspOuter::new(u64::from_be_bytes(header), offset, len, tos, proto == PROTO_UDP)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071 style example: a real IPv4 header whose checksum is 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum_finish(checksum_add(0, &h)), 0xb861);
    }

    #[test]
    fn checksum_matches_a_plain_16_bit_sum() {
        let data: Vec<u8> = (0..3001u32).map(|i| (i * 7919 % 251) as u8).collect();
        for len in [0, 1, 2, 3, 5, 20, 21, 40, 1499, 3001] {
            let d = &data[..len];
            let mut plain: u64 = 0;
            for (i, b) in d.iter().enumerate() {
                plain += if i % 2 == 0 { u64::from(*b) << 8 } else { u64::from(*b) };
            }
            while plain >> 16 != 0 {
                plain = (plain & 0xffff) + (plain >> 16);
            }
            assert_eq!(checksum_finish(checksum_add(0, d)), !(plain as u16), "len {len}");
            // Chained over an even split.
            let split = len / 4 * 2;
            let chained = checksum_add(checksum_add(0, &d[..split]), &d[split..]);
            assert_eq!(checksum_finish(chained), !(plain as u16), "len {len} chained");
        }
    }

    /// The two folds of `checksum_finish` give what folding until nothing carries gives, at
    /// the edges of the 32-bit range as well.
    #[test]
    fn checksum_finish_folds_any_sum() {
        let looped = |mut s: u32| {
            while s >> 16 != 0 {
                s = (s & 0xffff) + (s >> 16);
            }
            !(s as u16)
        };
        let mut x = 0x2545_f491u32;
        let edges = [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0x1_ffff, 0xffff_0000, 0xfffe_ffff, u32::MAX];
        for s in edges.into_iter().chain((0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })) {
            assert_eq!(checksum_finish(s), looped(s), "{s:#x}");
        }
    }

    /// The option-less fast path agrees with the general sum on random headers, with their
    /// checksum right and wrong, and on the sums that fold to the edges.
    #[test]
    fn header_fast_path_agrees_with_the_general_sum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases: Vec<[u8; 20]> = vec![[0; 20], [0xff; 20]];
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            for c in h.chunks_mut(8) {
                let r = next().to_le_bytes();
                c.copy_from_slice(&r[..c.len()]);
            }
            cases.push(h);
            // The same header with its checksum set right.
            h[10..12].fill(0);
            let c = checksum_finish(checksum_add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            cases.push(h);
        }
        for h in cases {
            assert_eq!(header_sums_to_all_ones(&h), checksum_finish(checksum_add(0, &h)) == 0, "{h:02x?}");
        }
    }

    /// Headers with and without options: a correct checksum passes, and any one byte changed
    /// fails.
    #[test]
    fn header_checksum_with_and_without_options() {
        for ihl in [5u8, 6, 15] {
            let len = usize::from(ihl) * 4;
            let mut h: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            h[0] = 0x40 | ihl;
            h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            h[10..12].fill(0);
            let c = checksum_finish(checksum_add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(Ipv4Packet::new_checked(&h[..]).unwrap().checksum_ok(), "ihl {ihl}");
            assert!(ipv4_checksum_ok(&h), "ihl {ihl}");
            // Cut inside the header: not the whole header, so not right.
            assert!(!ipv4_checksum_ok(&h[..len - 1]), "ihl {ihl}");
            // An IHL below 5 is no header, whatever the bytes sum to.
            let mut short = h.clone();
            short[0] = 0x44;
            short[10..12].fill(0);
            let c = checksum_finish(checksum_add(0, &short[..16]));
            short[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(!ipv4_checksum_ok(&short), "ihl 4");
            for i in 1..len {
                let mut bad = h.clone();
                bad[i] ^= 0x01;
                assert!(!ipv4_checksum_ok(&bad), "ihl {ihl} byte {i}");
                if let Ok(p) = Ipv4Packet::new_checked(&bad[..]) {
                    assert!(!p.checksum_ok(), "ihl {ihl} byte {i}");
                }
            }
        }
    }

    #[test]
    fn views_reject_short_and_inconsistent_headers() {
        assert!(!ipv4_checksum_ok(&[]));
        assert_eq!(Ipv4Packet::new_checked(&[0x45u8; 10][..]).err(), Some(EspError::Truncated));
        let mut h = [0u8; 20];
        h[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&h[..]).err(), Some(EspError::BadOuterHeader));
        h[0] = 0x45;
        h[3] = 40;
        assert_eq!(Ipv4Packet::new_checked(&h[..]).err(), Some(EspError::Truncated));
        assert_eq!(Ipv6Packet::new_checked(&[0x60u8; 39][..]).err(), Some(EspError::Truncated));
        assert!(classify(&[]).is_err());
        assert!(flow_key(&[0x10]).is_err());
    }

    #[test]
    fn classify_reads_every_field_back() {
        // IPv4, TOS 0xb9, plain ESP: SPI 0x01020304, sequence number 0xfffffffe.
        let mut v4 = vec![0u8; 60];
        v4[..4].copy_from_slice(&[0x45, 0xb9, 0, 60]);
        v4[9] = PROTO_ESP;
        let c = checksum_finish(checksum_add(0, &v4[..20]));
        v4[10..12].copy_from_slice(&c.to_be_bytes());
        v4[20..28].copy_from_slice(&[1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe]);
        let Ok(Classified::Esp(o)) = classify(&v4) else { panic!("not ESP") };
        assert_eq!((o.spi(), o.seq_low(), o.esp_offset(), o.esp_len()), (0x0102_0304, 0xffff_fffe, 20, 40));
        assert_eq!((o.tos(), o.udp_encapsulated()), (0xb9, false));
        // IPv6 in UDP 4500 at the largest length the payload length field allows: every
        // field at the top of its range, none spilling into the next.
        let mut v6 = vec![0u8; 40 + 65535];
        v6[..2].copy_from_slice(&[0x6f, 0xf0]);
        v6[4..6].copy_from_slice(&[0xff, 0xff]);
        v6[6] = PROTO_UDP;
        v6[40..44].copy_from_slice(&[0x11, 0x94, 0x11, 0x94]);
        v6[48..56].copy_from_slice(&[0xff; 8]);
        let Ok(Classified::Esp(o)) = classify(&v6) else { panic!("not ESP") };
        assert_eq!((o.spi(), o.seq_low(), o.esp_offset(), o.esp_len()), (u32::MAX, u32::MAX, 48, 65535 - 8));
        assert_eq!((o.tos(), o.udp_encapsulated()), (0xff, true));
    }

    #[test]
    fn flow_keys_of_both_families() {
        // UDP 10.1.0.5:4000 -> 10.2.0.9:53, a minimal IPv4 header (checksum not needed here).
        let mut v4 = [0u8; 28];
        v4[..4].copy_from_slice(&[0x45, 0, 0, 28]);
        v4[9] = PROTO_UDP;
        v4[12..20].copy_from_slice(&[10, 1, 0, 5, 10, 2, 0, 9]);
        v4[20..24].copy_from_slice(&[0x0f, 0xa0, 0, 53]);
        let k = flow_key(&v4).unwrap();
        assert_eq!(k, FlowKey::new("10.1.0.5".parse().unwrap(), "10.2.0.9".parse().unwrap(), PROTO_UDP, 4000, 53));
        assert_eq!((k.src_ip().to_string(), k.dst_ip().to_string()), ("10.1.0.5".into(), "10.2.0.9".into()));
        assert_eq!((k.src, k.v6), (0x0a01_0005, false));
        // A later fragment has no ports: OPAQUE (RFC 4301 4.4.1.1).
        v4[6] = 0x01;
        let later = flow_key(&v4).unwrap();
        assert_eq!((later.sport, later.dport, later.opaque), (0, 0, true));
        // A first fragment (more-fragments set, offset 0) shows them.
        (v4[6], v4[7]) = (0x20, 0);
        assert!(!flow_key(&v4).unwrap().opaque);
        // A protocol without ports is not opaque, fragment or not.
        (v4[6], v4[9]) = (0x01, 47);
        assert!(!flow_key(&v4).unwrap().opaque);
        // ICMPv6 echo request 2001:db8::1 -> 2001:db8::2: type and code in the port fields.
        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        v6[6] = PROTO_ICMPV6;
        v6[8..10].copy_from_slice(&[0x20, 0x01]);
        v6[10..12].copy_from_slice(&[0x0d, 0xb8]);
        v6[23] = 1;
        v6.copy_within(8..24, 24);
        v6[39] = 2;
        v6[40] = 128;
        let k = flow_key(&v6).unwrap();
        assert_eq!((k.src_ip().to_string(), k.dst_ip().to_string()), ("2001:db8::1".into(), "2001:db8::2".into()));
        assert_eq!((k.v6, k.proto, k.sport, k.dport), (true, PROTO_ICMPV6, 128, 0));
        assert!(!k.opaque);
        // Behind an extension header (hop-by-hop, routing, fragment, destination options)
        // the ports are not seen: OPAQUE. In IPv4, protocol 0 or 43 is just a protocol.
        for ext in [0, 43, 44, 60] {
            v6[6] = ext;
            assert!(flow_key(&v6).unwrap().opaque, "next header {ext}");
        }
        v4[9] = 43;
        assert!(!flow_key(&v4).unwrap().opaque);
    }
}
