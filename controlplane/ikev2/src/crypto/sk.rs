//! Protection of the Encrypted payload (RFC 7296 3.14; RFC 5282 for AEAD).
//!
//! The body of an SK payload (after its 4-byte generic header) is
//!
//! ```text
//! IV | E(inner payloads | Padding | Pad Length) | ICV
//! ```
//!
//! `aad` below is always the message from the first octet of the IKE header
//! through the last octet of the SK payload's generic header, i.e. everything
//! before the IV. For AES-GCM it is the associated data (RFC 5282 5.1); for
//! AES-CBC the ICV is the truncated HMAC over `aad | IV | ciphertext`, "the
//! whole message, from the first octet of the IKE header through the end of
//! the encrypted data" (RFC 7296 3.14). Since the SK payload length inside
//! `aad` covers the ciphertext, callers size it first with
//! [`SkCipher::encrypted_len`].

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::keys::{CipherSuite, EncrAlg, GCM_SALT_LEN};
use super::rng::Rng;
use super::{CryptoError, Secret};

/// GCM ICV length for ENCR_AES_GCM_16.
const GCM_ICV_LEN: usize = 16;
/// The explicit IV of AES-GCM in IKEv2 (RFC 5282 3.1).
const GCM_IV_LEN: usize = 8;
const AES_BLOCK: usize = 16;

/// Encrypts and decrypts SK payload bodies for one direction of an IKE SA.
pub struct SkCipher {
    suite: CipherSuite,
    inner: Inner,
}

enum Inner {
    Gcm128 { aead: Box<Aes128Gcm>, salt: [u8; GCM_SALT_LEN] },
    Gcm256 { aead: Box<Aes256Gcm>, salt: [u8; GCM_SALT_LEN] },
    Cbc { key: Secret, integ: Secret },
}

impl std::fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkCipher").field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl SkCipher {
    /// A cipher for `suite` from SK_e (with the 4-byte salt appended for GCM)
    /// and SK_a (empty for GCM), as [`super::IkeSaKeys`] holds them.
    pub fn new(suite: CipherSuite, encr_key: &[u8], integ_key: &[u8]) -> Result<Self, CryptoError> {
        if encr_key.len() != suite.encr_key_len() {
            return Err(CryptoError::InvalidKeyLength { expected: suite.encr_key_len(), got: encr_key.len() });
        }
        if integ_key.len() != suite.integ_key_len() {
            return Err(CryptoError::InvalidKeyLength { expected: suite.integ_key_len(), got: integ_key.len() });
        }
        let key_len = usize::from(suite.key_bits() / 8);
        let inner = match suite.encr() {
            EncrAlg::AesGcm16 => {
                let (key, salt_bytes) = encr_key.split_at(key_len);
                let mut salt = [0; GCM_SALT_LEN];
                salt.copy_from_slice(salt_bytes);
                let bad_key = |_| CryptoError::InvalidKeyLength { expected: key_len, got: key.len() };
                match suite.key_bits() {
                    128 => Inner::Gcm128 { aead: Box::new(Aes128Gcm::new_from_slice(key).map_err(bad_key)?), salt },
                    _ => Inner::Gcm256 { aead: Box::new(Aes256Gcm::new_from_slice(key).map_err(bad_key)?), salt },
                }
            }
            EncrAlg::AesCbc => Inner::Cbc { key: Secret::from_slice(encr_key), integ: Secret::from_slice(integ_key) },
        };
        Ok(SkCipher { suite, inner })
    }

    /// The suite this cipher was built for.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// Length of the IV at the start of the body.
    pub fn iv_len(&self) -> usize {
        match self.inner {
            Inner::Gcm128 { .. } | Inner::Gcm256 { .. } => GCM_IV_LEN,
            Inner::Cbc { .. } => AES_BLOCK,
        }
    }

    /// Length of the ICV at the end of the body.
    pub fn icv_len(&self) -> usize {
        match self.inner {
            Inner::Gcm128 { .. } | Inner::Gcm256 { .. } => GCM_ICV_LEN,
            Inner::Cbc { .. } => self.suite.integ().map_or(0, |i| i.icv_len()),
        }
    }

    /// The length the encrypted part must be a multiple of: AES-CBC's block;
    /// 1 for GCM, which needs no padding (only the Pad Length byte).
    pub fn block_len(&self) -> usize {
        match self.inner {
            Inner::Gcm128 { .. } | Inner::Gcm256 { .. } => 1,
            Inner::Cbc { .. } => AES_BLOCK,
        }
    }

    /// Length of `inner payloads | Padding | Pad Length` for `plaintext_len`
    /// bytes of payloads: the least that holds the Pad Length byte and fills
    /// whole blocks.
    fn padded_len(&self, plaintext_len: usize) -> usize {
        (plaintext_len + 1).div_ceil(self.block_len()) * self.block_len()
    }

    /// Length of the SK payload body (IV, encrypted data, ICV) for
    /// `plaintext_len` bytes of inner payloads.
    pub fn encrypted_len(&self, plaintext_len: usize) -> usize {
        self.iv_len() + self.padded_len(plaintext_len) + self.icv_len()
    }

    /// What encryption adds to `plaintext_len` bytes of payloads.
    pub fn overhead(&self, plaintext_len: usize) -> usize {
        self.encrypted_len(plaintext_len) - plaintext_len
    }

    /// The SK payload body for `plaintext` (the inner payloads), with a fresh
    /// IV from `rng` and zero padding; the Pad Length byte follows the padding.
    ///
    /// AES-CBC's IV must be unpredictable (RFC 7296 3.14) and a GCM IV must
    /// never repeat under one key (RFC 5282 3.1): both come from `rng`, so use
    /// a cryptographic generator outside tests. (A random 64-bit GCM IV
    /// repeats after about 2^32 messages; an IKE SA sends far fewer.)
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8], rng: &mut dyn Rng) -> Vec<u8> {
        let mut iv = vec![0u8; self.iv_len()];
        rng.fill(&mut iv);
        let padded_len = self.padded_len(plaintext.len());
        let pad_len = padded_len - plaintext.len() - 1;
        let mut data = Vec::with_capacity(padded_len);
        data.extend_from_slice(plaintext);
        // RFC 7296 3.14: "The Padding MAY contain any value chosen by the sender".
        data.resize(padded_len - 1, 0);
        // At most block_len - 1 bytes of padding, so it fits in the byte.
        data.push(pad_len as u8);
        let sealed = self.seal(&iv, aad, &data).expect("IV and padded length are right by construction");
        let mut body = iv;
        body.extend_from_slice(&sealed);
        body
    }

    /// The inner payloads from an SK payload body, after checking the ICV
    /// (before decrypting, for AES-CBC) and the Pad Length.
    pub fn decrypt(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if body.len() < self.iv_len() + self.icv_len() {
            return Err(CryptoError::MalformedCiphertext);
        }
        let (iv, sealed) = body.split_at(self.iv_len());
        let mut data = self.open(iv, aad, sealed)?;
        // RFC 7296 3.14: the Pad Length byte is always present and counts the
        // padding before it, so it must fit in what was decrypted.
        let pad_len = usize::from(*data.last().ok_or(CryptoError::InvalidPadding)?);
        if pad_len + 1 > data.len() {
            return Err(CryptoError::InvalidPadding);
        }
        data.truncate(data.len() - pad_len - 1);
        Ok(data)
    }

    /// The cipher without IKE's padding rules: encrypts `data` (for AES-CBC a
    /// whole number of blocks) under `iv` and returns `ciphertext | ICV`.
    /// [`SkCipher::encrypt`] is this plus padding; exposed for known-answer tests.
    pub fn seal(&self, iv: &[u8], aad: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::MalformedCiphertext);
        }
        let mut buf = data.to_vec();
        match &self.inner {
            Inner::Gcm128 { aead, salt } => {
                let tag = aead
                    .encrypt_inout_detached(&gcm_nonce(salt, iv), aad, buf.as_mut_slice().into())
                    .map_err(|_| CryptoError::MalformedCiphertext)?;
                buf.extend_from_slice(&tag);
            }
            Inner::Gcm256 { aead, salt } => {
                let tag = aead
                    .encrypt_inout_detached(&gcm_nonce(salt, iv), aad, buf.as_mut_slice().into())
                    .map_err(|_| CryptoError::MalformedCiphertext)?;
                buf.extend_from_slice(&tag);
            }
            Inner::Cbc { key, integ } => {
                if buf.is_empty() || !buf.len().is_multiple_of(AES_BLOCK) {
                    return Err(CryptoError::MalformedCiphertext);
                }
                let len = buf.len();
                match key.len() {
                    16 => cbc_encryptor::<aes::Aes128>(key, iv)?.encrypt_padded::<NoPadding>(&mut buf, len),
                    _ => cbc_encryptor::<aes::Aes256>(key, iv)?.encrypt_padded::<NoPadding>(&mut buf, len),
                }
                .map_err(|_| CryptoError::MalformedCiphertext)?;
                let icv = cbc_icv(integ, &[aad, iv, &buf]);
                buf.extend_from_slice(&icv[..self.icv_len()]);
            }
        }
        Ok(buf)
    }

    /// Inverse of [`SkCipher::seal`]: checks the ICV, then returns the decrypted data.
    pub fn open(&self, iv: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if iv.len() != self.iv_len() || sealed.len() < self.icv_len() {
            return Err(CryptoError::MalformedCiphertext);
        }
        let (ciphertext, icv) = sealed.split_at(sealed.len() - self.icv_len());
        let mut buf = ciphertext.to_vec();
        match &self.inner {
            Inner::Gcm128 { aead, salt } => {
                let tag = gcm_tag(icv);
                aead.decrypt_inout_detached(&gcm_nonce(salt, iv), aad, buf.as_mut_slice().into(), &tag)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
            }
            Inner::Gcm256 { aead, salt } => {
                let tag = gcm_tag(icv);
                aead.decrypt_inout_detached(&gcm_nonce(salt, iv), aad, buf.as_mut_slice().into(), &tag)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
            }
            Inner::Cbc { key, integ } => {
                if buf.is_empty() || !buf.len().is_multiple_of(AES_BLOCK) {
                    return Err(CryptoError::MalformedCiphertext);
                }
                // Encrypt-then-MAC: authenticate before touching the ciphertext.
                let mut mac =
                    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(integ).expect("HMAC accepts any key length");
                for part in [aad, iv, ciphertext] {
                    mac.update(part);
                }
                // Constant-time comparison of the truncated ICV (RFC 4868 2.1.1).
                mac.verify_truncated_left(icv).map_err(|_| CryptoError::IntegrityCheckFailed)?;
                let len = match key.len() {
                    16 => cbc_decryptor::<aes::Aes128>(key, iv)?.decrypt_padded::<NoPadding>(&mut buf),
                    _ => cbc_decryptor::<aes::Aes256>(key, iv)?.decrypt_padded::<NoPadding>(&mut buf),
                }
                .map_err(|_| CryptoError::MalformedCiphertext)?
                .len();
                buf.truncate(len);
            }
        }
        Ok(buf)
    }
}

/// RFC 5282 4 / RFC 4106 4: nonce = salt (4 bytes, from the keying material) | explicit IV (8 bytes).
fn gcm_nonce(salt: &[u8; GCM_SALT_LEN], iv: &[u8]) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut nonce = [0u8; 12];
    nonce[..GCM_SALT_LEN].copy_from_slice(salt);
    nonce[GCM_SALT_LEN..].copy_from_slice(iv);
    Nonce::from(nonce)
}

fn gcm_tag(icv: &[u8]) -> Tag {
    let mut tag = [0u8; GCM_ICV_LEN];
    tag.copy_from_slice(icv);
    Tag::from(tag)
}

fn cbc_encryptor<C>(key: &[u8], iv: &[u8]) -> Result<cbc::Encryptor<C>, CryptoError>
where
    C: cbc::cipher::BlockCipherEncrypt + cbc::cipher::KeyInit,
    cbc::Encryptor<C>: KeyIvInit,
{
    cbc::Encryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::InvalidKeyLength { expected: 16, got: key.len() })
}

fn cbc_decryptor<C>(key: &[u8], iv: &[u8]) -> Result<cbc::Decryptor<C>, CryptoError>
where
    C: cbc::cipher::BlockCipherDecrypt + cbc::cipher::KeyInit,
    cbc::Decryptor<C>: KeyIvInit,
{
    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::InvalidKeyLength { expected: 16, got: key.len() })
}

/// HMAC-SHA-256 over the parts (the caller truncates it to the ICV length).
fn cbc_icv(integ: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(integ).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rng::{FixedRng, SeededRng};

    fn ciphers() -> Vec<SkCipher> {
        let mut out = Vec::new();
        for bits in [128u16, 256] {
            let gcm = CipherSuite::aes_gcm16(bits).unwrap();
            out.push(SkCipher::new(gcm, &vec![7; gcm.encr_key_len()], &[]).unwrap());
            let cbc = CipherSuite::aes_cbc_hmac_sha256(bits).unwrap();
            out.push(SkCipher::new(cbc, &vec![7; cbc.encr_key_len()], &[9; 32]).unwrap());
        }
        out
    }

    #[test]
    fn round_trip_and_lengths() {
        let mut rng = SeededRng::new(b"sk");
        for c in ciphers() {
            for len in [0usize, 1, 15, 16, 17, 100] {
                let pt: Vec<u8> = (0..len as u8).collect();
                let body = c.encrypt(b"header", &pt, &mut rng);
                assert_eq!(body.len(), c.encrypted_len(len), "{c:?} {len}");
                assert_eq!(c.overhead(len), body.len() - len);
                assert_eq!(c.decrypt(b"header", &body).unwrap(), pt);
            }
        }
    }

    #[test]
    fn padding_sizes() {
        let c = &ciphers()[1]; // AES-128-CBC
        // 15 bytes + Pad Length = one block; 16 bytes need a second block.
        assert_eq!(c.encrypted_len(15), 16 + 16 + 16);
        assert_eq!(c.encrypted_len(16), 16 + 32 + 16);
        let g = &ciphers()[0]; // AES-128-GCM: only the Pad Length byte.
        assert_eq!(g.encrypted_len(15), 8 + 16 + 16);
    }

    #[test]
    fn tampering_is_detected() {
        let mut rng = SeededRng::new(b"tamper");
        for c in ciphers() {
            let body = c.encrypt(b"header", b"payloads", &mut rng);
            for i in [0, c.iv_len(), body.len() - 1] {
                let mut bad = body.clone();
                bad[i] ^= 0x80;
                assert_eq!(
                    c.decrypt(b"header", &bad).unwrap_err(),
                    CryptoError::IntegrityCheckFailed,
                    "{c:?} byte {i}"
                );
            }
            assert_eq!(c.decrypt(b"headeR", &body).unwrap_err(), CryptoError::IntegrityCheckFailed);
            assert_eq!(
                c.decrypt(b"header", &body[..c.iv_len() + c.icv_len() - 1]).unwrap_err(),
                CryptoError::MalformedCiphertext
            );
        }
    }

    #[test]
    fn pad_length_must_fit() {
        for c in ciphers() {
            let iv = vec![1; c.iv_len()];
            // One block whose last byte claims more padding than there is.
            let mut data = vec![0u8; c.block_len().max(4)];
            let last = data.len() - 1;
            data[last] = data.len() as u8;
            let sealed = c.seal(&iv, b"aad", &data).unwrap();
            let body = [iv.clone(), sealed].concat();
            assert_eq!(c.decrypt(b"aad", &body).unwrap_err(), CryptoError::InvalidPadding, "{c:?}");
            // Exactly all padding is fine: no payloads.
            data[last] = (data.len() - 1) as u8;
            let body = [iv, c.seal(&[1; 16][..c.iv_len()], b"aad", &data).unwrap()].concat();
            assert_eq!(c.decrypt(b"aad", &body).unwrap(), Vec::<u8>::new());
        }
    }

    #[test]
    fn cbc_needs_whole_blocks() {
        let c = &ciphers()[1];
        assert_eq!(c.seal(&[0; 16], b"", &[0; 15]).unwrap_err(), CryptoError::MalformedCiphertext);
        // 17 bytes of ciphertext (+ICV) are refused on their length alone.
        let body = vec![0u8; 16 + 17 + 16];
        assert_eq!(c.decrypt(b"", &body).unwrap_err(), CryptoError::MalformedCiphertext);
    }

    #[test]
    fn iv_comes_from_the_rng_first() {
        let c = &ciphers()[0];
        let body = c.encrypt(b"", b"x", &mut FixedRng::new(vec![0xAA; 8]));
        assert_eq!(&body[..8], &[0xAA; 8]);
    }

    #[test]
    fn key_lengths_are_checked() {
        let gcm = CipherSuite::aes_gcm16(128).unwrap();
        assert_eq!(
            SkCipher::new(gcm, &[0; 16], &[]).unwrap_err(),
            CryptoError::InvalidKeyLength { expected: 20, got: 16 }
        );
        let cbc = CipherSuite::aes_cbc_hmac_sha256(256).unwrap();
        assert_eq!(
            SkCipher::new(cbc, &[0; 32], &[0; 16]).unwrap_err(),
            CryptoError::InvalidKeyLength { expected: 32, got: 16 }
        );
        assert!(format!("{:?}", SkCipher::new(gcm, &[0; 20], &[]).unwrap()).starts_with("SkCipher { suite"));
    }
}
