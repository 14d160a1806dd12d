//! Payloads (RFC 7296 sections 3.2 to 3.16, RFC 7383 section 2.5) and payload chains.
//!
//! ```text
//! Generic payload header (section 3.2):
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! ```

use super::{
    AuthMethod, CertEncoding, IdType, MAX_PAYLOADS, NotifyType, Proposal, ProtocolId, Reader, TrafficSelector,
    WireError, be16, patch_len16, sa, ts,
};

/// Size of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;
const CRITICAL: u8 = 0x80;
use self::payload_type as pt;

/// Payload type numbers (RFC 7296 section 3.2, RFC 7383).
pub mod payload_type {
    /// "No Next Payload": ends a chain.
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR_ID: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    /// Not interpreted by this crate (no EAP): an EAP payload is an unknown payload.
    pub const EAP: u8 = 48;
    pub const SKF: u8 = 53;

    /// The short name used in RFC 7296 for a payload type, or "payload type N".
    pub fn name(t: u8) -> std::borrow::Cow<'static, str> {
        let n = match t {
            SA => "SA",
            KE => "KE",
            IDI => "IDi",
            IDR => "IDr",
            CERT => "CERT",
            CERTREQ => "CERTREQ",
            AUTH => "AUTH",
            NONCE => "Nonce",
            NOTIFY => "Notify",
            DELETE => "Delete",
            VENDOR_ID => "Vendor ID",
            TSI => "TSi",
            TSR => "TSr",
            SK => "SK",
            CP => "CP",
            EAP => "EAP",
            SKF => "SKF",
            _ => return format!("payload type {t}").into(),
        };
        n.into()
    }
}

/// CFG Type of a Configuration payload (RFC 7296 section 3.15).
pub mod cfg_type {
    pub const REQUEST: u8 = 1;
    pub const REPLY: u8 = 2;
    pub const SET: u8 = 3;
    pub const ACK: u8 = 4;
}

/// Configuration attribute types (RFC 7296 section 3.15.1).
pub mod cfg_attr {
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    pub const INTERNAL_IP4_NETMASK: u16 = 2;
    pub const INTERNAL_IP4_DNS: u16 = 3;
    pub const INTERNAL_IP4_NBNS: u16 = 4;
    pub const INTERNAL_IP4_DHCP: u16 = 6;
    pub const APPLICATION_VERSION: u16 = 7;
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    pub const INTERNAL_IP6_DNS: u16 = 10;
    pub const INTERNAL_IP6_DHCP: u16 = 12;
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    pub const SUPPORTED_ATTRIBUTES: u16 = 14;
    pub const INTERNAL_IP6_SUBNET: u16 = 15;
}

/// A checked view of one payload: its generic header and body. `new_checked` guarantees that
/// the Payload Length covers at least the generic header and fits in the buffer; the buffer may
/// go on past it (the rest of the chain).
#[derive(Debug, Clone)]
pub struct PayloadPacket<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> PayloadPacket<T> {
    /// The errors carry `payload_type` and `offset` for the message.
    pub fn new_checked(buf: T, payload_type: u8, offset: usize) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < GENERIC_HEADER_LEN {
            return Err(WireError::PayloadHeaderTruncated { payload_type, offset, available: b.len() });
        }
        let length = be16(&b[2..4]);
        // RFC 7296 section 3.2: Payload Length "includes the payload header".
        if usize::from(length) < GENERIC_HEADER_LEN {
            return Err(WireError::PayloadTooShort { payload_type, offset, length });
        }
        if usize::from(length) > b.len() {
            return Err(WireError::PayloadOverrun { payload_type, offset, length, available: b.len() });
        }
        Ok(PayloadPacket(buf))
    }

    pub fn next_payload(&self) -> u8 {
        self.0.as_ref()[0]
    }
    /// RFC 7296 section 2.5; only meaningful for a payload type the receiver does not know.
    pub fn critical(&self) -> bool {
        self.0.as_ref()[1] & CRITICAL != 0
    }
    pub fn length(&self) -> usize {
        usize::from(be16(&self.0.as_ref()[2..4]))
    }
    pub fn body(&self) -> &[u8] {
        &self.0.as_ref()[GENERIC_HEADER_LEN..self.length()]
    }
}

/// KE payload (section 3.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyExchange {
    /// See [`super::dh`].
    pub group: u16,
    pub data: Vec<u8>,
}

/// IDi and IDr payloads (section 3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    pub id_type: IdType,
    pub data: Vec<u8>,
}

impl Identification {
    pub fn fqdn(name: &str) -> Self {
        Identification { id_type: IdType::FQDN, data: name.as_bytes().to_vec() }
    }

    pub fn rfc822(addr: &str) -> Self {
        Identification { id_type: IdType::RFC822_ADDR, data: addr.as_bytes().to_vec() }
    }

    pub fn ip(addr: core::net::IpAddr) -> Self {
        match addr {
            core::net::IpAddr::V4(a) => Identification { id_type: IdType::IPV4_ADDR, data: a.octets().to_vec() },
            core::net::IpAddr::V6(a) => Identification { id_type: IdType::IPV6_ADDR, data: a.octets().to_vec() },
        }
    }

    /// The payload body as sent: ID Type, three zero RESERVED octets, data. This is what
    /// RFC 7296 section 2.15 feeds to prf(SK_pi/SK_pr, ...) as "RestOfInitIDPayload" with the type.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        v.extend_from_slice(&[self.id_type.0, 0, 0, 0]);
        v.extend_from_slice(&self.data);
        v
    }
}

/// CERT and CERTREQ payloads (sections 3.6 and 3.7). For CERTREQ with X509_SIGNATURE, `data`
/// is a list of 20-byte SHA-1 hashes of trusted CA public keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Certificate {
    pub encoding: CertEncoding,
    pub data: Vec<u8>,
}

/// AUTH payload (section 3.8). With DIGITAL_SIGNATURE (RFC 7427) `data` starts with a length
/// octet and an ASN.1 AlgorithmIdentifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authentication {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

/// Notify payload (section 3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// [`ProtocolId::NONE`] unless `spi` names an SA (INVALID_SELECTORS, REKEY_SA,
    /// CHILD_SA_NOT_FOUND), then AH or ESP.
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub notify_type: NotifyType,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notification about no particular SA.
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        Notify { protocol: ProtocolId::NONE, spi: Vec::new(), notify_type, data }
    }
}

/// Delete payload (section 3.11). RFC 7296 fixes the SPI size by protocol, so it is not stored:
/// IKE has SPI size 0 and no SPIs (the SA is the one the message belongs to), AH and ESP
/// 4-octet SPIs. Any other combination is refused when parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    pub protocol: ProtocolId,
    /// Inbound SPIs of the sender (RFC 7296 section 1.4.1); empty for IKE.
    pub spis: Vec<u32>,
}

/// The Encrypted and Authenticated payload, SK (section 3.14), still encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// The Next Payload field of the SK header: type of the first payload inside.
    pub first_inner: u8,
    /// Initialization Vector | encrypted (inner payloads | padding | pad length) | ICV.
    pub body: Vec<u8>,
}

impl Encrypted {
    /// For a received message that ends in this payload: the bytes before the IV, which are
    /// the AEAD additional data (RFC 5282 section 5.1) or the start of what the ICV covers.
    /// `None` if `message` does not end with this body.
    pub fn aad<'a>(&self, message: &'a [u8]) -> Option<&'a [u8]> {
        let at = message.len().checked_sub(self.body.len())?;
        (message[at..] == self.body[..]).then_some(&message[..at])
    }
}

/// The Encrypted Fragment payload, SKF (RFC 7383 section 2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// The type of the first inner payload in fragment 1, zero in the others.
    pub first_inner: u8,
    pub fragment_number: u16,
    pub total_fragments: u16,
    /// IV | encrypted fragment | ICV.
    pub body: Vec<u8>,
}

/// Configuration payload (section 3.15).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// See [`cfg_type`].
    pub cfg_type: u8,
    pub attributes: Vec<ConfigAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigAttribute {
    /// 15 bits; see [`cfg_attr`]. The reserved top bit is ignored and sent as zero.
    pub attr_type: u16,
    /// Empty in a request means "assign me one".
    pub value: Vec<u8>,
}

/// One payload of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Security Association (33): one or more proposals.
    Sa(Vec<Proposal>),
    /// Key Exchange (34).
    Ke(KeyExchange),
    /// Identification of the initiator (35).
    IdI(Identification),
    /// Identification of the responder (36).
    IdR(Identification),
    /// Certificate (37).
    Cert(Certificate),
    /// Certificate Request (38).
    CertReq(Certificate),
    /// Authentication (39).
    Auth(Authentication),
    /// Nonce (40); RFC 7296 section 3.9 wants 16 to 256 octets, which the state machine checks.
    Nonce(Vec<u8>),
    /// Notify (41).
    Notify(Notify),
    /// Delete (42).
    Delete(Delete),
    /// Vendor ID (43).
    VendorId(Vec<u8>),
    /// Traffic Selector - Initiator (44).
    TsI(Vec<TrafficSelector>),
    /// Traffic Selector - Responder (45).
    TsR(Vec<TrafficSelector>),
    /// Encrypted and Authenticated (46); always the last payload of its chain.
    Sk(Encrypted),
    /// Configuration (47).
    Cp(Config),
    /// Encrypted Fragment (53); always the last payload of its chain.
    Skf(EncryptedFragment),
    /// A payload type this crate does not interpret, received without the Critical bit
    /// (RFC 7296 section 2.5: skipped by the state machine). Emitted with the Critical bit clear.
    Unknown { payload_type: u8, data: Vec<u8> },
}

impl Payload {
    pub fn payload_type(&self) -> u8 {
        match self {
            Payload::Sa(_) => pt::SA,
            Payload::Ke(_) => pt::KE,
            Payload::IdI(_) => pt::IDI,
            Payload::IdR(_) => pt::IDR,
            Payload::Cert(_) => pt::CERT,
            Payload::CertReq(_) => pt::CERTREQ,
            Payload::Auth(_) => pt::AUTH,
            Payload::Nonce(_) => pt::NONCE,
            Payload::Notify(_) => pt::NOTIFY,
            Payload::Delete(_) => pt::DELETE,
            Payload::VendorId(_) => pt::VENDOR_ID,
            Payload::TsI(_) => pt::TSI,
            Payload::TsR(_) => pt::TSR,
            Payload::Sk(_) => pt::SK,
            Payload::Cp(_) => pt::CP,
            Payload::Skf(_) => pt::SKF,
            Payload::Unknown { payload_type, .. } => *payload_type,
        }
    }

    /// Reads one payload from its checked view. A type this crate does not interpret becomes
    /// [`Payload::Unknown`] or, with the Critical bit, an error.
    fn parse<T: AsRef<[u8]>>(payload_type: u8, packet: &PayloadPacket<T>) -> Result<Payload, WireError> {
        let body = packet.body();
        let malformed = |reason| WireError::Malformed { payload_type, reason };
        let mut r = Reader::new(body);
        let p = match payload_type {
            pt::SA => Payload::Sa(sa::parse(body).map_err(malformed)?),
            pt::KE => {
                let group = r.u16().ok_or(malformed("shorter than its 4-byte header"))?;
                r.take(2).ok_or(malformed("shorter than its 4-byte header"))?;
                Payload::Ke(KeyExchange { group, data: r.rest().to_vec() })
            }
            pt::IDI | pt::IDR => {
                let id_type = IdType(r.u8().ok_or(malformed("shorter than its 4-byte header"))?);
                r.take(3).ok_or(malformed("shorter than its 4-byte header"))?;
                let id = Identification { id_type, data: r.rest().to_vec() };
                if payload_type == pt::IDI { Payload::IdI(id) } else { Payload::IdR(id) }
            }
            pt::CERT | pt::CERTREQ => {
                let encoding = CertEncoding(r.u8().ok_or(malformed("no Cert Encoding"))?);
                let c = Certificate { encoding, data: r.rest().to_vec() };
                if payload_type == pt::CERT { Payload::Cert(c) } else { Payload::CertReq(c) }
            }
            pt::AUTH => {
                let method = AuthMethod(r.u8().ok_or(malformed("shorter than its 4-byte header"))?);
                r.take(3).ok_or(malformed("shorter than its 4-byte header"))?;
                Payload::Auth(Authentication { method, data: r.rest().to_vec() })
            }
            pt::NONCE => Payload::Nonce(body.to_vec()),
            pt::NOTIFY => {
                let protocol = ProtocolId(r.u8().ok_or(malformed("shorter than its 4-byte header"))?);
                let spi_size = r.u8().ok_or(malformed("shorter than its 4-byte header"))?;
                let notify_type = NotifyType(r.u16().ok_or(malformed("shorter than its 4-byte header"))?);
                let spi = r.take(usize::from(spi_size)).ok_or(malformed("SPI runs past the payload"))?.to_vec();
                Payload::Notify(Notify { protocol, spi, notify_type, data: r.rest().to_vec() })
            }
            pt::DELETE => Payload::Delete(parse_delete(&mut r).map_err(malformed)?),
            pt::VENDOR_ID => Payload::VendorId(body.to_vec()),
            pt::TSI => Payload::TsI(ts::parse(body).map_err(malformed)?),
            pt::TSR => Payload::TsR(ts::parse(body).map_err(malformed)?),
            pt::SK => Payload::Sk(Encrypted { first_inner: packet.next_payload(), body: body.to_vec() }),
            pt::CP => Payload::Cp(parse_config(&mut r).map_err(malformed)?),
            pt::SKF => {
                let fragment_number = r.u16().ok_or(malformed("shorter than its 4-byte fragment header"))?;
                let total_fragments = r.u16().ok_or(malformed("shorter than its 4-byte fragment header"))?;
                Payload::Skf(EncryptedFragment {
                    first_inner: packet.next_payload(),
                    fragment_number,
                    total_fragments,
                    body: r.rest().to_vec(),
                })
            }
            _ => {
                // RFC 7296 section 2.5: "If the critical flag is set and the payload type is
                // unrecognized, the message MUST be rejected and the response to the IKE request
                // containing that payload MUST include a Notify payload
                // UNSUPPORTED_CRITICAL_PAYLOAD"; without the flag the payload is skipped.
                if packet.critical() {
                    return Err(WireError::UnsupportedCriticalPayload { payload_type });
                }
                Payload::Unknown { payload_type, data: body.to_vec() }
            }
        };
        Ok(p)
    }

    /// Appends the payload body (without the generic header).
    fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Payload::Sa(p) => sa::emit(p, out)?,
            Payload::Ke(k) => {
                out.extend_from_slice(&k.group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&k.data);
            }
            Payload::IdI(id) | Payload::IdR(id) => {
                out.extend_from_slice(&[id.id_type.0, 0, 0, 0]);
                out.extend_from_slice(&id.data);
            }
            Payload::Cert(c) | Payload::CertReq(c) => {
                out.push(c.encoding.0);
                out.extend_from_slice(&c.data);
            }
            Payload::Auth(a) => {
                out.extend_from_slice(&[a.method.0, 0, 0, 0]);
                out.extend_from_slice(&a.data);
            }
            Payload::Nonce(d) | Payload::VendorId(d) | Payload::Unknown { data: d, .. } => out.extend_from_slice(d),
            Payload::Notify(n) => {
                let spi_size = u8::try_from(n.spi.len())
                    .map_err(|_| WireError::Unencodable { what: "Notify SPI over 255 bytes" })?;
                out.extend_from_slice(&[n.protocol.0, spi_size]);
                out.extend_from_slice(&n.notify_type.0.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                let spi_size = match d.protocol {
                    ProtocolId::IKE if d.spis.is_empty() => 0,
                    ProtocolId::AH | ProtocolId::ESP => 4,
                    _ => {
                        return Err(WireError::Unencodable {
                            what: "Delete of IKE with SPIs, or of an unknown protocol",
                        });
                    }
                };
                let n = u16::try_from(d.spis.len())
                    .map_err(|_| WireError::Unencodable { what: "more than 65535 SPIs in a Delete" })?;
                out.extend_from_slice(&[d.protocol.0, spi_size]);
                out.extend_from_slice(&n.to_be_bytes());
                for s in &d.spis {
                    out.extend_from_slice(&s.to_be_bytes());
                }
            }
            Payload::TsI(t) | Payload::TsR(t) => ts::emit(t, out)?,
            Payload::Sk(sk) => out.extend_from_slice(&sk.body),
            Payload::Cp(c) => {
                out.extend_from_slice(&[c.cfg_type, 0, 0, 0]);
                for a in &c.attributes {
                    if a.attr_type & 0x8000 != 0 {
                        return Err(WireError::Unencodable { what: "configuration attribute type over 15 bits" });
                    }
                    let n = u16::try_from(a.value.len())
                        .map_err(|_| WireError::Unencodable { what: "configuration attribute over 65535 bytes" })?;
                    out.extend_from_slice(&a.attr_type.to_be_bytes());
                    out.extend_from_slice(&n.to_be_bytes());
                    out.extend_from_slice(&a.value);
                }
            }
            Payload::Skf(f) => {
                out.extend_from_slice(&f.fragment_number.to_be_bytes());
                out.extend_from_slice(&f.total_fragments.to_be_bytes());
                out.extend_from_slice(&f.body);
            }
        }
        Ok(())
    }
}

fn parse_delete(r: &mut Reader<'_>) -> Result<Delete, &'static str> {
    let protocol = ProtocolId(r.u8().ok_or("shorter than its 4-byte header")?);
    let spi_size = r.u8().ok_or("shorter than its 4-byte header")?;
    let count = r.u16().ok_or("shorter than its 4-byte header")?;
    // RFC 7296 section 3.11: SPI Size "MUST be zero for IKE ... or four for AH and ESP".
    let size_ok = match protocol {
        ProtocolId::IKE => spi_size == 0 && count == 0,
        ProtocolId::AH | ProtocolId::ESP => spi_size == 4,
        _ => false,
    };
    if !size_ok {
        return Err("SPI size or count does not fit the protocol (IKE: 0 and none, AH/ESP: 4)");
    }
    if r.len() != usize::from(count) * usize::from(spi_size) {
        return Err("length does not match Num of SPIs");
    }
    let mut spis = Vec::with_capacity(usize::from(count));
    while let Some(s) = r.u32() {
        spis.push(s);
    }
    Ok(Delete { protocol, spis })
}

fn parse_config(r: &mut Reader<'_>) -> Result<Config, &'static str> {
    let cfg_type = r.u8().ok_or("shorter than its 4-byte header")?;
    r.take(3).ok_or("shorter than its 4-byte header")?;
    let mut attributes = Vec::new();
    while !r.is_empty() {
        let attr_type = r.u16().ok_or("configuration attribute truncated")? & 0x7fff;
        let n = usize::from(r.u16().ok_or("configuration attribute truncated")?);
        let value = r.take(n).ok_or("configuration attribute value runs past the payload")?.to_vec();
        attributes.push(ConfigAttribute { attr_type, value });
    }
    Ok(Config { cfg_type, attributes })
}

/// Whether [`Payload::parse`] interprets this type (otherwise it is [`Payload::Unknown`]).
fn is_interpreted(t: u8) -> bool {
    matches!(t, pt::SA..=pt::CP | pt::SKF)
}

/// Parses the chain starting with a payload of type `first`; `base` is the offset of `bytes` in
/// the message, for error messages.
pub(crate) fn parse_chain(first: u8, bytes: &[u8], base: usize) -> Result<Vec<Payload>, WireError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut off = 0;
    while next != payload_type::NONE {
        if payloads.len() == MAX_PAYLOADS {
            return Err(WireError::TooManyPayloads { count: payloads.len() + 1, max: MAX_PAYLOADS });
        }
        let this = next;
        let packet = PayloadPacket::new_checked(&bytes[off..], this, base + off)?;
        next = packet.next_payload();
        payloads.push(Payload::parse(this, &packet)?);
        off += packet.length();
        // RFC 7296 section 3.14: SK "MUST be the last payload in the message"; its Next Payload
        // names the first inner payload (RFC 7383 section 2.5 likewise for SKF). Anything after
        // it is reported as trailing bytes below.
        if this == payload_type::SK || this == payload_type::SKF {
            break;
        }
    }
    if off != bytes.len() {
        return Err(WireError::TrailingBytes { count: bytes.len() - off });
    }
    Ok(payloads)
}

/// Appends the generic header of a payload whose whole length (header included) is `len`.
pub(crate) fn emit_generic_header(out: &mut Vec<u8>, next: u8, len: usize) -> Result<(), WireError> {
    let len = u16::try_from(len).map_err(|_| WireError::Unencodable { what: "payload over 65535 bytes" })?;
    out.extend_from_slice(&[next, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends a chain; the last payload's Next Payload is `last_next` (0, or SK when an SK payload
/// will follow). Returns the type of the first payload, or `last_next` for an empty chain.
pub(crate) fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>, last_next: u8) -> Result<u8, WireError> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match (p, payloads.get(i + 1)) {
            (Payload::Sk(sk), None) if last_next == payload_type::NONE => sk.first_inner,
            (Payload::Skf(f), None) if last_next == payload_type::NONE => f.first_inner,
            (Payload::Sk(_) | Payload::Skf(_), _) => {
                return Err(WireError::Unencodable { what: "an SK or SKF payload that is not the last" });
            }
            (_, Some(n)) => n.payload_type(),
            (_, None) => last_next,
        };
        if let Payload::Unknown { payload_type, .. } = p {
            // It would not parse back as itself.
            if *payload_type == pt::NONE || is_interpreted(*payload_type) {
                return Err(WireError::Unencodable { what: "an Unknown payload of type 0 or of a type parsed here" });
            }
        }
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        p.emit_body(out)?;
        let n = out.len() - start;
        patch_len16(out, start + 2, n, "payload over 65535 bytes")?;
    }
    Ok(payloads.first().map_or(last_next, Payload::payload_type))
}

#[cfg(test)]
mod tests {
    use super::super::{emit_payload_chain, parse_payload_chain};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn round_trip(first: u8, b: &[u8]) -> Vec<Payload> {
        let ps = parse_payload_chain(first, b).unwrap();
        assert_eq!(emit_payload_chain(&ps), (first, b.to_vec()));
        ps
    }

    #[test]
    fn strongswan_psk_auth_response() {
        // IDr, AUTH (PSK) and CP reply from tests/vectors/psk_04 (inner), the chain cut after CP.
        let b = hex(concat!(
            "2700001a030000007269676874406578616d706c652e74657374",
            "2f00002802000000635c714c94821f090d5f67aa765722745157796f6bbea2eb63d2092e07c9f37a",
            "0000001002000000000100040a030001",
        ));
        let ps = round_trip(payload_type::IDR, &b);
        assert_eq!(ps[0], Payload::IdR(Identification::rfc822("right@example.test")));
        match &ps[1] {
            Payload::Auth(a) => assert_eq!(a.method, AuthMethod::SHARED_KEY_MIC),
            p => panic!("{p:?}"),
        }
        assert_eq!(
            ps[2],
            Payload::Cp(Config {
                cfg_type: cfg_type::REPLY,
                attributes: vec![ConfigAttribute {
                    attr_type: cfg_attr::INTERNAL_IP4_ADDRESS,
                    value: vec![10, 3, 0, 1]
                }],
            })
        );
    }

    #[test]
    fn notify_delete_and_sk() {
        // INVALID_KE_PAYLOAD naming group 19, as strongSwan sends it.
        let ps = round_trip(payload_type::NOTIFY, &hex("0000000a000000110013"));
        assert_eq!(ps, vec![Payload::Notify(Notify::new(NotifyType::INVALID_KE_PAYLOAD, vec![0, 19]))]);
        // REKEY_SA for an ESP SPI.
        let n = Notify {
            protocol: ProtocolId::ESP,
            spi: vec![1, 2, 3, 4],
            notify_type: NotifyType::REKEY_SA,
            data: vec![],
        };
        let (t, b) = emit_payload_chain(&[Payload::Notify(n.clone())]);
        assert_eq!(b, hex("0000000c0304400901020304"));
        assert_eq!(parse_payload_chain(t, &b).unwrap(), vec![Payload::Notify(n)]);
        // Delete of the IKE SA (strongSwan) and of two ESP SAs.
        let ps = round_trip(payload_type::DELETE, &hex("0000000801000000"));
        assert_eq!(ps, vec![Payload::Delete(Delete { protocol: ProtocolId::IKE, spis: vec![] })]);
        let ps = round_trip(payload_type::DELETE, &hex("0000001003040002aabbccdd11223344"));
        assert_eq!(ps, vec![Payload::Delete(Delete { protocol: ProtocolId::ESP, spis: vec![0xaabbccdd, 0x11223344] })]);
        assert!(parse_payload_chain(payload_type::DELETE, &hex("0000000c01040001aabbccdd")).is_err());
        assert!(parse_payload_chain(payload_type::DELETE, &hex("0000000c03040002aabbccdd")).is_err());
        // SK keeps its body and first inner type, and must be last.
        let ps = round_trip(payload_type::SK, &hex("2a000009aabbccddee"));
        assert_eq!(ps, vec![Payload::Sk(Encrypted { first_inner: 42, body: hex("aabbccddee") })]);
        assert_eq!(
            parse_payload_chain(payload_type::SK, &hex("2a000009aabbccddee00000004")),
            Err(WireError::TrailingBytes { count: 4 })
        );
        let sk = Payload::Sk(Encrypted { first_inner: 0, body: vec![] });
        assert!(super::super::try_emit_payload_chain(&[sk, Payload::Nonce(vec![1])]).is_err());
        // SKF.
        let ps = round_trip(payload_type::SKF, &hex("2100000c00010003aabbccdd"));
        assert_eq!(
            ps,
            vec![Payload::Skf(EncryptedFragment {
                first_inner: 33,
                fragment_number: 1,
                total_fragments: 3,
                body: hex("aabbccdd")
            })]
        );
    }

    #[test]
    fn unknown_payloads() {
        // Type 99 without the Critical bit is kept; with it, refused by name.
        let ps = round_trip(99, &hex("28000006abcd0000000800000000"));
        assert_eq!(ps[0], Payload::Unknown { payload_type: 99, data: vec![0xab, 0xcd] });
        assert_eq!(ps[1], Payload::Nonce(vec![0; 4]));
        let e = parse_payload_chain(99, &hex("00800006abcd")).unwrap_err();
        assert_eq!(e, WireError::UnsupportedCriticalPayload { payload_type: 99 });
        assert_eq!(e.to_string(), "unsupported critical payload type 99");
        // The Critical bit of a known payload is ignored, and not reproduced.
        let ps = parse_payload_chain(payload_type::NONCE, &hex("00800008deadbeef")).unwrap();
        assert_eq!(emit_payload_chain(&ps).1, hex("00000008deadbeef"));
    }

    #[test]
    fn interpreted_types_match_parse() {
        for t in 1..=255u8 {
            let unknown = matches!(parse_payload_chain(t, &hex("00000004")).as_deref(), Ok([Payload::Unknown { .. }]));
            assert_eq!(unknown, !is_interpreted(t), "payload type {t}");
        }
    }

    #[test]
    fn chain_errors() {
        use payload_type::NONCE;
        assert_eq!(parse_payload_chain(0, &[]), Ok(vec![]));
        assert_eq!(parse_payload_chain(0, &[0]), Err(WireError::TrailingBytes { count: 1 }));
        assert_eq!(
            parse_payload_chain(NONCE, &[0, 0, 0]),
            Err(WireError::PayloadHeaderTruncated { payload_type: NONCE, offset: 0, available: 3 })
        );
        assert_eq!(
            parse_payload_chain(NONCE, &hex("00000003")),
            Err(WireError::PayloadTooShort { payload_type: NONCE, offset: 0, length: 3 })
        );
        assert_eq!(
            parse_payload_chain(NONCE, &hex("00000009aabbccdd")),
            Err(WireError::PayloadOverrun { payload_type: NONCE, offset: 0, length: 9, available: 8 })
        );
        // A chain that promises another payload but ends.
        assert!(matches!(
            parse_payload_chain(NONCE, &hex("28000004")),
            Err(WireError::PayloadHeaderTruncated { payload_type: NONCE, offset: 4, .. })
        ));
        // Too many payloads, and exactly as many as allowed.
        let mut b = hex("28000004").repeat(MAX_PAYLOADS);
        let n = b.len();
        b[n - 4] = 0;
        assert_eq!(parse_payload_chain(NONCE, &b).unwrap().len(), MAX_PAYLOADS);
        b[n - 4] = NONCE;
        b.extend_from_slice(&hex("00000004"));
        assert!(matches!(parse_payload_chain(NONCE, &b), Err(WireError::TooManyPayloads { .. })));
        // Malformed bodies name the payload.
        let e = parse_payload_chain(payload_type::KE, &hex("00000006001f")).unwrap_err();
        assert_eq!(e.to_string(), "malformed KE payload: shorter than its 4-byte header");
    }
}
