//! Shared-key authentication (RFC 7296 2.15), NAT detection hashes (2.23) and
//! stateless cookies (2.6).

use std::net::IpAddr;

use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Secret;
use super::prf::PrfAlg;
use super::rng::Rng;

/// Compares two byte strings in time independent of their contents (the
/// lengths are not secret and are compared first).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The octets an AUTH payload signs or MACs (RFC 7296 2.15):
///
/// ```text
/// InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
/// MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
/// ```
///
/// and symmetrically for the responder (RealMessage2, NonceIData, SK_pr).
/// `real_message` is the signer's first message (IKE_SA_INIT request or
/// response) exactly as sent, `peer_nonce` the other side's Nonce Data,
/// `sk_p` the signer's SK_pi or SK_pr, and `id_payload_body` the signer's ID
/// payload without its 4-byte generic header (ID Type, RESERVED, data).
pub fn signed_octets(
    real_message: &[u8],
    peer_nonce: &[u8],
    prf: PrfAlg,
    sk_p: &[u8],
    id_payload_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.prf(sk_p, id_payload_body);
    [real_message, peer_nonce, maced_id.expose()].concat()
}

/// RFC 7296 2.15: "Key Pad for IKEv2", 17 ASCII characters without a terminator.
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// `AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)` for
/// the Shared Key Message Integrity Code method (2), or with the EAP MSK in
/// place of the shared secret (2.16).
pub fn psk_auth(prf: PrfAlg, psk: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let padded_key = prf.prf(psk, KEY_PAD);
    prf.prf(&padded_key, signed_octets).expose().to_vec()
}

/// Checks a received shared-key AUTH value in constant time.
pub fn verify_psk_auth(prf: PrfAlg, psk: &[u8], signed_octets: &[u8], received: &[u8]) -> bool {
    ct_eq(&psk_auth(prf, psk, signed_octets), received)
}

/// The NAT_DETECTION_SOURCE_IP / NAT_DETECTION_DESTINATION_IP data (RFC 7296
/// 2.23): SHA-1(SPIi | SPIr | IP | Port), with the SPIs as in the IKE header
/// (SPIr is zero in an IKE_SA_INIT request), the IPv4 or IPv6 address in
/// network order and the UDP port big endian.
pub fn nat_detection_hash(spi_i: &[u8; 8], spi_r: &[u8; 8], addr: IpAddr, port: u16) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(spi_i);
    h.update(spi_r);
    match addr {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(port.to_be_bytes());
    h.finalize().into()
}

/// A responder's cookie secret with its version (RFC 7296 2.6), so that
/// cookies made just before a secret change can still be recognised.
#[derive(Debug, Clone)]
pub struct CookieSecret {
    version: u32,
    secret: Secret,
}

impl CookieSecret {
    /// Length of a cookie: 4-byte version and a SHA-256 hash.
    pub const COOKIE_LEN: usize = 4 + 32;

    /// A fresh 32-byte secret with the given version number.
    pub fn generate(version: u32, rng: &mut dyn Rng) -> Self {
        let mut secret = vec![0u8; 32];
        rng.fill(&mut secret);
        CookieSecret { version, secret: Secret::new(secret) }
    }

    /// A secret from known bytes (tests, or a secret shared by a cluster).
    pub fn from_bytes(version: u32, secret: &[u8]) -> Self {
        CookieSecret { version, secret: Secret::from_slice(secret) }
    }

    /// The version number carried in the cookies this secret makes.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)`, with
    /// SHA-256 as the hash and a 32-bit big-endian version.
    pub fn make(&self, ni: &[u8], ip_i: IpAddr, spi_i: &[u8; 8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(ni);
        match ip_i {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(spi_i);
        h.update(self.secret.expose());
        let mut cookie = Vec::with_capacity(Self::COOKIE_LEN);
        cookie.extend_from_slice(&self.version.to_be_bytes());
        cookie.extend_from_slice(&h.finalize());
        cookie
    }

    /// Whether `cookie` is the one this secret makes for these values (constant time).
    pub fn verify(&self, cookie: &[u8], ni: &[u8], ip_i: IpAddr, spi_i: &[u8; 8]) -> bool {
        ct_eq(&self.make(ni, ip_i, spi_i), cookie)
    }
}

/// The secret version a received cookie claims, to choose between the
/// current and the previous [`CookieSecret`].
pub fn cookie_version(cookie: &[u8]) -> Option<u32> {
    if cookie.len() != CookieSecret::COOKIE_LEN {
        return None;
    }
    Some(u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn psk_auth_verifies_and_depends_on_everything() {
        let so = signed_octets(b"msg1", b"nonce-r", PrfAlg::HmacSha256, &[1; 32], b"\x01\x00\x00\x00\xc0\x00\x02\x01");
        assert_eq!(so.len(), 4 + 7 + 32);
        let auth = psk_auth(PrfAlg::HmacSha256, b"secret", &so);
        assert_eq!(auth.len(), 32);
        assert!(verify_psk_auth(PrfAlg::HmacSha256, b"secret", &so, &auth));
        assert!(!verify_psk_auth(PrfAlg::HmacSha256, b"Secret", &so, &auth));
        assert!(!verify_psk_auth(PrfAlg::HmacSha256, b"secret", &so[1..], &auth));
        assert!(!verify_psk_auth(PrfAlg::HmacSha256, b"secret", &so, &auth[..31]));
        // Spelled out: prf(prf(psk, "Key Pad for IKEv2"), octets).
        let inner = PrfAlg::HmacSha256.prf(b"secret", b"Key Pad for IKEv2");
        assert_eq!(auth, PrfAlg::HmacSha256.prf(&inner, &so).expose());
    }

    #[test]
    fn nat_hash_covers_family_and_port() {
        let (si, sr) = ([1; 8], [0; 8]);
        let v4 = nat_detection_hash(&si, &sr, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
        let v4_4500 = nat_detection_hash(&si, &sr, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4500);
        let v6 = nat_detection_hash(&si, &sr, IpAddr::V6(Ipv6Addr::LOCALHOST), 500);
        assert_ne!(v4, v4_4500);
        assert_ne!(v4, v6);
        let mut h = Sha1::new();
        h.update([1u8; 8]);
        h.update([0u8; 8]);
        h.update([192, 0, 2, 1, 0x01, 0xf4]);
        assert_eq!(v4, <[u8; 20]>::from(h.finalize()));
    }

    #[test]
    fn cookies_round_trip() {
        let s = CookieSecret::from_bytes(7, b"cookie secret");
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
        let c = s.make(b"ni", ip, &[5; 8]);
        assert_eq!(c.len(), CookieSecret::COOKIE_LEN);
        assert_eq!(cookie_version(&c), Some(7));
        assert!(s.verify(&c, b"ni", ip, &[5; 8]));
        assert!(!s.verify(&c, b"nj", ip, &[5; 8]));
        assert!(!s.verify(&c, b"ni", IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8)), &[5; 8]));
        assert!(!s.verify(&c, b"ni", ip, &[6; 8]));
        assert!(!CookieSecret::from_bytes(7, b"other").verify(&c, b"ni", ip, &[5; 8]));
        assert_eq!(cookie_version(&c[..35]), None);
        let fresh = CookieSecret::generate(8, &mut crate::crypto::SeededRng::new(b"c"));
        assert_eq!(fresh.version(), 8);
        assert!(!fresh.verify(&c, b"ni", ip, &[5; 8]));
    }
}
