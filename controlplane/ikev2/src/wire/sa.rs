//! The body of the Security Association payload (RFC 7296 section 3.3): proposals, their
//! transforms and the transforms' attributes.
//!
//! ```text
//! Proposal:  Last Substruc (0 last, 2 more) | RESERVED | Proposal Length (2)
//!            Proposal Num | Protocol ID | SPI Size | Num Transforms | SPI | Transforms
//! Transform: Last Substruc (0 last, 3 more) | RESERVED | Transform Length (2)
//!            Transform Type | RESERVED | Transform ID (2) | Attributes
//! Attribute: A(1 bit) Type(15) | Length or Value (2) | [Value]   (A = 1: TV, 4 bytes)
//! ```

use super::{ProtocolId, Reader, TransformType, WireError, patch_len16};

/// The only transform attribute RFC 7296 defines (section 3.3.5), always in TV format.
pub const KEY_LENGTH_ATTRIBUTE: u16 = 14;

const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const AF_TV: u16 = 0x8000;

/// The SPI of a proposal (RFC 7296 section 3.3.1): none in IKE_SA_INIT, 4 octets for AH and
/// ESP, 8 for an IKE SA rekeyed by CREATE_CHILD_SA. Other sizes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spi {
    Empty,
    Four(u32),
    Eight(u64),
}

impl Spi {
    pub fn size(self) -> u8 {
        match self {
            Spi::Empty => 0,
            Spi::Four(_) => 4,
            Spi::Eight(_) => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// 1 for the first proposal of a request, +1 for each next; a response echoes the number of
    /// the proposal it accepts. Not checked here.
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: Spi,
    pub transforms: Vec<Transform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    pub transform_type: TransformType,
    /// Meaning depends on the type: see [`super::encr`], [`super::prf`], [`super::integ`],
    /// [`super::dh`], [`super::esn`].
    pub id: u16,
    /// In wire order. A Key Length is TV and at most once; other attributes are kept so that
    /// proposal selection can refuse what it does not know (RFC 7296 section 3.3.6).
    pub attributes: Vec<Attribute>,
}

/// A transform attribute (RFC 7296 section 3.3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Type/Value format (AF = 1), such as Key Length.
    Tv { attr_type: u16, value: u16 },
    /// Type/Length/Value format (AF = 0).
    Tlv { attr_type: u16, value: Vec<u8> },
}

impl Transform {
    pub fn new(transform_type: TransformType, id: u16) -> Self {
        Transform { transform_type, id, attributes: Vec::new() }
    }

    /// Adds a Key Length attribute, in bits.
    pub fn with_key_length(mut self, bits: u16) -> Self {
        self.attributes.push(Attribute::Tv { attr_type: KEY_LENGTH_ATTRIBUTE, value: bits });
        self
    }

    /// The Key Length attribute, in bits.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv { attr_type: KEY_LENGTH_ATTRIBUTE, value } => Some(*value),
            _ => None,
        })
    }

    /// Whether the transform has attributes other than Key Length, which a responder that does
    /// not know them must treat as unacceptable (RFC 7296 section 3.3.6).
    pub fn has_unknown_attributes(&self) -> bool {
        self.attributes.iter().any(|a| !matches!(a, Attribute::Tv { attr_type: KEY_LENGTH_ATTRIBUTE, .. }))
    }
}

impl Proposal {
    /// The transforms of one type, in order.
    pub fn transforms_of(&self, t: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms.iter().filter(move |x| x.transform_type == t)
    }
}

pub(crate) fn parse(body: &[u8]) -> Result<Vec<Proposal>, &'static str> {
    let mut r = Reader::new(body);
    let mut proposals = Vec::new();
    loop {
        let last = r.u8().ok_or("proposal header truncated")?;
        let _reserved = r.u8().ok_or("proposal header truncated")?;
        let len = usize::from(r.u16().ok_or("proposal header truncated")?);
        if last != LAST && last != MORE_PROPOSALS {
            return Err("proposal Last Substruc is neither 0 nor 2");
        }
        let rest = len.checked_sub(4).ok_or("proposal length shorter than its header")?;
        let mut p = Reader::new(r.take(rest).ok_or("proposal length runs past the SA payload")?);
        proposals.push(parse_proposal(&mut p)?);
        if last == LAST {
            break;
        }
        if r.is_empty() {
            return Err("proposal says more follow but the SA payload ends");
        }
    }
    if !r.is_empty() {
        return Err("bytes after the last proposal");
    }
    Ok(proposals)
}

fn parse_proposal(p: &mut Reader<'_>) -> Result<Proposal, &'static str> {
    let number = p.u8().ok_or("proposal header truncated")?;
    let protocol = ProtocolId(p.u8().ok_or("proposal header truncated")?);
    let spi_size = p.u8().ok_or("proposal header truncated")?;
    let count = p.u8().ok_or("proposal header truncated")?;
    // RFC 7296 section 3.3.1: zero for IKE_SA_INIT, 4 for AH/ESP, 8 when rekeying an IKE SA.
    let spi = match spi_size {
        0 => Spi::Empty,
        4 => Spi::Four(p.u32().ok_or("proposal SPI truncated")?),
        8 => Spi::Eight(p.u64().ok_or("proposal SPI truncated")?),
        _ => return Err("proposal SPI size is not 0, 4 or 8"),
    };
    let mut transforms = Vec::new();
    for i in 0..count {
        let last = p.u8().ok_or("transform header truncated")?;
        let expected = if i + 1 == count { LAST } else { MORE_TRANSFORMS };
        if last != expected {
            return Err("transform Last Substruc disagrees with Num Transforms");
        }
        let _reserved = p.u8().ok_or("transform header truncated")?;
        let len = usize::from(p.u16().ok_or("transform header truncated")?);
        let rest = len.checked_sub(4).ok_or("transform length shorter than its header")?;
        let mut t = Reader::new(p.take(rest).ok_or("transform length runs past the proposal")?);
        transforms.push(parse_transform(&mut t)?);
    }
    if !p.is_empty() {
        return Err("bytes after the last transform of a proposal");
    }
    Ok(Proposal { number, protocol, spi, transforms })
}

fn parse_transform(t: &mut Reader<'_>) -> Result<Transform, &'static str> {
    let transform_type = TransformType(t.u8().ok_or("transform header truncated")?);
    let _reserved = t.u8().ok_or("transform header truncated")?;
    let id = t.u16().ok_or("transform header truncated")?;
    let mut attributes = Vec::new();
    let mut key_length = false;
    while !t.is_empty() {
        let word = t.u16().ok_or("transform attribute truncated")?;
        let attr_type = word & !AF_TV;
        let a = if word & AF_TV != 0 {
            Attribute::Tv { attr_type, value: t.u16().ok_or("transform attribute truncated")? }
        } else {
            // RFC 7296 section 3.3.5: Key Length "is only used in the TV format".
            if attr_type == KEY_LENGTH_ATTRIBUTE {
                return Err("Key Length attribute in TLV format");
            }
            let n = usize::from(t.u16().ok_or("transform attribute truncated")?);
            Attribute::Tlv { attr_type, value: t.take(n).ok_or("transform attribute value truncated")?.to_vec() }
        };
        if attr_type == KEY_LENGTH_ATTRIBUTE {
            if key_length {
                return Err("Key Length attribute given twice");
            }
            key_length = true;
        }
        attributes.push(a);
    }
    Ok(Transform { transform_type, id, attributes })
}

pub(crate) fn emit(proposals: &[Proposal], out: &mut Vec<u8>) -> Result<(), WireError> {
    if proposals.is_empty() {
        return Err(WireError::Unencodable { what: "SA payload without a proposal" });
    }
    for (i, p) in proposals.iter().enumerate() {
        let start = out.len();
        let last = if i + 1 == proposals.len() { LAST } else { MORE_PROPOSALS };
        let count = u8::try_from(p.transforms.len())
            .map_err(|_| WireError::Unencodable { what: "more than 255 transforms in a proposal" })?;
        out.extend_from_slice(&[last, 0, 0, 0, p.number, p.protocol.0, p.spi.size(), count]);
        match p.spi {
            Spi::Empty => {}
            Spi::Four(s) => out.extend_from_slice(&s.to_be_bytes()),
            Spi::Eight(s) => out.extend_from_slice(&s.to_be_bytes()),
        }
        for (j, t) in p.transforms.iter().enumerate() {
            let tstart = out.len();
            let last = if j + 1 == p.transforms.len() { LAST } else { MORE_TRANSFORMS };
            out.extend_from_slice(&[last, 0, 0, 0, t.transform_type.0, 0]);
            out.extend_from_slice(&t.id.to_be_bytes());
            for a in &t.attributes {
                match a {
                    Attribute::Tv { attr_type, value } => {
                        check_attr_type(*attr_type)?;
                        out.extend_from_slice(&(attr_type | AF_TV).to_be_bytes());
                        out.extend_from_slice(&value.to_be_bytes());
                    }
                    Attribute::Tlv { attr_type, value } => {
                        check_attr_type(*attr_type)?;
                        let n = u16::try_from(value.len())
                            .map_err(|_| WireError::Unencodable { what: "transform attribute over 65535 bytes" })?;
                        out.extend_from_slice(&attr_type.to_be_bytes());
                        out.extend_from_slice(&n.to_be_bytes());
                        out.extend_from_slice(value);
                    }
                }
            }
            let n = out.len() - tstart;
            patch_len16(out, tstart + 2, n, "transform over 65535 bytes")?;
        }
        let n = out.len() - start;
        patch_len16(out, start + 2, n, "proposal over 65535 bytes")?;
    }
    Ok(())
}

fn check_attr_type(t: u16) -> Result<(), WireError> {
    if t & AF_TV != 0 {
        return Err(WireError::Unencodable { what: "transform attribute type over 15 bits" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{dh, encr, prf};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The SA payload body of strongSwan's IKE_SA_INIT request (tests/vectors/psk_01):
    /// aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256.
    const SA: &str = concat!(
        "02000024010100030300000c01000014800e01000300000802000005000000080400001f",
        "00000024020100030300000c01000014800e008003000008020000050000000804000013",
    );

    fn sa_body() -> Vec<u8> {
        hex(SA)
    }

    #[test]
    fn strongswan_proposals() {
        let b = sa_body();
        let ps = parse(&b).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].number, 1);
        assert_eq!(ps[0].protocol, ProtocolId::IKE);
        assert_eq!(ps[0].spi, Spi::Empty);
        let t = &ps[0].transforms;
        assert_eq!(
            (t[0].transform_type, t[0].id, t[0].key_length()),
            (TransformType::ENCR, encr::AES_GCM_16, Some(256))
        );
        assert_eq!((t[1].transform_type, t[1].id), (TransformType::PRF, prf::HMAC_SHA2_256));
        assert_eq!((t[2].transform_type, t[2].id), (TransformType::DH, dh::CURVE25519));
        assert_eq!(ps[1].number, 2);
        assert_eq!(ps[1].transforms[0].key_length(), Some(128));
        assert_eq!(ps[1].transforms_of(TransformType::DH).next().unwrap().id, dh::ECP_256);
        assert!(!ps[1].transforms[0].has_unknown_attributes());
        let mut out = Vec::new();
        emit(&ps, &mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn refuses_bad_structure() {
        let good = sa_body();
        let mut b = good.clone();
        b[0] = 1; // Last Substruc
        assert_eq!(parse(&b), Err("proposal Last Substruc is neither 0 nor 2"));
        let mut b = good.clone();
        b[7] = 4; // Num Transforms one too many
        assert!(parse(&b).is_err());
        let mut b = good.clone();
        b[6] = 2; // SPI size
        assert_eq!(parse(&b), Err("proposal SPI size is not 0, 4 or 8"));
        let mut b = good.clone();
        b[0x10] = 0x00; // Key Length as TLV
        assert_eq!(parse(&b), Err("Key Length attribute in TLV format"));
        assert_eq!(parse(&good[..good.len() - 1]), Err("proposal length runs past the SA payload"));
        let mut b = good.clone();
        b.push(0);
        assert_eq!(parse(&b), Err("bytes after the last proposal"));
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn keeps_other_attributes_and_spis() {
        let p = Proposal {
            number: 1,
            protocol: ProtocolId::ESP,
            spi: Spi::Four(0xc0ffee01),
            transforms: vec![Transform {
                transform_type: TransformType::ENCR,
                id: encr::AES_CBC,
                attributes: vec![
                    Attribute::Tv { attr_type: KEY_LENGTH_ATTRIBUTE, value: 128 },
                    Attribute::Tlv { attr_type: 99, value: vec![1, 2, 3] },
                    Attribute::Tv { attr_type: 98, value: 7 },
                ],
            }],
        };
        let mut out = Vec::new();
        emit(std::slice::from_ref(&p), &mut out).unwrap();
        let back = parse(&out).unwrap();
        assert_eq!(back, vec![p]);
        assert!(back[0].transforms[0].has_unknown_attributes());
        let ike = Proposal { number: 1, protocol: ProtocolId::IKE, spi: Spi::Eight(1 << 60), transforms: vec![] };
        let mut out = Vec::new();
        emit(std::slice::from_ref(&ike), &mut out).unwrap();
        assert_eq!(out.len(), 16);
        assert_eq!(parse(&out).unwrap(), vec![ike]);
    }
}
