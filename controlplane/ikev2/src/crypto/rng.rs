//! Randomness, and the provider through which the state machine gets every
//! value that tests need to fix: nonces, SPIs and Diffie-Hellman private keys.

use std::collections::VecDeque;

use super::CryptoError;
use super::dh::{DhGroup, DhPrivate};
use super::prf::PrfAlg;

/// A source of random bytes.
///
/// Infallible on purpose: an OS generator that fails leaves nothing sensible
/// to do, and the deterministic generators cannot fail.
pub trait Rng {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf)
    }
}

/// The operating system's generator (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&mut self, buf: &mut [u8]) {
        // Without entropy no key or nonce may be made; carrying on would be worse than stopping.
        getrandom::fill(buf).expect("the operating system's random number generator failed");
    }
}

/// A deterministic generator for tests and simulations: block `i` of the
/// stream is HMAC-SHA-256(seed, i as 64-bit big endian). Never use it for real keys.
#[derive(Clone)]
pub struct SeededRng {
    seed: Vec<u8>,
    counter: u64,
    block: Vec<u8>,
    used: usize,
}

impl SeededRng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: &[u8]) -> Self {
        SeededRng { seed: seed.to_vec(), counter: 0, block: Vec::new(), used: 0 }
    }
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededRng").field("counter", &self.counter).finish_non_exhaustive()
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf.iter_mut() {
            if self.used == self.block.len() {
                self.block = PrfAlg::HmacSha256.prf(&self.seed, &self.counter.to_be_bytes()).expose().to_vec();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

/// Replays the given bytes in order, to feed a published private key or IV
/// into code that draws it from an [`Rng`].
///
/// # Panics
/// When more bytes are drawn than were given: a test that runs out has
/// miscounted, and silently inventing bytes would hide that.
#[derive(Debug, Clone)]
pub struct FixedRng {
    bytes: Vec<u8>,
    at: usize,
}

impl FixedRng {
    /// A generator that yields exactly `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        FixedRng { bytes: bytes.into(), at: 0 }
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

impl Rng for FixedRng {
    fn fill(&mut self, buf: &mut [u8]) {
        let end = self.at + buf.len();
        assert!(end <= self.bytes.len(), "FixedRng exhausted: {} bytes asked, {} left", buf.len(), self.remaining());
        buf.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
    }
}

/// Where the state machine gets its randomness. Tests implement it (or use
/// [`TestProvider`]) to fix nonces, SPIs and Diffie-Hellman keys.
pub trait CryptoProvider {
    /// The generator used for everything not overridden below (IVs, padding).
    fn rng(&mut self) -> &mut dyn Rng;

    /// A fresh nonce of `len` bytes (RFC 7296 2.10: at least 16 and at least half the PRF key size).
    fn nonce(&mut self, len: usize) -> Vec<u8> {
        let mut nonce = vec![0; len];
        self.rng().fill(&mut nonce);
        nonce
    }

    /// A fresh, non-zero IKE SPI (RFC 7296 3.1: an SPI of zero means "not yet known").
    fn spi(&mut self) -> [u8; 8] {
        let mut spi = [0; 8];
        while spi == [0; 8] {
            self.rng().fill(&mut spi);
        }
        spi
    }

    /// A fresh Diffie-Hellman private key for `group`.
    fn dh_private(&mut self, group: DhGroup) -> Result<DhPrivate, CryptoError> {
        DhPrivate::generate(group, self.rng())
    }
}

/// The production provider: everything comes from the OS generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemProvider {
    rng: OsRng,
}

impl SystemProvider {
    /// The OS-backed provider.
    pub fn new() -> Self {
        SystemProvider { rng: OsRng }
    }
}

impl CryptoProvider for SystemProvider {
    fn rng(&mut self) -> &mut dyn Rng {
        &mut self.rng
    }
}

/// A deterministic provider for tests: queued values are handed out first,
/// in order; after that everything comes from a [`SeededRng`].
#[derive(Debug)]
pub struct TestProvider {
    rng: SeededRng,
    nonces: VecDeque<Vec<u8>>,
    spis: VecDeque<[u8; 8]>,
    dh: VecDeque<DhPrivate>,
}

impl TestProvider {
    /// A provider whose unqueued output is fixed by `seed`.
    pub fn new(seed: &[u8]) -> Self {
        TestProvider { rng: SeededRng::new(seed), nonces: VecDeque::new(), spis: VecDeque::new(), dh: VecDeque::new() }
    }

    /// The next [`CryptoProvider::nonce`] returns `nonce`, whatever length is asked for.
    pub fn push_nonce(&mut self, nonce: impl Into<Vec<u8>>) -> &mut Self {
        self.nonces.push_back(nonce.into());
        self
    }

    /// The next [`CryptoProvider::spi`] returns `spi`.
    pub fn push_spi(&mut self, spi: [u8; 8]) -> &mut Self {
        self.spis.push_back(spi);
        self
    }

    /// The next [`CryptoProvider::dh_private`] returns `key`.
    pub fn push_dh(&mut self, key: DhPrivate) -> &mut Self {
        self.dh.push_back(key);
        self
    }
}

impl CryptoProvider for TestProvider {
    fn rng(&mut self) -> &mut dyn Rng {
        &mut self.rng
    }

    fn nonce(&mut self, len: usize) -> Vec<u8> {
        match self.nonces.pop_front() {
            Some(nonce) => nonce,
            None => {
                let mut nonce = vec![0; len];
                self.rng.fill(&mut nonce);
                nonce
            }
        }
    }

    fn spi(&mut self) -> [u8; 8] {
        match self.spis.pop_front() {
            Some(spi) => spi,
            None => {
                let mut spi = [0; 8];
                while spi == [0; 8] {
                    self.rng.fill(&mut spi);
                }
                spi
            }
        }
    }

    /// # Panics
    /// If the queued key is for another group: the test queued the wrong key.
    fn dh_private(&mut self, group: DhGroup) -> Result<DhPrivate, CryptoError> {
        match self.dh.pop_front() {
            Some(key) => {
                assert_eq!(key.group(), group, "TestProvider: queued DH key is for another group");
                Ok(key)
            }
            None => DhPrivate::generate(group, &mut self.rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_rng_is_reproducible_and_independent_of_chunking() {
        let mut a = SeededRng::new(b"seed");
        let mut b = SeededRng::new(b"seed");
        let mut whole = [0u8; 100];
        a.fill(&mut whole);
        let mut parts = [0u8; 100];
        b.fill(&mut parts[..7]);
        b.fill(&mut parts[7..64]);
        b.fill(&mut parts[64..]);
        assert_eq!(whole, parts);
        // Block 0 is HMAC-SHA-256(seed, 0u64).
        assert_eq!(&whole[..32], PrfAlg::HmacSha256.prf(b"seed", &[0; 8]).expose());
        let mut c = SeededRng::new(b"other");
        let mut other = [0u8; 100];
        c.fill(&mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn fixed_rng_replays_bytes() {
        let mut r = FixedRng::new(vec![1, 2, 3, 4]);
        let mut buf = [0; 3];
        r.fill(&mut buf);
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    #[should_panic(expected = "FixedRng exhausted")]
    fn fixed_rng_panics_when_exhausted() {
        FixedRng::new(vec![1]).fill(&mut [0; 2]);
    }

    #[test]
    fn os_rng_fills() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        OsRng.fill(&mut a);
        OsRng.fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn test_provider_hands_out_queued_values_first() {
        let mut p = TestProvider::new(b"seed");
        p.push_nonce(vec![7; 32]).push_spi([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.nonce(16), vec![7; 32]);
        assert_eq!(p.nonce(16).len(), 16);
        assert_eq!(p.spi(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_ne!(p.spi(), [0; 8]);

        let key = DhPrivate::generate(DhGroup::Curve25519, &mut SeededRng::new(b"k")).unwrap();
        let public = key.public().to_vec();
        p.push_dh(key);
        assert_eq!(p.dh_private(DhGroup::Curve25519).unwrap().public(), &public[..]);
        // Unqueued: reproducible from the seed.
        let again = TestProvider::new(b"seed").dh_private(DhGroup::Curve25519).unwrap();
        let mut fresh = TestProvider::new(b"seed");
        assert_eq!(fresh.dh_private(DhGroup::Curve25519).unwrap().public(), again.public());
    }

    #[test]
    fn system_provider_spis_differ() {
        let mut p = SystemProvider::new();
        assert_ne!(p.spi(), p.spi());
        assert_eq!(p.nonce(32).len(), 32);
    }
}
