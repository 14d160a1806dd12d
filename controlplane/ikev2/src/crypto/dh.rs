//! Diffie-Hellman groups (Transform Type 4) and their peer checks.
//!
//! Public values are encoded as the KE payload carries them: MODP as the
//! modulus-length big-endian integer (RFC 7296 3.4), NIST curves as x | y
//! without the SEC1 0x04 prefix (RFC 5903 7), Curve25519 as the 32-byte
//! u-coordinate (RFC 8031 3). Shared secrets are the octet strings RFC 7296
//! 2.14 feeds to SKEYSEED: the modulus-length g^ir, the x-coordinate, or the
//! X25519 output.

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U2048};
use p256::elliptic_curve::sec1::ToSec1Point;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::rng::Rng;
use super::{CryptoError, Secret};

/// The Diffie-Hellman groups offered, by IANA Transform Type 4 ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group (14, RFC 3526 3).
    Modp2048,
    /// 256-bit random ECP group, NIST P-256 (19, RFC 5903).
    Ecp256,
    /// 384-bit random ECP group, NIST P-384 (20, RFC 5903).
    Ecp384,
    /// Curve25519 (31, RFC 8031).
    Curve25519,
}

impl DhGroup {
    /// Every offered group.
    pub const ALL: [DhGroup; 4] = [DhGroup::Modp2048, DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Curve25519];

    /// The IANA Transform ID (the Diffie-Hellman Group Num of the KE payload).
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Curve25519 => 31,
        }
    }

    /// The group for an IANA Transform ID.
    pub fn from_id(id: u16) -> Result<Self, CryptoError> {
        match id {
            14 => Ok(DhGroup::Modp2048),
            19 => Ok(DhGroup::Ecp256),
            20 => Ok(DhGroup::Ecp384),
            31 => Ok(DhGroup::Curve25519),
            _ => Err(CryptoError::Unsupported { kind: "DH", id }),
        }
    }

    /// Length of the private value drawn from the RNG by [`DhPrivate::generate`].
    pub fn private_len(self) -> usize {
        match self {
            // 384-bit exponents, as strongSwan uses for group 14: NIST SP 800-56A
            // rev. 3 5.6.1.1.4 asks for at least twice the 112-bit strength.
            DhGroup::Modp2048 => MODP_EXPONENT_BYTES,
            DhGroup::Ecp256 | DhGroup::Curve25519 => 32,
            DhGroup::Ecp384 => 48,
        }
    }
}

/// Length in bytes of the KE payload's Key Exchange Data for `group`.
pub fn dh_public_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp2048 => 256,
        DhGroup::Ecp256 => 64,
        DhGroup::Ecp384 => 96,
        DhGroup::Curve25519 => 32,
    }
}

const MODP_EXPONENT_BYTES: usize = 48;

/// The RFC 3526 section 3 prime, p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }.
/// Its generator is 2.
const MODP_2048_P: Odd<U2048> = Odd::<U2048>::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// An ephemeral Diffie-Hellman private key with its public value.
pub struct DhPrivate {
    group: DhGroup,
    key: Key,
    public: Vec<u8>,
}

enum Key {
    Modp(Box<Zeroizing<U2048>>),
    Ecp256(p256::SecretKey),
    Ecp384(p384::SecretKey),
    X25519(x25519_dalek::StaticSecret),
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhPrivate").field("group", &self.group).finish_non_exhaustive()
    }
}

impl DhPrivate {
    /// Draws [`DhGroup::private_len`] bytes from `rng` (again if they are not
    /// a valid private key) and computes the public value.
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; group.private_len()]);
        loop {
            rng.fill(&mut bytes);
            match Self::from_private_bytes(group, &bytes) {
                Err(CryptoError::InvalidPrivateKey) => continue,
                other => return other,
            }
        }
    }

    /// A private key from its big-endian encoding (for X25519 the 32-byte
    /// scalar of RFC 7748, clamped when used). For fixed test values; real
    /// keys come from [`DhPrivate::generate`].
    ///
    /// MODP takes 1 to 256 bytes; the exponent must be non-zero. The curves
    /// take exactly their scalar length; NIST scalars must be in 1..n.
    pub fn from_private_bytes(group: DhGroup, bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad_len = CryptoError::InvalidKeyLength { expected: group.private_len(), got: bytes.len() };
        let (key, public) = match group {
            DhGroup::Modp2048 => {
                if bytes.is_empty() || bytes.len() > 256 {
                    return Err(bad_len);
                }
                let x = Box::new(Zeroizing::new(uint_from_be(bytes)));
                if bool::from(x.is_zero()) {
                    return Err(CryptoError::InvalidPrivateKey);
                }
                let public = modp_pow(&U2048::from_u8(2), &x, exponent_bits(bytes.len()));
                (Key::Modp(x), public.to_vec())
            }
            DhGroup::Ecp256 => {
                if bytes.len() != 32 {
                    return Err(bad_len);
                }
                let sk = p256::SecretKey::from_slice(bytes).map_err(|_| CryptoError::InvalidPrivateKey)?;
                let point = sk.public_key().to_sec1_point(false);
                // Drop the SEC1 0x04 tag: RFC 5903 7 sends x | y only.
                let public = point.as_bytes()[1..].to_vec();
                (Key::Ecp256(sk), public)
            }
            DhGroup::Ecp384 => {
                if bytes.len() != 48 {
                    return Err(bad_len);
                }
                let sk = p384::SecretKey::from_slice(bytes).map_err(|_| CryptoError::InvalidPrivateKey)?;
                let point = sk.public_key().to_sec1_point(false);
                let public = point.as_bytes()[1..].to_vec();
                (Key::Ecp384(sk), public)
            }
            DhGroup::Curve25519 => {
                let scalar: [u8; 32] = bytes.try_into().map_err(|_| bad_len)?;
                let secret = x25519_dalek::StaticSecret::from(scalar);
                let public = x25519_dalek::PublicKey::from(&secret).to_bytes().to_vec();
                (Key::X25519(secret), public)
            }
        };
        Ok(DhPrivate { group, key, public })
    }

    /// The group this key belongs to.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The public value, as carried in the KE payload.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// g^ir from the peer's KE data, after checking the peer's value.
    pub fn shared(&self, peer_public: &[u8]) -> Result<Secret, CryptoError> {
        // RFC 7296 3.4: the Key Exchange Data has exactly the group's length.
        if peer_public.len() != dh_public_len(self.group) {
            return Err(CryptoError::InvalidPublicValue);
        }
        match &self.key {
            Key::Modp(x) => {
                let y = uint_from_be(peer_public);
                // NIST SP 800-56A rev. 3 5.6.2.3.1 (RFC 6989 2.2 for groups with
                // safe primes): 1 < y < p-1, which also rules out values >= p.
                // Both sides are public, so variable-time comparison is fine.
                let p_minus_1 = MODP_2048_P.as_ref().wrapping_sub(&U2048::ONE);
                if y.cmp_vartime(&U2048::ONE).is_le() || y.cmp_vartime(&p_minus_1).is_ge() {
                    return Err(CryptoError::InvalidPublicValue);
                }
                let z = modp_pow(&y, x, exponent_bits(256));
                // SP 800-56A 5.7.1.1: a shared secret of 1 is an error.
                if z.as_ref().ct_eq(U2048::ONE.to_be_bytes().as_ref()).into() {
                    return Err(CryptoError::InvalidSharedSecret);
                }
                // RFC 7296 2.14: g^ir padded with zeros to the modulus length,
                // which the fixed-size encoding already is.
                Ok(Secret::from_slice(z.as_ref()))
            }
            Key::Ecp256(sk) => {
                let pk = decode_point::<p256::NistP256>(peer_public)?;
                let shared = sk.diffie_hellman(&pk);
                // RFC 5903 7: the shared secret is the x-coordinate only.
                Ok(Secret::from_slice(shared.raw_secret_bytes()))
            }
            Key::Ecp384(sk) => {
                let pk = decode_point::<p384::NistP384>(peer_public)?;
                let shared = sk.diffie_hellman(&pk);
                Ok(Secret::from_slice(shared.raw_secret_bytes()))
            }
            Key::X25519(secret) => {
                let bytes: [u8; 32] = peer_public.try_into().map_err(|_| CryptoError::InvalidPublicValue)?;
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(bytes));
                // RFC 8031 2: "MUST check whether the computed Diffie-Hellman
                // shared secret is the all-zero value and abort if so".
                if shared.as_bytes().ct_eq(&[0u8; 32]).into() {
                    return Err(CryptoError::InvalidSharedSecret);
                }
                Ok(Secret::from_slice(shared.as_bytes()))
            }
        }
    }
}

/// The peer's x | y as a curve point. RFC 6989 2.3 (and RFC 5903 7): the
/// recipient MUST check that the point is on the curve. SEC1 decoding does
/// that (y^2 = x^3 + ax + b, coordinates below p) and refuses the identity.
fn decode_point<C>(xy: &[u8]) -> Result<p256::elliptic_curve::PublicKey<C>, CryptoError>
where
    C: p256::elliptic_curve::CurveArithmetic,
    p256::elliptic_curve::FieldBytesSize<C>: p256::elliptic_curve::sec1::ModulusSize,
    p256::elliptic_curve::AffinePoint<C>:
        p256::elliptic_curve::sec1::FromSec1Point<C> + p256::elliptic_curve::sec1::ToSec1Point<C>,
{
    let mut sec1 = Vec::with_capacity(xy.len() + 1);
    sec1.push(0x04);
    sec1.extend_from_slice(xy);
    p256::elliptic_curve::PublicKey::<C>::from_sec1_bytes(&sec1).map_err(|_| CryptoError::InvalidPublicValue)
}

/// A big-endian byte string of at most 256 bytes as a 2048-bit integer.
fn uint_from_be(bytes: &[u8]) -> U2048 {
    let mut padded = Zeroizing::new([0u8; 256]);
    padded[256 - bytes.len()..].copy_from_slice(bytes);
    U2048::from_be_slice(&padded[..])
}

/// Exponent bit length passed to the ladder: fixed per key length, so the
/// running time does not depend on the exponent's value.
fn exponent_bits(len: usize) -> u32 {
    (len * 8) as u32
}

/// base^exp mod p in constant time with respect to `exp` (crypto-bigint's
/// fixed-window Montgomery ladder over the low `exp_bits` bits).
fn modp_pow(base: &U2048, exp: &U2048, exp_bits: u32) -> Zeroizing<[u8; 256]> {
    // The modulus is public: the variable-time parameter setup is fine.
    let params = FixedMontyParams::new_vartime(MODP_2048_P);
    let result = FixedMontyForm::new(base, &params).pow_bounded_exp(exp, exp_bits).retrieve();
    let mut out = Zeroizing::new([0u8; 256]);
    out.copy_from_slice(result.to_be_bytes().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rng::SeededRng;

    #[test]
    fn ids_and_lengths() {
        for g in DhGroup::ALL {
            assert_eq!(DhGroup::from_id(g.id()), Ok(g));
        }
        assert!(DhGroup::from_id(2).is_err());
        assert_eq!(dh_public_len(DhGroup::Ecp384), 96);
    }

    #[test]
    fn every_group_agrees_with_itself() {
        let mut rng = SeededRng::new(b"dh agreement");
        for g in DhGroup::ALL {
            let a = DhPrivate::generate(g, &mut rng).unwrap();
            let b = DhPrivate::generate(g, &mut rng).unwrap();
            assert_eq!(a.public().len(), dh_public_len(g), "{g:?}");
            let ab = a.shared(b.public()).unwrap();
            let ba = b.shared(a.public()).unwrap();
            assert_eq!(ab.expose(), ba.expose(), "{g:?}");
            let expected_len = match g {
                DhGroup::Modp2048 => 256,
                DhGroup::Ecp256 | DhGroup::Curve25519 => 32,
                DhGroup::Ecp384 => 48,
            };
            assert_eq!(ab.len(), expected_len);
            // Wrong lengths are refused before any arithmetic.
            assert_eq!(a.shared(&b.public()[1..]).unwrap_err(), CryptoError::InvalidPublicValue);
        }
    }

    #[test]
    fn modp_rejects_degenerate_and_out_of_range_values() {
        let a = DhPrivate::generate(DhGroup::Modp2048, &mut SeededRng::new(b"modp")).unwrap();
        let p = MODP_2048_P.as_ref().to_be_bytes();
        let mut values: Vec<Vec<u8>> = vec![vec![0; 256], vec![0xff; 256], p.to_vec()];
        let mut one = vec![0; 256];
        one[255] = 1;
        values.push(one);
        let mut p_minus_1 = p.to_vec();
        p_minus_1[255] -= 1; // p is odd
        values.push(p_minus_1);
        for v in &values {
            assert_eq!(a.shared(v).unwrap_err(), CryptoError::InvalidPublicValue);
        }
        // 2 and p-2 are in range.
        let mut two = vec![0; 256];
        two[255] = 2;
        assert!(a.shared(&two).is_ok());
        let mut p_minus_2 = p.to_vec();
        p_minus_2[255] -= 2;
        assert!(a.shared(&p_minus_2).is_ok());
        // g^x with g = 2 is the public value itself.
        assert_eq!(a.shared(&two).unwrap().expose(), a.public());
    }

    #[test]
    fn ecp_rejects_points_off_the_curve() {
        let mut rng = SeededRng::new(b"ecp");
        for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let a = DhPrivate::generate(g, &mut rng).unwrap();
            let b = DhPrivate::generate(g, &mut rng).unwrap();
            let mut bad = b.public().to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1; // y no longer matches x
            assert_eq!(a.shared(&bad).unwrap_err(), CryptoError::InvalidPublicValue);
            // The all-zero encoding is not a point either.
            assert_eq!(a.shared(&vec![0; bad.len()]).unwrap_err(), CryptoError::InvalidPublicValue);
            // Coordinates >= p are refused.
            assert_eq!(a.shared(&vec![0xff; bad.len()]).unwrap_err(), CryptoError::InvalidPublicValue);
        }
    }

    #[test]
    fn x25519_rejects_low_order_points() {
        let a = DhPrivate::generate(DhGroup::Curve25519, &mut SeededRng::new(b"x")).unwrap();
        // u = 0 and u = 1 are of small order: the result is all-zero (RFC 7748 6.1).
        let mut one = [0u8; 32];
        one[0] = 1;
        for u in [[0u8; 32], one] {
            assert_eq!(a.shared(&u).unwrap_err(), CryptoError::InvalidSharedSecret);
        }
    }

    #[test]
    fn private_values_are_validated() {
        assert_eq!(
            DhPrivate::from_private_bytes(DhGroup::Ecp256, &[0; 32]).unwrap_err(),
            CryptoError::InvalidPrivateKey
        );
        assert_eq!(
            DhPrivate::from_private_bytes(DhGroup::Ecp256, &[0xff; 32]).unwrap_err(),
            CryptoError::InvalidPrivateKey
        );
        assert_eq!(
            DhPrivate::from_private_bytes(DhGroup::Modp2048, &[0; 48]).unwrap_err(),
            CryptoError::InvalidPrivateKey
        );
        assert!(matches!(
            DhPrivate::from_private_bytes(DhGroup::Curve25519, &[1; 31]),
            Err(CryptoError::InvalidKeyLength { expected: 32, got: 31 })
        ));
        // generate() skips invalid draws: an all-0xff P-256 scalar is >= n.
        let mut bytes = vec![0xff; 32];
        bytes.extend_from_slice(&[0x11; 32]);
        let k = DhPrivate::generate(DhGroup::Ecp256, &mut crate::crypto::FixedRng::new(bytes)).unwrap();
        let direct = DhPrivate::from_private_bytes(DhGroup::Ecp256, &[0x11; 32]).unwrap();
        assert_eq!(k.public(), direct.public());
    }

    #[test]
    fn debug_hides_the_key() {
        let a = DhPrivate::from_private_bytes(DhGroup::Curve25519, &[0x5a; 32]).unwrap();
        assert_eq!(format!("{a:?}"), "DhPrivate { group: Curve25519, .. }");
    }
}
