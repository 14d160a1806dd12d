//! Key derivation: the IKE SA (RFC 7296 2.14), a rekeyed IKE SA (2.18) and
//! Child SAs (2.17), for the ENCR/INTEG transforms offered here.

use super::prf::PrfAlg;
use super::sk::SkCipher;
use super::{CryptoError, Secret};

/// Encryption transforms offered (Transform Type 1), for IKE and ESP alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_AES_CBC (12, RFC 3602); needs an INTEG transform.
    AesCbc,
    /// ENCR_AES_GCM_16 (20, RFC 4106 / RFC 5282): AEAD with a 16-byte ICV.
    AesGcm16,
}

impl EncrAlg {
    /// The IANA Transform ID.
    pub fn id(self) -> u16 {
        match self {
            EncrAlg::AesCbc => 12,
            EncrAlg::AesGcm16 => 20,
        }
    }

    /// The transform for an IANA Transform ID.
    pub fn from_id(id: u16) -> Result<Self, CryptoError> {
        match id {
            12 => Ok(EncrAlg::AesCbc),
            20 => Ok(EncrAlg::AesGcm16),
            _ => Err(CryptoError::Unsupported { kind: "ENCR", id }),
        }
    }

    /// Whether the transform is an AEAD (then no INTEG transform is negotiated).
    pub fn is_aead(self) -> bool {
        matches!(self, EncrAlg::AesGcm16)
    }
}

/// Integrity transforms offered (Transform Type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// AUTH_HMAC_SHA2_256_128 (12, RFC 4868): 32-byte key, ICV truncated to 16 bytes.
    HmacSha256_128,
}

impl IntegAlg {
    /// The IANA Transform ID.
    pub fn id(self) -> u16 {
        match self {
            IntegAlg::HmacSha256_128 => 12,
        }
    }

    /// The transform for an IANA Transform ID (0, NONE, is not a transform: use `None`).
    pub fn from_id(id: u16) -> Result<Self, CryptoError> {
        match id {
            12 => Ok(IntegAlg::HmacSha256_128),
            _ => Err(CryptoError::Unsupported { kind: "INTEG", id }),
        }
    }

    /// Key length in bytes (RFC 4868 2.1.1: the hash output length).
    pub fn key_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 32,
        }
    }

    /// ICV length in bytes.
    pub fn icv_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 16,
        }
    }
}

/// A negotiated ENCR (with its Key Length attribute) and INTEG pair, checked
/// for consistency: AEAD without INTEG, AES-CBC with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CipherSuite {
    encr: EncrAlg,
    key_bits: u16,
    integ: Option<IntegAlg>,
}

/// Length of the salt that follows each AES-GCM key in the keying material
/// (RFC 4106 8.1, RFC 5282 7.1).
pub(crate) const GCM_SALT_LEN: usize = 4;

impl CipherSuite {
    /// `encr` with an AES key of `key_bits` (128 or 256) and `integ`.
    pub fn new(encr: EncrAlg, key_bits: u16, integ: Option<IntegAlg>) -> Result<Self, CryptoError> {
        if key_bits != 128 && key_bits != 256 {
            return Err(CryptoError::Unsupported { kind: "ENCR key length", id: key_bits });
        }
        match (encr.is_aead(), integ) {
            // RFC 5282 8: a proposal with an AEAD cipher carries no INTEG
            // transform, or only NONE.
            (true, Some(_)) => Err(CryptoError::InvalidSuite("AEAD cipher with an INTEG transform")),
            (false, None) => Err(CryptoError::InvalidSuite("non-AEAD cipher without an INTEG transform")),
            _ => Ok(CipherSuite { encr, key_bits, integ }),
        }
    }

    /// From IANA IDs as found in a proposal; `integ_id` 0 or `None` means no INTEG.
    pub fn from_ids(encr_id: u16, key_bits: u16, integ_id: Option<u16>) -> Result<Self, CryptoError> {
        let integ = match integ_id {
            None | Some(0) => None,
            Some(id) => Some(IntegAlg::from_id(id)?),
        };
        CipherSuite::new(EncrAlg::from_id(encr_id)?, key_bits, integ)
    }

    /// ENCR_AES_GCM_16 with a `key_bits` key.
    pub fn aes_gcm16(key_bits: u16) -> Result<Self, CryptoError> {
        CipherSuite::new(EncrAlg::AesGcm16, key_bits, None)
    }

    /// ENCR_AES_CBC with a `key_bits` key and AUTH_HMAC_SHA2_256_128.
    pub fn aes_cbc_hmac_sha256(key_bits: u16) -> Result<Self, CryptoError> {
        CipherSuite::new(EncrAlg::AesCbc, key_bits, Some(IntegAlg::HmacSha256_128))
    }

    /// The encryption transform.
    pub fn encr(&self) -> EncrAlg {
        self.encr
    }

    /// The AES key length in bits (the Key Length attribute).
    pub fn key_bits(&self) -> u16 {
        self.key_bits
    }

    /// The integrity transform, `None` for AEAD.
    pub fn integ(&self) -> Option<IntegAlg> {
        self.integ
    }

    /// Bytes of keying material per encryption key: the AES key, plus the
    /// 4-byte salt for AES-GCM (RFC 5282 7.1, RFC 4106 8.1).
    pub fn encr_key_len(&self) -> usize {
        let key = usize::from(self.key_bits / 8);
        if self.encr.is_aead() { key + GCM_SALT_LEN } else { key }
    }

    /// Bytes of keying material per integrity key (0 for AEAD).
    pub fn integ_key_len(&self) -> usize {
        self.integ.map_or(0, IntegAlg::key_len)
    }
}

/// The seven secrets of an IKE SA (RFC 7296 2.14), with the suite they are for.
#[derive(Debug, Clone)]
pub struct IkeSaKeys {
    /// The IKE SA's PRF.
    pub prf: PrfAlg,
    /// The IKE SA's ENCR/INTEG.
    pub cipher: CipherSuite,
    /// Derives Child SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: Secret,
    /// INTEG key for messages from the original initiator (empty for AEAD).
    pub sk_ai: Secret,
    /// INTEG key for messages from the original responder (empty for AEAD).
    pub sk_ar: Secret,
    /// ENCR key (with salt for GCM) for messages from the original initiator.
    pub sk_ei: Secret,
    /// ENCR key (with salt for GCM) for messages from the original responder.
    pub sk_er: Secret,
    /// Used in the initiator's AUTH payload.
    pub sk_pi: Secret,
    /// Used in the responder's AUTH payload.
    pub sk_pr: Secret,
}

impl IkeSaKeys {
    /// The cipher protecting messages sent by the original initiator.
    pub fn initiator_sk(&self) -> Result<SkCipher, CryptoError> {
        SkCipher::new(self.cipher, &self.sk_ei, &self.sk_ai)
    }

    /// The cipher protecting messages sent by the original responder.
    pub fn responder_sk(&self) -> Result<SkCipher, CryptoError> {
        SkCipher::new(self.cipher, &self.sk_er, &self.sk_ar)
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) and the IKE SA keys from it (RFC 7296 2.14).
///
/// `shared` is g^ir as [`super::DhPrivate::shared`] returns it; `ni` and `nr`
/// are the nonces without payload headers; SPIs are as in the IKE header.
pub fn derive_ike_sa_keys(
    prf: PrfAlg,
    cipher: CipherSuite,
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> Result<IkeSaKeys, CryptoError> {
    // The PRFs here take variable-length keys, so all of Ni | Nr is the key
    // (the 64-bit truncation of 2.14 is only for AES-XCBC/CMAC).
    let nonces = [ni, nr].concat();
    let skeyseed = prf.prf(&nonces, shared);
    expand_ike_sa_keys(prf, cipher, &skeyseed, ni, nr, spi_i, spi_r)
}

/// Keys for an IKE SA rekeyed with CREATE_CHILD_SA (RFC 7296 2.18):
/// SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old IKE SA's
/// PRF; the seven keys then come from prf+ as in 2.14, with the new SA's PRF,
/// SPIs and nonces (RFC 7296 2.18, last paragraph).
///
/// strongSwan 5.9 runs prf+ with the old SA's PRF as well; the two agree
/// whenever the rekey keeps the PRF, which is the usual case.
#[allow(clippy::too_many_arguments)]
pub fn derive_rekeyed_ike_sa_keys(
    old_prf: PrfAlg,
    old_sk_d: &[u8],
    prf: PrfAlg,
    cipher: CipherSuite,
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> Result<IkeSaKeys, CryptoError> {
    // RFC 7296 2.18: "Because the rekeying exchange belongs to the old IKE SA,
    // it is the old IKE SA's PRF that is used to generate SKEYSEED."
    let skeyseed = old_prf.prf_parts(old_sk_d, &[shared, ni, nr]);
    expand_ike_sa_keys(prf, cipher, &skeyseed, ni, nr, spi_i, spi_r)
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
fn expand_ike_sa_keys(
    prf: PrfAlg,
    cipher: CipherSuite,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> Result<IkeSaKeys, CryptoError> {
    let seed = [ni, nr, spi_i, spi_r].concat();
    // 2.14: SK_d, SK_pi and SK_pr have the PRF's preferred key length.
    let (d, a, e) = (prf.key_len(), cipher.integ_key_len(), cipher.encr_key_len());
    let lens = [d, a, a, e, e, d, d];
    let keymat = prf.prf_plus(skeyseed, &seed, lens.iter().sum())?;
    let mut parts = keymat.split(&lens).expect("prf+ returned the requested length").into_iter();
    let mut next = || parts.next().expect("seven parts");
    Ok(IkeSaKeys {
        prf,
        cipher,
        sk_d: next(),
        sk_ai: next(),
        sk_ar: next(),
        sk_ei: next(),
        sk_er: next(),
        sk_pi: next(),
        sk_pr: next(),
    })
}

/// The keys of one ESP SA (one direction).
#[derive(Debug, Clone)]
pub struct EspKeys {
    /// The encryption key; for AES-GCM the AES key followed by the 4-byte salt.
    pub encr: Secret,
    /// The integrity key (empty for AEAD).
    pub integ: Secret,
}

impl EspKeys {
    /// The AES key alone (without the GCM salt).
    pub fn aes_key(&self, cipher: &CipherSuite) -> &[u8] {
        &self.encr[..usize::from(cipher.key_bits() / 8)]
    }

    /// The GCM salt (RFC 4106 4), empty for non-AEAD ciphers.
    pub fn salt(&self, cipher: &CipherSuite) -> &[u8] {
        &self.encr[usize::from(cipher.key_bits() / 8)..]
    }
}

/// Keying material of an ESP Child SA pair (RFC 7296 2.17).
#[derive(Debug, Clone)]
pub struct ChildSaKeys {
    /// The negotiated ESP ENCR/INTEG.
    pub cipher: CipherSuite,
    /// Keys of the SA carrying traffic from the initiator to the responder.
    pub initiator_to_responder: EspKeys,
    /// Keys of the SA carrying traffic from the responder to the initiator.
    pub responder_to_initiator: EspKeys,
}

impl ChildSaKeys {
    /// Keys for the SA this end sends on.
    pub fn outbound(&self, we_are_initiator: bool) -> &EspKeys {
        if we_are_initiator { &self.initiator_to_responder } else { &self.responder_to_initiator }
    }

    /// Keys for the SA this end receives on.
    pub fn inbound(&self, we_are_initiator: bool) -> &EspKeys {
        self.outbound(!we_are_initiator)
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) split into the two ESP SAs
/// (RFC 7296 2.17): initiator-to-responder first, and within each SA the
/// encryption key before the integrity key.
///
/// `shared` is the CREATE_CHILD_SA's own Diffie-Hellman result when it has a
/// KE payload (PFS), `None` otherwise; `ni` and `nr` are the nonces of the
/// IKE_SA_INIT for the first Child SA, or of the CREATE_CHILD_SA.
pub fn derive_child_sa_keys(
    prf: PrfAlg,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    cipher: CipherSuite,
) -> Result<ChildSaKeys, CryptoError> {
    // The seed holds g^ir: keep it in a wiped buffer.
    let seed = Secret::new([shared.unwrap_or(&[]), ni, nr].concat());
    let (e, a) = (cipher.encr_key_len(), cipher.integ_key_len());
    let keymat = prf.prf_plus(sk_d, &seed, 2 * (e + a))?;
    let mut parts = keymat.split(&[e, a, e, a]).expect("prf+ returned the requested length").into_iter();
    let mut next = || parts.next().expect("four parts");
    Ok(ChildSaKeys {
        cipher,
        initiator_to_responder: EspKeys { encr: next(), integ: next() },
        responder_to_initiator: EspKeys { encr: next(), integ: next() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_checked() {
        assert!(CipherSuite::aes_gcm16(128).is_ok());
        assert!(CipherSuite::aes_cbc_hmac_sha256(256).is_ok());
        assert_eq!(
            CipherSuite::aes_gcm16(192).unwrap_err(),
            CryptoError::Unsupported { kind: "ENCR key length", id: 192 }
        );
        assert!(matches!(
            CipherSuite::new(EncrAlg::AesGcm16, 128, Some(IntegAlg::HmacSha256_128)),
            Err(CryptoError::InvalidSuite(_))
        ));
        assert!(matches!(CipherSuite::new(EncrAlg::AesCbc, 128, None), Err(CryptoError::InvalidSuite(_))));
        assert_eq!(CipherSuite::from_ids(20, 256, Some(0)), CipherSuite::aes_gcm16(256));
        assert_eq!(CipherSuite::from_ids(12, 128, Some(12)), CipherSuite::aes_cbc_hmac_sha256(128));
        assert!(CipherSuite::from_ids(3, 128, Some(12)).is_err());
        assert!(CipherSuite::from_ids(12, 128, Some(2)).is_err());
    }

    #[test]
    fn key_lengths() {
        let gcm = CipherSuite::aes_gcm16(256).unwrap();
        assert_eq!((gcm.encr_key_len(), gcm.integ_key_len()), (36, 0));
        let cbc = CipherSuite::aes_cbc_hmac_sha256(128).unwrap();
        assert_eq!((cbc.encr_key_len(), cbc.integ_key_len()), (16, 32));
    }

    #[test]
    fn ike_keys_are_consecutive_prf_plus_output() {
        let cbc = CipherSuite::aes_cbc_hmac_sha256(128).unwrap();
        let (ni, nr, spi_i, spi_r) = ([1u8; 32], [2u8; 32], [3u8; 8], [4u8; 8]);
        let keys = derive_ike_sa_keys(PrfAlg::HmacSha384, cbc, b"g^ir", &ni, &nr, &spi_i, &spi_r).unwrap();
        let skeyseed = PrfAlg::HmacSha384.prf(&[ni, nr].concat(), b"g^ir");
        let all = PrfAlg::HmacSha384
            .prf_plus(&skeyseed, &[&ni[..], &nr, &spi_i, &spi_r].concat(), 48 + 32 + 32 + 16 + 16 + 48 + 48)
            .unwrap();
        let joined =
            [keys.sk_d.expose(), &keys.sk_ai, &keys.sk_ar, &keys.sk_ei, &keys.sk_er, &keys.sk_pi, &keys.sk_pr].concat();
        assert_eq!(joined, all.expose());
        assert_eq!(keys.sk_ei.len(), 16);
        // Nothing secret in Debug output.
        let shown = format!("{keys:?}");
        assert!(shown.contains("sk_d: Secret(48 bytes)"), "{shown}");
    }

    #[test]
    fn child_keys_split_initiator_first() {
        let gcm = CipherSuite::aes_gcm16(128).unwrap();
        let keys = derive_child_sa_keys(PrfAlg::HmacSha256, b"skd", None, b"ni", b"nr", gcm).unwrap();
        let all = PrfAlg::HmacSha256.prf_plus(b"skd", b"ninr", 40).unwrap();
        assert_eq!(keys.initiator_to_responder.encr.expose(), &all[..20]);
        assert_eq!(keys.responder_to_initiator.encr.expose(), &all[20..]);
        assert!(keys.initiator_to_responder.integ.is_empty());
        assert_eq!(keys.outbound(false).encr.expose(), &all[20..]);
        assert_eq!(keys.inbound(false).encr.expose(), &all[..20]);
        assert_eq!(keys.initiator_to_responder.salt(&gcm), &all[16..20]);
        assert_eq!(keys.initiator_to_responder.aes_key(&gcm), &all[..16]);
        // With PFS, g^ir comes first in the seed.
        let pfs = derive_child_sa_keys(PrfAlg::HmacSha256, b"skd", Some(b"gir"), b"ni", b"nr", gcm).unwrap();
        let all = PrfAlg::HmacSha256.prf_plus(b"skd", b"girninr", 40).unwrap();
        assert_eq!(pfs.initiator_to_responder.encr.expose(), &all[..20]);
    }
}
