//! Pseudorandom functions (Transform Type 2) and prf+ (RFC 7296 2.13).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

use super::{CryptoError, Secret};

/// The PRF transforms offered, by IANA Transform Type 2 ID.
///
/// All are HMAC with SHA-2 as in RFC 4868: any key length is accepted, and
/// the preferred key length equals the output length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlg {
    /// Every offered PRF, strongest last.
    pub const ALL: [PrfAlg; 3] = [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512];

    /// The IANA Transform ID.
    pub fn id(self) -> u16 {
        match self {
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
            PrfAlg::HmacSha512 => 7,
        }
    }

    /// The PRF for an IANA Transform ID.
    pub fn from_id(id: u16) -> Result<Self, CryptoError> {
        match id {
            5 => Ok(PrfAlg::HmacSha256),
            6 => Ok(PrfAlg::HmacSha384),
            7 => Ok(PrfAlg::HmacSha512),
            _ => Err(CryptoError::Unsupported { kind: "PRF", id }),
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            PrfAlg::HmacSha256 => 32,
            PrfAlg::HmacSha384 => 48,
            PrfAlg::HmacSha512 => 64,
        }
    }

    /// The preferred key length, which is the length of SK_d, SK_pi and SK_pr
    /// (RFC 7296 2.14; RFC 4868 2.1.2: the output length for HMAC-SHA-2).
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    /// prf(key, data).
    pub fn prf(self, key: &[u8], data: &[u8]) -> Secret {
        self.prf_parts(key, &[data])
    }

    /// prf(key, part0 | part1 | ...), without building the concatenation.
    pub fn prf_parts(self, key: &[u8], parts: &[&[u8]]) -> Secret {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Secret {
            // HMAC takes keys of any length (RFC 2104 2), so this cannot fail.
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
            for part in parts {
                mac.update(part);
            }
            Secret::from_slice(&mac.finalize().into_bytes())
        }
        match self {
            PrfAlg::HmacSha256 => run::<Hmac<Sha256>>(key, parts),
            PrfAlg::HmacSha384 => run::<Hmac<Sha384>>(key, parts),
            PrfAlg::HmacSha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    /// prf+(key, seed) truncated to `len` bytes (RFC 7296 2.13):
    ///
    /// ```text
    /// prf+ (K,S) = T1 | T2 | T3 | T4 | ...
    /// T1 = prf (K, S | 0x01)
    /// T2 = prf (K, T1 | S | 0x02)
    /// ```
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Result<Secret, CryptoError> {
        // RFC 7296 2.13: "The prf+ function is not defined beyond 255 times the
        // size of the prf function output."
        if len > 255 * self.output_len() {
            return Err(CryptoError::PrfPlusTooLong(len));
        }
        let mut out = Vec::with_capacity(len + self.output_len());
        let mut previous = Secret::default();
        let mut counter = 1u8;
        while out.len() < len {
            let block = self.prf_parts(key, &[previous.expose(), seed, &[counter]]);
            out.extend_from_slice(&block);
            previous = block;
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        Ok(Secret::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for alg in PrfAlg::ALL {
            assert_eq!(PrfAlg::from_id(alg.id()), Ok(alg));
        }
        assert_eq!(PrfAlg::from_id(2), Err(CryptoError::Unsupported { kind: "PRF", id: 2 }));
    }

    #[test]
    fn prf_plus_first_block_is_prf_of_seed_and_one() {
        for alg in PrfAlg::ALL {
            let t1 = alg.prf(b"key", b"seed\x01");
            let t2 = alg.prf_parts(b"key", &[&t1, b"seed", &[2]]);
            let out = alg.prf_plus(b"key", b"seed", 2 * alg.output_len()).unwrap();
            assert_eq!(&out[..alg.output_len()], t1.expose());
            assert_eq!(&out[alg.output_len()..], t2.expose());
            // Shorter output is a prefix.
            let short = alg.prf_plus(b"key", b"seed", 5).unwrap();
            assert_eq!(short.expose(), &out[..5]);
        }
    }

    #[test]
    fn prf_plus_limit_is_255_blocks() {
        let alg = PrfAlg::HmacSha256;
        assert_eq!(alg.prf_plus(b"k", b"s", 255 * 32).unwrap().len(), 255 * 32);
        assert_eq!(alg.prf_plus(b"k", b"s", 255 * 32 + 1).unwrap_err(), CryptoError::PrfPlusTooLong(8161));
        assert!(alg.prf_plus(b"k", b"s", 0).unwrap().is_empty());
    }

    #[test]
    fn prf_parts_equals_concatenation() {
        let alg = PrfAlg::HmacSha384;
        assert_eq!(alg.prf_parts(b"k", &[b"ab", b"", b"cd"]).expose(), alg.prf(b"k", b"abcd").expose());
    }
}
