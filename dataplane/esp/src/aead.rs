//! The AEAD the ESP stages call, behind a trait so that other backends can stand in for the
//! pure-Rust `aes-gcm` one: AWS-LC (`aws-lc` feature) here, intel-ipsec-mb from the dataplane
//! (which owns the FFI) through [`Backend::External`]. [`Cipher`] dispatches with a `match`,
//! so the built-in backends are called directly, without a virtual call.
//!
//! RFC 4106: AES-GCM with a 16-octet ICV, a 12-octet nonce made of the 4-octet salt from the key
//! material and the 8-octet explicit IV carried in each packet.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the ICV appended to every ESP packet (RFC 4106 section 6, 16-octet ICV).
pub const ICV_LEN: usize = 16;
/// Length of the explicit IV carried in each packet (RFC 4106 section 3.1).
pub const IV_LEN: usize = 8;
/// Length of the salt taken from the end of the key material (RFC 4106 section 8.1).
pub const SALT_LEN: usize = 4;

/// The ICV did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthError;

/// An AEAD with a 12-octet nonce and a 16-octet tag, sealing and opening in place.
pub trait Aead: Send + Sync {
    /// Encrypts `buf` in place and returns the tag over `aad` and the ciphertext.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; ICV_LEN];
    /// Verifies `tag` and only then decrypts `buf` in place; on failure `buf` is unchanged.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; ICV_LEN]) -> Result<(), AuthError>;
    /// [`Self::open`] with the tag in the last [`ICV_LEN`] octets of `buf`, as ESP carries it
    /// (RFC 4303 2.8): backends that read it in place need no copy. On failure the contents
    /// of `buf` are unspecified (AWS-LC clears them): the caller drops the packet.
    fn open_appended(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<(), AuthError> {
        let at = buf.len().checked_sub(ICV_LEN).ok_or(AuthError)?;
        let (data, tag) = buf.split_at_mut(at);
        let tag: [u8; ICV_LEN] = (&*tag).try_into().map_err(|_| AuthError)?;
        self.open(nonce, aad, data, &tag)
    }
    /// Where the key state that sealing or opening a short packet reads lies, as up to two
    /// (start, bytes) ranges, for a caller that wants it in cache before a burst needs it
    /// (with thousands of SAs it is in no cache). Addresses only, never dereferenced by
    /// anyone: prefetching them is a hint that cannot fault. By default the whole cipher.
    fn key_state(&self) -> [(*const u8, usize); 2] {
        [((self as *const Self).cast(), core::mem::size_of_val(self)), (core::ptr::null(), 0)]
    }
}

/// Which implementation of AES-GCM an SA uses. Backends compare by name.
#[derive(Clone, Copy, Debug, Default)]
pub enum Backend {
    /// RustCrypto `aes-gcm`: pure Rust, AES-NI and CLMUL (or VAES) detected at run time.
    #[default]
    RustCrypto,
    /// AWS-LC through `aws-lc-rs` (feature `aws-lc`).
    AwsLc,
    /// A backend from outside this crate: its name and how it makes a cipher from a key.
    External(&'static str, fn(&KeyMaterial) -> Box<dyn Aead>),
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Backend {}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::RustCrypto => "aes-gcm",
            Backend::AwsLc => "aws-lc",
            Backend::External(name, _) => name,
        }
    }

    /// Whether this build has it.
    pub fn available(self) -> bool {
        match self {
            Backend::AwsLc => cfg!(feature = "aws-lc"),
            _ => true,
        }
    }
}

/// An SA's AES-GCM, from one of the backends. Each core gets its own (a clone builds a new
/// key schedule, from the key material kept for it and zeroized on drop): a worker's key
/// state stays in its own caches and no backend has to be safe for concurrent use of one key.
pub enum Cipher {
    RustCrypto(AesGcm),
    #[cfg(feature = "aws-lc")]
    AwsLc(AwsLcGcm, KeyMaterial),
    External(Box<dyn Aead>, KeyMaterial, fn(&KeyMaterial) -> Box<dyn Aead>),
}

impl Clone for Cipher {
    fn clone(&self) -> Self {
        match self {
            Cipher::RustCrypto(c) => Cipher::RustCrypto(c.clone()),
            #[cfg(feature = "aws-lc")]
            Cipher::AwsLc(_, km) => Cipher::AwsLc(AwsLcGcm::new(km), km.clone()),
            Cipher::External(_, km, make) => Cipher::External(make(km), km.clone(), *make),
        }
    }
}

impl Cipher {
    /// The cipher for `km` from `backend`; a backend this build lacks falls back to RustCrypto.
    pub fn new(backend: Backend, km: &KeyMaterial) -> Self {
        match backend {
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => Cipher::AwsLc(AwsLcGcm::new(km), km.clone()),
            Backend::External(_, make) => Cipher::External(make(km), km.clone(), make),
            _ => Cipher::RustCrypto(AesGcm::new(km)),
        }
    }
}

impl core::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Cipher::RustCrypto(c) => c.fmt(f),
            #[cfg(feature = "aws-lc")]
            Cipher::AwsLc(..) => f.write_str("AwsLcGcm(<redacted>)"),
            Cipher::External(..) => f.write_str("ExternalGcm(<redacted>)"),
        }
    }
}

impl Aead for Cipher {
    #[inline]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; ICV_LEN] {
        match self {
            Cipher::RustCrypto(c) => c.seal(nonce, aad, buf),
            #[cfg(feature = "aws-lc")]
            Cipher::AwsLc(c, _) => c.seal(nonce, aad, buf),
            Cipher::External(c, ..) => c.seal(nonce, aad, buf),
        }
    }

    #[inline]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; ICV_LEN]) -> Result<(), AuthError> {
        match self {
            Cipher::RustCrypto(c) => c.open(nonce, aad, buf, tag),
            #[cfg(feature = "aws-lc")]
            Cipher::AwsLc(c, _) => c.open(nonce, aad, buf, tag),
            Cipher::External(c, ..) => c.open(nonce, aad, buf, tag),
        }
    }

    #[inline]
    fn open_appended(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<(), AuthError> {
        match self {
            Cipher::RustCrypto(c) => c.open_appended(nonce, aad, buf),
            #[cfg(feature = "aws-lc")]
            Cipher::AwsLc(c, _) => c.open_appended(nonce, aad, buf),
            Cipher::External(c, ..) => c.open_appended(nonce, aad, buf),
        }
    }

    #[inline]
    fn key_state(&self) -> [(*const u8, usize); 2] {
        match self {
            Cipher::RustCrypto(c) => c.key_state(),
            #[cfg(feature = "aws-lc")]
            Cipher::AwsLc(c, _) => c.key_state(),
            Cipher::External(c, ..) => c.key_state(),
        }
    }
}

/// AES-GCM from AWS-LC. AWS-LC keeps the expanded key and cleanses it when the key is freed.
#[cfg(feature = "aws-lc")]
pub struct AwsLcGcm {
    key: aws_lc_rs::aead::LessSafeKey,
}

#[cfg(feature = "aws-lc")]
impl AwsLcGcm {
    pub fn new(km: &KeyMaterial) -> Self {
        use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, LessSafeKey, UnboundKey};
        let alg = match km.key_len() {
            GcmKeyLen::Aes128 => &AES_128_GCM,
            GcmKeyLen::Aes256 => &AES_256_GCM,
        };
        // The key length matches the algorithm by construction of KeyMaterial.
        let key = UnboundKey::new(alg, km.key()).expect("AES key of the algorithm's length");
        AwsLcGcm { key: LessSafeKey::new(key) }
    }
}

#[cfg(feature = "aws-lc")]
impl Aead for AwsLcGcm {
    #[inline(never)]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; ICV_LEN] {
        use aws_lc_rs::aead::{Aad, Nonce};
        let tag = self.key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf);
        // Only fails for inputs over the GCM limit, which no packet reaches.
        tag.ok().and_then(|t| t.as_ref().try_into().ok()).unwrap_or([0; ICV_LEN])
    }

    #[inline(never)]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; ICV_LEN]) -> Result<(), AuthError> {
        use aws_lc_rs::aead::{Aad, Nonce};
        // AWS-LC decrypts into a separate buffer only after the tag verified: `buf` stays as it
        // is on failure.
        let mut plain = vec![0u8; buf.len()];
        self.key
            .open_separate_gather(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf, tag, &mut plain)
            .map_err(|_| AuthError)?;
        buf.copy_from_slice(&plain);
        Ok(())
    }

    #[inline(never)]
    fn open_appended(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<(), AuthError> {
        use aws_lc_rs::aead::{Aad, Nonce};
        self.key
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map(|_| ())
            .map_err(|_| AuthError)
    }
}

/// AES key sizes for AES-GCM-16 (IKEv2 transform ENCR_AES_GCM_16 with 128 or 256 bit keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GcmKeyLen {
    Aes128,
    Aes256,
}

impl GcmKeyLen {
    pub fn key_len(self) -> usize {
        match self {
            GcmKeyLen::Aes128 => 16,
            GcmKeyLen::Aes256 => 32,
        }
    }
}

/// SA key material as negotiated or configured: the AES key followed by the 4-octet salt
/// (RFC 4106 section 8.1). Zeroized on drop; its `Debug` never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial {
    bytes: Vec<u8>,
}

impl KeyMaterial {
    /// Key and salt as separate pieces; the lengths are checked.
    pub fn new(len: GcmKeyLen, key: &[u8], salt: &[u8]) -> Result<Self, &'static str> {
        if key.len() != len.key_len() {
            return Err("key length does not match the algorithm (16 bytes for AES-128, 32 for AES-256)");
        }
        if salt.len() != SALT_LEN {
            return Err("salt must be 4 bytes (RFC 4106 section 8.1)");
        }
        let mut bytes = Vec::with_capacity(key.len() + SALT_LEN);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(salt);
        Ok(KeyMaterial { bytes })
    }

    pub fn key_len(&self) -> GcmKeyLen {
        if self.bytes.len() == 16 + SALT_LEN { GcmKeyLen::Aes128 } else { GcmKeyLen::Aes256 }
    }
    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SALT_LEN]
    }
    pub fn salt(&self) -> [u8; SALT_LEN] {
        let n = self.bytes.len();
        [self.bytes[n - 4], self.bytes[n - 3], self.bytes[n - 2], self.bytes[n - 1]]
    }
}

impl core::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyMaterial({:?}, <redacted>)", self.key_len())
    }
}

/// AES-GCM from the RustCrypto `aes-gcm` crate; it picks AES-NI/VAES and CLMUL at run time.
/// The expanded key is zeroized when dropped (crate feature `zeroize`).
#[derive(Clone)]
pub enum AesGcm {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl AesGcm {
    pub fn new(km: &KeyMaterial) -> Self {
        // Copy the key into a zeroizing temporary: the cipher constructors take fixed-size arrays.
        match km.key_len() {
            GcmKeyLen::Aes128 => {
                let mut k = Zeroizing::new([0u8; 16]);
                k.copy_from_slice(km.key());
                AesGcm::Aes128(Box::new(Aes128Gcm::new(&(*k).into())))
            }
            GcmKeyLen::Aes256 => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(km.key());
                AesGcm::Aes256(Box::new(Aes256Gcm::new(&(*k).into())))
            }
        }
    }
}

impl core::fmt::Debug for AesGcm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AesGcm::Aes128(_) => f.write_str("AesGcm128(<redacted>)"),
            AesGcm::Aes256(_) => f.write_str("AesGcm256(<redacted>)"),
        }
    }
}

impl Aead for AesGcm {
    // Out of line (here and for AWS-LC): inlined into `Cipher`'s dispatch, this cipher's code
    // made that function save and restore six registers and a stack frame on every call,
    // which the intel-ipsec-mb arm paid too (about 10 instructions a 64-byte packet outbound,
    // 4 inbound).
    #[inline(never)]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; ICV_LEN] {
        let nonce = Nonce::from(*nonce);
        let tag = match self {
            AesGcm::Aes128(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
            AesGcm::Aes256(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
        };
        // Only fails for buffers over 2^36 bytes, which no packet is.
        tag.map(Into::into).unwrap_or([0; ICV_LEN])
    }

    #[inline(never)]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; ICV_LEN]) -> Result<(), AuthError> {
        let nonce = Nonce::from(*nonce);
        let tag = Tag::from(*tag);
        match self {
            AesGcm::Aes128(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            AesGcm::Aes256(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
        }
        .map_err(|_| AuthError)
    }

    #[inline]
    fn key_state(&self) -> [(*const u8, usize); 2] {
        let whole = match self {
            AesGcm::Aes128(c) => ((&raw const **c).cast(), core::mem::size_of::<Aes128Gcm>()),
            AesGcm::Aes256(c) => ((&raw const **c).cast(), core::mem::size_of::<Aes256Gcm>()),
        };
        [whole, (core::ptr::null(), 0)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // NIST GCM spec (McGrew & Viega, "The Galois/Counter Mode of Operation"), Test Case 4:
    // 128-bit key, 96-bit IV, 60-byte plaintext, 20-byte AAD.
    #[test]
    fn gcm_spec_test_case_4() {
        let key = unhex("feffe9928665731c6d6a8f9467308308");
        let iv: [u8; 12] = unhex("cafebabefacedbaddecaf888").try_into().unwrap();
        let mut pt = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let km = KeyMaterial::new(GcmKeyLen::Aes128, &key, &[0; 4]).unwrap();
        let c = AesGcm::new(&km);
        let tag = c.seal(&iv, &aad, &mut pt);
        assert_eq!(
            pt,
            unhex(
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
            )
        );
        assert_eq!(tag.to_vec(), unhex("5bc94fbc3221a5db94fae95ae7121a47"));
        let mut bad = tag;
        bad[0] ^= 1;
        let copy = pt.clone();
        assert_eq!(c.open(&iv, &aad, &mut pt, &bad), Err(AuthError));
        assert_eq!(pt, copy, "a failed open leaves the ciphertext untouched");
        c.open(&iv, &aad, &mut pt, &tag).unwrap();
        assert_eq!(&pt[..4], &unhex("d9313225")[..]);
    }

    /// Every built-in backend gives the same ciphertext and tag, opens the others' output,
    /// and refuses a bad tag.
    #[test]
    fn backends_agree() {
        let backends = [Backend::RustCrypto, Backend::AwsLc];
        for len in [GcmKeyLen::Aes128, GcmKeyLen::Aes256] {
            let km = KeyMaterial::new(len, &vec![0x42; len.key_len()][..], &[9, 8, 7, 6]).unwrap();
            for size in [0, 1, 15, 16, 17, 64, 1420, 9000] {
                let plain: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
                let nonce = [3u8; 12];
                let aad = [1u8, 2, 3, 4, 5, 6, 7, 8];
                let sealed: Vec<(Vec<u8>, [u8; ICV_LEN])> = backends
                    .iter()
                    .map(|&b| {
                        let mut buf = plain.clone();
                        let tag = Cipher::new(b, &km).seal(&nonce, &aad, &mut buf);
                        (buf, tag)
                    })
                    .collect();
                assert!(sealed.windows(2).all(|w| w[0] == w[1]), "{len:?} {size}");
                for &b in &backends {
                    let c = Cipher::new(b, &km);
                    let (ct, tag) = &sealed[0];
                    let mut buf = ct.clone();
                    c.open(&nonce, &aad, &mut buf, tag).unwrap();
                    assert_eq!(buf, plain, "{} open", b.name());
                    let mut appended = [ct.as_slice(), tag].concat();
                    c.open_appended(&nonce, &aad, &mut appended).unwrap();
                    assert_eq!(&appended[..size], &plain[..], "{} open_appended", b.name());
                    let mut bad = [ct.as_slice(), tag].concat();
                    *bad.last_mut().unwrap() ^= 1;
                    assert_eq!(c.open_appended(&nonce, &aad, &mut bad), Err(AuthError));
                    let mut buf = ct.clone();
                    let mut t = *tag;
                    t[0] ^= 1;
                    assert_eq!(c.open(&nonce, &aad, &mut buf, &t), Err(AuthError));
                    assert_eq!(&buf, ct, "{}: a failed open leaves the buffer as it was", b.name());
                }
            }
        }
        assert_eq!(Backend::AwsLc.available(), cfg!(feature = "aws-lc"));
    }

    #[test]
    fn key_material_checks_lengths_and_hides_bytes() {
        assert!(KeyMaterial::new(GcmKeyLen::Aes128, &[1; 32], &[0; 4]).is_err());
        assert!(KeyMaterial::new(GcmKeyLen::Aes256, &[1; 32], &[0; 3]).is_err());
        let km = KeyMaterial::new(GcmKeyLen::Aes256, &[0xab; 32], &[1, 2, 3, 4]).unwrap();
        assert_eq!(km.salt(), [1, 2, 3, 4]);
        assert_eq!(km.key(), &[0xab; 32]);
        let shown = format!("{km:?} {:?}", AesGcm::new(&km));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
