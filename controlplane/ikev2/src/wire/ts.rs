//! The body of the Traffic Selector payloads TSi and TSr (RFC 7296 section 3.13).
//!
//! ```text
//! Payload:  Number of TSs | RESERVED (3) | Traffic Selectors
//! Selector: TS Type | IP Protocol ID | Selector Length (2) | Start Port (2) | End Port (2)
//!           Starting Address | Ending Address      (4 + 4 bytes for type 7, 16 + 16 for type 8)
//! ```

use super::{Reader, WireError, patch_len16};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TS_IPV4_ADDR_RANGE: u8 = 7;
pub const TS_IPV6_ADDR_RANGE: u8 = 8;

const V4_LEN: usize = 16;
const V6_LEN: usize = 40;

/// One address range selector. `ip_protocol` 0 means any protocol; ports 0..=65535 any port,
/// and start 65535 with end 0 "OPAQUE" (RFC 7296 section 3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange<A> {
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: A,
    pub end: A,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE (7).
    Ipv4(AddrRange<Ipv4Addr>),
    /// TS_IPV6_ADDR_RANGE (8).
    Ipv6(AddrRange<Ipv6Addr>),
    /// Any other type (TS_FC_ADDR_RANGE, TS_SECLABEL, ...), kept opaque: `data` is what follows
    /// the Selector Length field. The second octet is read as reserved and sent as zero.
    Other { ts_type: u8, data: Vec<u8> },
}

impl TrafficSelector {
    pub fn ts_type(&self) -> u8 {
        match self {
            TrafficSelector::Ipv4(_) => TS_IPV4_ADDR_RANGE,
            TrafficSelector::Ipv6(_) => TS_IPV6_ADDR_RANGE,
            TrafficSelector::Other { ts_type, .. } => *ts_type,
        }
    }

    /// (IP protocol, start port, end port, start address, end address) of an address range.
    pub fn range(&self) -> Option<(u8, u16, u16, IpAddr, IpAddr)> {
        match self {
            TrafficSelector::Ipv4(r) => Some((r.ip_protocol, r.start_port, r.end_port, r.start.into(), r.end.into())),
            TrafficSelector::Ipv6(r) => Some((r.ip_protocol, r.start_port, r.end_port, r.start.into(), r.end.into())),
            TrafficSelector::Other { .. } => None,
        }
    }

    /// All ports and protocols of an IPv4 range.
    pub fn ipv4(start: Ipv4Addr, end: Ipv4Addr) -> Self {
        TrafficSelector::Ipv4(AddrRange { ip_protocol: 0, start_port: 0, end_port: 65535, start, end })
    }

    /// All ports and protocols of an IPv6 range.
    pub fn ipv6(start: Ipv6Addr, end: Ipv6Addr) -> Self {
        TrafficSelector::Ipv6(AddrRange { ip_protocol: 0, start_port: 0, end_port: 65535, start, end })
    }
}

pub(crate) fn parse(body: &[u8]) -> Result<Vec<TrafficSelector>, &'static str> {
    let mut r = Reader::new(body);
    let count = r.u8().ok_or("TS payload header truncated")?;
    r.take(3).ok_or("TS payload header truncated")?;
    let mut out = Vec::new();
    for _ in 0..count {
        let ts_type = r.u8().ok_or("traffic selector truncated")?;
        let second = r.u8().ok_or("traffic selector truncated")?;
        let len = usize::from(r.u16().ok_or("traffic selector truncated")?);
        let rest = len.checked_sub(4).ok_or("Selector Length shorter than its header")?;
        let mut s = Reader::new(r.take(rest).ok_or("Selector Length runs past the payload")?);
        let ts = match ts_type {
            TS_IPV4_ADDR_RANGE | TS_IPV6_ADDR_RANGE => {
                // RFC 7296 section 3.13.1: 16 octets for IPv4, 40 for IPv6.
                let want = if ts_type == TS_IPV4_ADDR_RANGE { V4_LEN } else { V6_LEN };
                if len != want {
                    return Err("Selector Length does not match the address family");
                }
                let (start_port, end_port) = (s.u16().unwrap_or(0), s.u16().unwrap_or(0));
                if ts_type == TS_IPV4_ADDR_RANGE {
                    let start = Ipv4Addr::from(s.u32().unwrap_or(0));
                    let end = Ipv4Addr::from(s.u32().unwrap_or(0));
                    TrafficSelector::Ipv4(AddrRange { ip_protocol: second, start_port, end_port, start, end })
                } else {
                    let start = ipv6(s.take(16));
                    let end = ipv6(s.take(16));
                    TrafficSelector::Ipv6(AddrRange { ip_protocol: second, start_port, end_port, start, end })
                }
            }
            _ => TrafficSelector::Other { ts_type, data: s.rest().to_vec() },
        };
        out.push(ts);
    }
    if !r.is_empty() {
        return Err("bytes after the last traffic selector");
    }
    Ok(out)
}

fn ipv6(b: Option<&[u8]>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(b) = b {
        a.copy_from_slice(b);
    }
    Ipv6Addr::from(a)
}

pub(crate) fn emit(selectors: &[TrafficSelector], out: &mut Vec<u8>) -> Result<(), WireError> {
    let count = u8::try_from(selectors.len())
        .map_err(|_| WireError::Unencodable { what: "more than 255 traffic selectors in a payload" })?;
    out.extend_from_slice(&[count, 0, 0, 0]);
    for ts in selectors {
        let start = out.len();
        match ts {
            TrafficSelector::Ipv4(r) => {
                out.extend_from_slice(&[TS_IPV4_ADDR_RANGE, r.ip_protocol, 0, 0]);
                out.extend_from_slice(&r.start_port.to_be_bytes());
                out.extend_from_slice(&r.end_port.to_be_bytes());
                out.extend_from_slice(&r.start.octets());
                out.extend_from_slice(&r.end.octets());
            }
            TrafficSelector::Ipv6(r) => {
                out.extend_from_slice(&[TS_IPV6_ADDR_RANGE, r.ip_protocol, 0, 0]);
                out.extend_from_slice(&r.start_port.to_be_bytes());
                out.extend_from_slice(&r.end_port.to_be_bytes());
                out.extend_from_slice(&r.start.octets());
                out.extend_from_slice(&r.end.octets());
            }
            TrafficSelector::Other { ts_type, data } => {
                if matches!(*ts_type, TS_IPV4_ADDR_RANGE | TS_IPV6_ADDR_RANGE) {
                    return Err(WireError::Unencodable { what: "an opaque traffic selector of an address range type" });
                }
                out.extend_from_slice(&[*ts_type, 0, 0, 0]);
                out.extend_from_slice(data);
            }
        }
        let n = out.len() - start;
        patch_len16(out, start + 2, n, "traffic selector over 65535 bytes")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// TSr of strongSwan's IKE_AUTH request, scenario cert (tests/vectors/cert_05.inner):
    /// 10.2.0.0/24[udp/53] and fd00:2::/64.
    const TSR: &str = concat!(
        "02000000",
        "07110010003500350a0200000a0200ff",
        "080000280000ffff",
        "fd000002000000000000000000000000",
        "fd00000200000000ffffffffffffffff",
    );

    #[test]
    fn strongswan_selectors() {
        let b = hex(TSR);
        let ts = parse(&b).unwrap();
        assert_eq!(
            ts[0],
            TrafficSelector::Ipv4(AddrRange {
                ip_protocol: 17,
                start_port: 53,
                end_port: 53,
                start: Ipv4Addr::new(10, 2, 0, 0),
                end: Ipv4Addr::new(10, 2, 0, 255),
            })
        );
        assert_eq!(
            ts[1],
            TrafficSelector::ipv6("fd00:2::".parse().unwrap(), "fd00:2::ffff:ffff:ffff:ffff".parse().unwrap())
        );
        let mut out = Vec::new();
        emit(&ts, &mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn lengths_and_other_types() {
        let mut b = hex(TSR);
        b[7] = 0x11; // IPv4 selector claims 17 bytes
        assert!(parse(&b).is_err());
        let mut b = hex(TSR);
        b[0] = 3; // one selector too many
        assert_eq!(parse(&b), Err("traffic selector truncated"));
        let mut b = hex(TSR);
        b[0] = 1;
        assert_eq!(parse(&b), Err("bytes after the last traffic selector"));
        // An unknown type (TS_SECLABEL, RFC 9478) is carried through.
        let other = hex("010000000a000007616263");
        let ts = parse(&other).unwrap();
        assert_eq!(ts, vec![TrafficSelector::Other { ts_type: 10, data: b"abc".to_vec() }]);
        let mut out = Vec::new();
        emit(&ts, &mut out).unwrap();
        assert_eq!(out, other);
    }
}
