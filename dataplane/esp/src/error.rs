//! Why the ESP stages reject a packet. Each variant becomes one per-core drop counter in the
//! dataplane, so the descriptions are written for an operator reading counters.

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum EspError {
    #[error("packet shorter than the headers it claims")]
    Truncated,
    #[error("malformed outer IP header (version, length or checksum)")]
    BadOuterHeader,
    #[error("outer IP header is a fragment (reassembly is not supported)")]
    OuterFragment,
    #[error("not an ESP packet")]
    NotEsp,
    #[error("ESP payload length not a multiple of 4 or too short for IV, trailer and ICV")]
    BadLength,
    #[error("sequence number already received (replay)")]
    ReplayDuplicate,
    #[error("sequence number left of the anti-replay window")]
    ReplayTooOld,
    #[error("integrity check (AES-GCM ICV) failed")]
    AuthFailed,
    #[error("pad length longer than the decrypted payload")]
    BadPadLength,
    #[error("padding bytes are not 1, 2, 3, ... (RFC 4303 2.4)")]
    BadPadding,
    #[error("dummy packet (next header 59), discarded per RFC 4303 2.6")]
    DummyPacket,
    #[error("next header is neither IPv4 nor IPv6 in tunnel mode")]
    BadNextHeader,
    #[error("decrypted inner IP packet is malformed")]
    BadInnerPacket,
    #[error("outbound sequence number space exhausted; the SA needs a rekey (RFC 4303 3.3.3)")]
    SeqExhausted,
    #[error("no head- or tailroom in the buffer for the ESP headers")]
    NoRoom,
    #[error("congestion experienced on the outer header of a packet that is not ECN-capable (RFC 6040 4.2)")]
    CongestionOnNotEct,
}
