//! The IKE header (RFC 7296 section 3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::{ExchangeType, WireError, be32, be64};

/// Size of the IKE header.
pub const HEADER_LEN: usize = 28;
/// The only major version this crate speaks.
pub const MAJOR_VERSION: u8 = 2;

/// Flag bits of the header (RFC 7296 section 3.1). The other bits, Version (0x10) included,
/// are ignored on receipt and sent as zero.
pub mod flags {
    /// Set in messages sent by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// "MUST be ignored on receipt" by IKEv2 (section 3.1).
    pub const VERSION: u8 = 0x10;
    /// Set in responses.
    pub const RESPONSE: u8 = 0x20;
}

mod field {
    use core::ops::Range;
    pub const SPI_I: Range<usize> = 0..8;
    pub const SPI_R: Range<usize> = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
}

/// A checked view of an IKE header at the start of a buffer. Only the size is checked, so the
/// SPIs and message ID of a message with a wrong version or length can still be read, as an
/// INVALID_MAJOR_VERSION answer needs them (RFC 7296 section 2.5).
#[derive(Debug, Clone)]
pub struct HeaderPacket<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> HeaderPacket<T> {
    /// Fails only if the buffer is shorter than [`HEADER_LEN`].
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let len = buf.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::HeaderTruncated { len });
        }
        Ok(HeaderPacket(buf))
    }

    pub fn into_inner(self) -> T {
        self.0
    }

    pub fn spi_i(&self) -> u64 {
        be64(&self.0.as_ref()[field::SPI_I])
    }
    pub fn spi_r(&self) -> u64 {
        be64(&self.0.as_ref()[field::SPI_R])
    }
    pub fn next_payload(&self) -> u8 {
        self.0.as_ref()[field::NEXT_PAYLOAD]
    }
    pub fn major_version(&self) -> u8 {
        self.0.as_ref()[field::VERSION] >> 4
    }
    pub fn minor_version(&self) -> u8 {
        self.0.as_ref()[field::VERSION] & 0x0f
    }
    pub fn exchange_type(&self) -> ExchangeType {
        ExchangeType(self.0.as_ref()[field::EXCHANGE])
    }
    pub fn flags(&self) -> u8 {
        self.0.as_ref()[field::FLAGS]
    }
    pub fn message_id(&self) -> u32 {
        be32(&self.0.as_ref()[field::MESSAGE_ID])
    }
    pub fn length(&self) -> u32 {
        be32(&self.0.as_ref()[field::LENGTH])
    }
    /// The bytes after the header (the payload chain, if the length field is right).
    pub fn payload(&self) -> &[u8] {
        &self.0.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HeaderPacket<T> {
    pub fn set_next_payload(&mut self, v: u8) {
        self.0.as_mut()[field::NEXT_PAYLOAD] = v;
    }
    pub fn set_length(&mut self, v: u32) {
        self.0.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
}

/// The owned IKE header.
///
/// `next_payload` and `length` are what was received; [`super::Message::emit`] recomputes both
/// from the payloads, and [`Header::emit`] writes them as they are. The minor version and the
/// flag bits other than Initiator and Response are not kept: they are ignored on receipt and
/// sent as zero (RFC 7296 section 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: u8,
    pub exchange: ExchangeType,
    /// Initiator flag: the sender is the original initiator of the IKE SA.
    pub initiator: bool,
    /// Response flag.
    pub response: bool,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// Reads a header, refusing a major version other than 2.
    pub fn parse<T: AsRef<[u8]>>(packet: &HeaderPacket<T>) -> Result<Header, WireError> {
        // RFC 7296 section 3.1: "Implementations based on this version of IKE MUST reject or
        // ignore messages containing a version number greater than 2" (2.5: INVALID_MAJOR_VERSION),
        // and the minor version "MUST [be] ignore[d]" on receipt.
        if packet.major_version() != MAJOR_VERSION {
            return Err(WireError::UnsupportedMajorVersion {
                major: packet.major_version(),
                minor: packet.minor_version(),
            });
        }
        let f = packet.flags();
        Ok(Header {
            spi_i: packet.spi_i(),
            spi_r: packet.spi_r(),
            next_payload: packet.next_payload(),
            exchange: packet.exchange_type(),
            initiator: f & flags::INITIATOR != 0,
            response: f & flags::RESPONSE != 0,
            message_id: packet.message_id(),
            length: packet.length(),
        })
    }

    /// The flags octet as sent: Initiator and Response only.
    pub fn flags(&self) -> u8 {
        (if self.initiator { flags::INITIATOR } else { 0 }) | (if self.response { flags::RESPONSE } else { 0 })
    }

    /// The 28 header bytes, version 2.0, with `next_payload` and `length` as they are.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::SPI_I].copy_from_slice(&self.spi_i.to_be_bytes());
        b[field::SPI_R].copy_from_slice(&self.spi_r.to_be_bytes());
        b[field::NEXT_PAYLOAD] = self.next_payload;
        b[field::VERSION] = MAJOR_VERSION << 4;
        b[field::EXCHANGE] = self.exchange.0;
        b[field::FLAGS] = self.flags();
        b[field::MESSAGE_ID].copy_from_slice(&self.message_id.to_be_bytes());
        b[field::LENGTH].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Appends the header bytes to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// strongSwan 5.9.8's IKE_SA_INIT response with INVALID_KE_PAYLOAD (tests/vectors/cert_02).
    const INVALID_KE: &str = "15b23d03d394e72600000000000000002920222000000000000000260000000a000000110013";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn reads_a_real_header() {
        let b = hex(INVALID_KE);
        let p = HeaderPacket::new_checked(&b[..]).unwrap();
        let h = Header::parse(&p).unwrap();
        assert_eq!(h.spi_i, 0x15b2_3d03_d394_e726);
        assert_eq!(h.spi_r, 0);
        assert_eq!(h.next_payload, 41);
        assert_eq!(h.exchange, ExchangeType::IKE_SA_INIT);
        assert!(h.response && !h.initiator);
        assert_eq!(h.message_id, 0);
        assert_eq!(h.length, 38);
        assert_eq!(h.to_bytes()[..], b[..HEADER_LEN]);
    }

    #[test]
    fn version_checks() {
        let mut b = hex(INVALID_KE);
        // Minor version and the Version flag are ignored, and not reproduced.
        b[17] = 0x27;
        b[19] |= flags::VERSION | 0x01;
        let h = Header::parse(&HeaderPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(h.to_bytes()[17], 0x20);
        assert_eq!(h.to_bytes()[19], flags::RESPONSE);
        // Major version 3 is refused, but the view still reads the SPI for the answer.
        b[17] = 0x30;
        let p = HeaderPacket::new_checked(&b[..]).unwrap();
        assert_eq!(Header::parse(&p), Err(WireError::UnsupportedMajorVersion { major: 3, minor: 0 }));
        assert_eq!(p.spi_i(), 0x15b2_3d03_d394_e726);
        let e = Header::parse(&p).unwrap_err().to_string();
        assert!(e.contains("major version 3"), "{e}");
    }

    #[test]
    fn short_buffer() {
        assert_eq!(HeaderPacket::new_checked(&[0u8; 27][..]).unwrap_err(), WireError::HeaderTruncated { len: 27 });
    }
}
