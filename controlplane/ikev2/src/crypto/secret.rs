//! A byte string that is zeroed when dropped and never printed.

use std::fmt;
use std::ops::Deref;

use zeroize::Zeroizing;

/// Secret bytes: keys, SKEYSEED, Diffie-Hellman results.
///
/// The bytes are wiped on drop; `Debug` shows only the length. There is
/// deliberately no `PartialEq`: compare secrets with [`super::ct_eq`].
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of `bytes`; they are wiped when the `Secret` is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Secret::new(bytes.to_vec())
    }

    /// The secret bytes. Named so that each place a secret leaves its wrapper is easy to find.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes (for example the INTEG keys of an AEAD suite).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Splits off consecutive secrets of the given lengths; `None` if `self` is too short.
    pub(crate) fn split(&self, lens: &[usize]) -> Option<Vec<Secret>> {
        let mut at = 0;
        let mut out = Vec::with_capacity(lens.len());
        for &len in lens {
            let part = self.0.get(at..at + len)?;
            out.push(Secret::from_slice(part));
            at += len;
        }
        Some(out)
    }
}

impl Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_bytes() {
        let s = Secret::new(vec![0xAB; 4]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secret(4 bytes)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn split_takes_consecutive_parts() {
        let s = Secret::new((0u8..10).collect());
        let parts = s.split(&[2, 0, 3]).unwrap();
        assert_eq!(parts[0].expose(), &[0, 1]);
        assert!(parts[1].is_empty());
        assert_eq!(parts[2].expose(), &[2, 3, 4]);
        assert!(s.split(&[8, 3]).is_none());
    }
}
