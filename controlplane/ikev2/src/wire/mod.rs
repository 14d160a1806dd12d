//! The IKEv2 wire codec (RFC 7296 section 3).
//!
//! Parsing goes through checked views over the bytes ([`HeaderPacket`], [`PayloadPacket`])
//! into an owned representation ([`Message`], [`Header`], [`Payload`]) that the state machine
//! reads and builds; emitting turns that representation back into bytes, computing every length,
//! count and next-payload field.
//!
//! Parsing never panics and allocates at most a small multiple of the input size. A message
//! that parses and is emitted again gives the same bytes, except for content that RFC 7296 says
//! to ignore on receipt and which is sent as zero: the minor version, the header flag bits other
//! than Initiator and Response, the Critical bit and the RESERVED bits of the generic payload
//! header of a recognised payload, and the RESERVED fields inside payloads (KE, ID, AUTH, TS,
//! proposals, transforms, CP, the second octet of an unknown traffic selector type). Emitting
//! thus only ever clears bits of the input.
//!
//! The SK payload (RFC 7296 section 3.14) is kept encrypted: [`Encrypted`] holds the first
//! inner payload type and IV | ciphertext | ICV. The crypto code decrypts it and hands the
//! plaintext chain to [`parse_payload_chain`]; for sending, [`emit_payload_chain`] gives the
//! plaintext and [`sk_message_prefix`] the bytes before the IV, which are also the AEAD
//! additional data (RFC 5282 section 5.1).
//!
//! The non-ESP marker of UDP port 4500 (RFC 3948) is not part of these messages.

mod error;
mod header;
mod names;
mod payload;
mod sa;
mod ts;

pub use error::WireError;
pub use header::{HEADER_LEN, Header, HeaderPacket, MAJOR_VERSION, flags};
pub use names::{
    AuthMethod, CertEncoding, ExchangeType, IdType, NotifyType, ProtocolId, TransformType, dh, encr, esn, hash, integ,
    prf,
};
pub use payload::{
    Authentication, Certificate, Config, ConfigAttribute, Delete, Encrypted, EncryptedFragment, GENERIC_HEADER_LEN,
    Identification, KeyExchange, Notify, Payload, PayloadPacket, cfg_attr, cfg_type, payload_type,
};
pub use sa::{Attribute, KEY_LENGTH_ATTRIBUTE, Proposal, Spi, Transform};
pub use ts::{AddrRange, TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE, TrafficSelector};

/// At most this many payloads in one chain (a message, or the inside of an SK payload).
/// strongSwan's IKE_AUTH requests hold about 15; the bound keeps a hostile datagram of tiny
/// payloads from turning into tens of thousands of allocations.
pub const MAX_PAYLOADS: usize = 256;

/// An IKEv2 message: the header and the payload chain, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a whole UDP payload (without the non-ESP marker).
    pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
        let packet = HeaderPacket::new_checked(bytes)?;
        let header = Header::parse(&packet)?;
        // RFC 7296 section 3.1: "Length of the total message (header + payloads) in octets".
        if usize::try_from(header.length).ok() != Some(bytes.len()) {
            return Err(WireError::LengthMismatch { header: header.length, actual: bytes.len() });
        }
        let payloads = payload::parse_chain(header.next_payload, packet.payload(), HEADER_LEN)?;
        Ok(Message { header, payloads })
    }

    /// The message as bytes; the header's next payload and length are computed here, whatever
    /// `self.header` says.
    ///
    /// # Panics
    /// If a field does not fit its wire width (see [`Message::try_emit`]); only a locally built
    /// message can be like that, never one from [`Message::parse`].
    pub fn emit(&self) -> Vec<u8> {
        self.try_emit().unwrap_or_else(|e| panic!("emitting an IKE message: {e}"))
    }

    /// As [`Message::emit`], but a payload over 65535 bytes, more than 255 transforms or traffic
    /// selectors, or an SK payload that is not last is an error instead of a panic.
    pub fn try_emit(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(512);
        self.header.emit(&mut out);
        let first = payload::emit_chain(&self.payloads, &mut out, payload_type::NONE)?;
        finish_header(&mut out, first)?;
        Ok(out)
    }

    /// The SK payload, if the message has one (it is always the last, RFC 7296 section 3.14).
    pub fn encrypted(&self) -> Option<&Encrypted> {
        match self.payloads.last() {
            Some(Payload::Sk(sk)) => Some(sk),
            _ => None,
        }
    }

    /// The first Notify payload of the given type.
    pub fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type == notify_type => Some(n),
            _ => None,
        })
    }
}

/// Parses a payload chain that starts with a payload of type `first_type`: the plaintext of an
/// SK payload (padding and pad length already removed), with `first_type` its Next Payload field.
/// The same checks as for a message apply: every length consistent, nothing left over.
pub fn parse_payload_chain(first_type: u8, bytes: &[u8]) -> Result<Vec<Payload>, WireError> {
    payload::parse_chain(first_type, bytes, 0)
}

/// Emits a payload chain: (type of the first payload or 0 if empty, bytes). This is the
/// plaintext to encrypt into an SK payload, before padding.
///
/// # Panics
/// As [`Message::emit`]; [`try_emit_payload_chain`] returns the error instead.
pub fn emit_payload_chain(payloads: &[Payload]) -> (u8, Vec<u8>) {
    try_emit_payload_chain(payloads).unwrap_or_else(|e| panic!("emitting an IKE payload chain: {e}"))
}

/// As [`emit_payload_chain`], with field overflows reported.
pub fn try_emit_payload_chain(payloads: &[Payload]) -> Result<(u8, Vec<u8>), WireError> {
    let mut out = Vec::new();
    let first = payload::emit_chain(payloads, &mut out, payload_type::NONE)?;
    Ok((first, out))
}

/// The start of a message whose last payload is SK: the IKE header, the `preceding` payloads
/// and the SK generic header, with every length already counting an SK body (IV | ciphertext |
/// padding | pad length | ICV) of `body_len` bytes. The caller appends that body. These bytes
/// are the AEAD additional data (RFC 5282 section 5.1: "the IKE header and the Encrypted
/// payload header"); with integrity transforms instead, the ICV covers them and the body
/// without the ICV (RFC 7296 section 3.14).
pub fn sk_message_prefix(
    header: &Header,
    first_inner: u8,
    body_len: usize,
    preceding: &[Payload],
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(HEADER_LEN + GENERIC_HEADER_LEN + 64);
    header.emit(&mut out);
    let first = if preceding.is_empty() {
        payload_type::SK
    } else {
        payload::emit_chain(preceding, &mut out, payload_type::SK)?
    };
    payload::emit_generic_header(&mut out, first_inner, GENERIC_HEADER_LEN + body_len)?;
    finish_header_with_body(&mut out, first, body_len)?;
    Ok(out)
}

/// The start of a message carrying one Encrypted Fragment payload (RFC 7383 section 2.5): the
/// IKE header and the SKF header (generic header, Fragment Number, Total Fragments), lengths
/// counting a body of `body_len` bytes. `first_inner` is 0 in all fragments but the first.
pub fn skf_message_prefix(
    header: &Header,
    first_inner: u8,
    fragment_number: u16,
    total_fragments: u16,
    body_len: usize,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(HEADER_LEN + GENERIC_HEADER_LEN + 4);
    header.emit(&mut out);
    payload::emit_generic_header(&mut out, first_inner, GENERIC_HEADER_LEN + 4 + body_len)?;
    out.extend_from_slice(&fragment_number.to_be_bytes());
    out.extend_from_slice(&total_fragments.to_be_bytes());
    finish_header_with_body(&mut out, payload_type::SKF, body_len)?;
    Ok(out)
}

fn finish_header(out: &mut [u8], first: u8) -> Result<(), WireError> {
    finish_header_with_body(out, first, 0)
}

fn finish_header_with_body(out: &mut [u8], first: u8, body_len: usize) -> Result<(), WireError> {
    let total = out
        .len()
        .checked_add(body_len)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(WireError::Unencodable { what: "message longer than 2^32 - 1 bytes" })?;
    let mut h = HeaderPacket::new_checked(out)?;
    h.set_next_payload(first);
    h.set_length(total);
    Ok(())
}

/// A bounds-checked reader over a payload body: every read is an `Option`, so a short body is
/// an error value, never an index panic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader(b)
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(be16)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(be32)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(be64)
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

// Callers pass slices of exactly the right length (checked views and `Reader::take`).
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Writes a big-endian u16 length at `at`, refusing values that do not fit.
pub(crate) fn patch_len16(out: &mut [u8], at: usize, len: usize, what: &'static str) -> Result<(), WireError> {
    let v = u16::try_from(len).map_err(|_| WireError::Unencodable { what })?;
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
