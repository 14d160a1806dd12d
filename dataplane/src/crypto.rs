//! Which AES-GCM implementation the SAs use (`[dataplane] crypto` in the configuration):
//! RustCrypto `aes-gcm`, AWS-LC, or intel-ipsec-mb; by default (`auto`) the fastest of those
//! available, measured on this CPU when the gateway starts.

use esp::aead::{Aead, Backend, Cipher, GcmKeyLen, KeyMaterial};
use std::time::{Duration, Instant};

/// Every backend this build has, in the order `auto` prefers on a tie.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::RustCrypto];
    if Backend::AwsLc.available() {
        v.push(Backend::AwsLc);
    }
    if crate::dpdk::ipsec_mb::available() {
        v.push(crate::dpdk::ipsec_mb::backend());
    }
    v
}

/// The backend a configuration names, or for `auto` the fastest here (with the figures).
pub fn choose(name: &str) -> Result<(Backend, Vec<Speed>), String> {
    if name == "auto" {
        // Measured once per process: every start of a pipeline gets the same answer.
        static AUTO: std::sync::OnceLock<(Backend, Vec<Speed>)> = std::sync::OnceLock::new();
        return Ok(AUTO
            .get_or_init(|| {
                let speeds: Vec<Speed> =
                    backends().into_iter().map(|b| measure(b, GcmKeyLen::Aes128, CALIBRATION)).collect();
                let best =
                    speeds.iter().min_by(|a, b| a.imix_ns.total_cmp(&b.imix_ns)).map(|s| s.backend).unwrap_or_default();
                (best, speeds)
            })
            .clone());
    }
    backends().into_iter().find(|b| b.name() == name).map(|b| (b, Vec::new())).ok_or_else(|| {
        let names: Vec<&str> = backends().iter().map(|b| b.name()).collect();
        format!("unknown or unavailable crypto backend {name:?} (available: auto, {})", names.join(", "))
    })
}

/// How long `auto` measures each backend and size when the gateway starts.
const CALIBRATION: Duration = Duration::from_millis(15);

/// A backend's sealing speed on this CPU.
#[derive(Clone, Copy, Debug)]
pub struct Speed {
    pub backend: Backend,
    /// Nanoseconds per seal of a 64-byte and a 1420-byte payload.
    pub ns_64: f64,
    pub ns_1420: f64,
    /// Average nanoseconds per packet of the simple IMIX (7:4:1 of 64, 576, 1500 bytes).
    pub imix_ns: f64,
}

impl Speed {
    pub fn gbps_1420(&self) -> f64 {
        1420.0 * 8.0 / self.ns_1420
    }
    pub fn mpps_64(&self) -> f64 {
        1e3 / self.ns_64
    }
}

/// Seals payloads of each size back to back for about `each` and reports the time per seal.
pub fn measure(backend: Backend, len: GcmKeyLen, each: Duration) -> Speed {
    let km = KeyMaterial::new(len, &vec![0x3c; len.key_len()], &[1, 2, 3, 4]).expect("valid key");
    let cipher = Cipher::new(backend, &km);
    let ns = |size: usize| {
        let mut buf = vec![0x5au8; size];
        let aad = [0u8; 8];
        let mut nonce = [0u8; 12];
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < each {
            for _ in 0..64 {
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                std::hint::black_box(cipher.seal(&nonce, &aad, &mut buf));
                n += 1;
            }
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let (ns_64, ns_576, ns_1420, ns_1500) = (ns(64), ns(576), ns(1420), ns(1500));
    Speed { backend, ns_64, ns_1420, imix_ns: (7.0 * ns_64 + 4.0 * ns_576 + ns_1500) / 12.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_auto() {
        assert_eq!(choose("aes-gcm").unwrap().0, Backend::RustCrypto);
        assert!(choose("nonesuch").unwrap_err().contains("available: auto, aes-gcm"));
        let (b, speeds) = choose("auto").unwrap();
        assert_eq!(speeds.len(), backends().len());
        assert!(speeds.iter().all(|s| s.ns_64 > 0.0 && s.ns_1420 > 0.0 && s.imix_ns > 0.0));
        assert!(backends().contains(&b));
    }
}
