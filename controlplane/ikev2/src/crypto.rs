//! The cryptography IKEv2 needs, behind a provider so that tests can inject
//! fixed nonces, SPIs and Diffie-Hellman values.
//!
//! - [`rng`]: the [`Rng`] and [`CryptoProvider`] traits, the OS implementation
//!   and deterministic ones for tests.
//! - [`dh`]: Diffie-Hellman groups 14 (MODP-2048), 19 and 20 (NIST P-256/P-384)
//!   and 31 (Curve25519), with the peer checks of RFC 6989 / RFC 8031.
//! - [`prf`]: PRF_HMAC_SHA2_256/384/512 and prf+ (RFC 7296 2.13).
//! - [`keys`]: SKEYSEED and the IKE SA keys (2.14), the rekeyed IKE SA (2.18)
//!   and Child SA keying material (2.17).
//! - [`sk`]: protection of the Encrypted (SK) payload (3.14, RFC 5282).
//! - [`auth`]: shared-key AUTH (2.15), NAT detection hashes (2.23), cookies (2.6).
//!
//! Every secret leaves this module in a [`Secret`], which is zeroed on drop and
//! whose `Debug` prints only its length.

pub mod auth;
pub mod dh;
pub mod keys;
pub mod prf;
pub mod rng;
pub mod sk;

mod secret;

pub use auth::{CookieSecret, cookie_version, ct_eq, nat_detection_hash, psk_auth, signed_octets, verify_psk_auth};
pub use dh::{DhGroup, DhPrivate, dh_public_len};
pub use keys::{
    ChildSaKeys, CipherSuite, EncrAlg, EspKeys, IkeSaKeys, IntegAlg, derive_child_sa_keys, derive_ike_sa_keys,
    derive_rekeyed_ike_sa_keys,
};
pub use prf::PrfAlg;
pub use rng::{CryptoProvider, FixedRng, OsRng, Rng, SeededRng, SystemProvider, TestProvider};
pub use secret::Secret;
pub use sk::SkCipher;

/// Why a cryptographic operation failed.
///
/// The variants carry no secret material, so they can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A transform ID (or Key Length attribute) that this implementation does not offer.
    #[error("unsupported {kind} transform {id}")]
    Unsupported {
        /// "ENCR", "PRF", "INTEG" or "DH".
        kind: &'static str,
        /// The IANA transform ID, or the key length in bits for "ENCR key length".
        id: u16,
    },
    /// A transform combination that makes no sense, such as AES-GCM with an INTEG transform.
    #[error("invalid transform combination: {0}")]
    InvalidSuite(&'static str),
    /// A key of the wrong length was handed to a cipher.
    #[error("key of {got} bytes where {expected} are needed")]
    InvalidKeyLength {
        /// The length required by the transform.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A private value out of range (zero, or a NIST scalar not below the group order).
    #[error("invalid Diffie-Hellman private value")]
    InvalidPrivateKey,
    /// The peer's public value has the wrong length, is not on the curve or is out of range.
    #[error("invalid Diffie-Hellman public value")]
    InvalidPublicValue,
    /// The Diffie-Hellman result is degenerate (all-zero for Curve25519, 1 for MODP).
    #[error("degenerate Diffie-Hellman shared secret")]
    InvalidSharedSecret,
    /// prf+ was asked for more than 255 blocks of output (RFC 7296 2.13).
    #[error("prf+ output of {0} bytes is too long")]
    PrfPlusTooLong(usize),
    /// The Encrypted payload body is too short or not a whole number of cipher blocks.
    #[error("malformed Encrypted payload body")]
    MalformedCiphertext,
    /// The ICV (AEAD tag or HMAC) does not match: the message was altered or the key is wrong.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The Pad Length byte points outside the decrypted data.
    #[error("invalid padding")]
    InvalidPadding,
}
