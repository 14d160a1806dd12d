use super::payload_type;

/// Why bytes are not an IKEv2 message, or why a representation cannot be emitted.
///
/// The state machine maps these to its answer: [`WireError::UnsupportedMajorVersion`] to
/// INVALID_MAJOR_VERSION, [`WireError::UnsupportedCriticalPayload`] to
/// UNSUPPORTED_CRITICAL_PAYLOAD (with the type as notification data), everything else from
/// parsing to INVALID_SYNTAX or a silent drop (RFC 7296 section 2.21).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{len} bytes cannot hold the 28-byte IKE header")]
    HeaderTruncated { len: usize },

    /// RFC 7296 section 3.1: a major version other than 2 is answered with
    /// INVALID_MAJOR_VERSION (section 2.5); the minor version is ignored.
    #[error("IKE major version {major}.{minor} is not supported (this is IKEv2)")]
    UnsupportedMajorVersion { major: u8, minor: u8 },

    #[error("IKE header says the message is {header} bytes but the datagram holds {actual}")]
    LengthMismatch { header: u32, actual: usize },

    #[error(
        "{} payload at offset {offset}: {available} bytes left, fewer than its 4-byte generic header",
        payload_type::name(*payload_type)
    )]
    PayloadHeaderTruncated { payload_type: u8, offset: usize, available: usize },

    #[error(
        "{} payload at offset {offset}: length {length} is shorter than its 4-byte generic header",
        payload_type::name(*payload_type)
    )]
    PayloadTooShort { payload_type: u8, offset: usize, length: u16 },

    #[error(
        "{} payload at offset {offset}: length {length} runs past the end ({available} bytes left)",
        payload_type::name(*payload_type)
    )]
    PayloadOverrun { payload_type: u8, offset: usize, length: u16, available: usize },

    /// RFC 7296 section 2.5: an unrecognised payload with the Critical bit set; the answer is
    /// UNSUPPORTED_CRITICAL_PAYLOAD carrying this type.
    #[error("unsupported critical payload type {payload_type}")]
    UnsupportedCriticalPayload { payload_type: u8 },

    #[error("{count} payloads in one chain, more than the {max} accepted")]
    TooManyPayloads { count: usize, max: usize },

    #[error("{count} bytes after the last payload")]
    TrailingBytes { count: usize },

    #[error("malformed {} payload: {reason}", payload_type::name(*payload_type))]
    Malformed { payload_type: u8, reason: &'static str },

    /// A locally built representation whose field does not fit its wire width (a payload over
    /// 65535 bytes, more than 255 transforms, ...), or an SK payload that is not last.
    #[error("cannot emit: {what}")]
    Unencodable { what: &'static str },
}
