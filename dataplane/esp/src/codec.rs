//! ESP at the level of RFC 4303 section 2 with AES-GCM (RFC 4106): the header, the explicit IV,
//! the encrypted payload with its trailer, and the ICV, built and opened in place in one region.
//!
//! ```text
//!  0       4       8               16                            len-16          len
//!  | SPI   | Seq   | IV (8)        | payload | pad | padlen | nh | ICV (16)      |
//!                                  \__________ encrypted _________/
//! ```

use crate::EspError;
use crate::aead::{Aead, ICV_LEN, IV_LEN, SALT_LEN};
use crate::wire::ESP_HDR_LEN;

/// Bytes before the payload: ESP header and IV.
pub const ESP_PREFIX_LEN: usize = ESP_HDR_LEN + IV_LEN;

/// Padding needed so that payload, pad length and next header end on a 4-octet boundary
/// (RFC 4303 section 2.4; GCM is a stream mode, so 4 is all the alignment ESP needs).
#[inline]
pub fn pad_len(payload_len: usize) -> usize {
    (4 - (payload_len + 2) % 4) % 4
}

/// What ESP adds after the payload: padding, pad length, next header, ICV.
#[inline]
pub fn trailer_len(payload_len: usize) -> usize {
    pad_len(payload_len) + 2 + ICV_LEN
}

/// Total length of the ESP part for a payload of `payload_len` bytes.
#[inline]
pub fn esp_len(payload_len: usize) -> usize {
    ESP_PREFIX_LEN + payload_len + trailer_len(payload_len)
}

/// The additional authenticated data: SPI and sequence number, with the high half of an
/// extended sequence number between them (RFC 4106 section 5, RFC 4303 section 2.2.1).
#[inline]
pub fn aad(spi: u32, seq: u64, esn: bool, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        out[4..12].copy_from_slice(&seq.to_be_bytes());
        12
    } else {
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

/// The GCM nonce: salt then explicit IV (RFC 4106 section 4).
#[inline]
pub fn nonce(salt: &[u8; SALT_LEN], iv: &[u8; IV_LEN]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    n
}

/// Parameters of one ESP seal.
pub struct SealParams<'a> {
    pub aead: &'a dyn Aead,
    pub salt: &'a [u8; SALT_LEN],
    pub spi: u32,
    pub seq: u64,
    pub esn: bool,
    pub iv: [u8; IV_LEN],
    pub next_header: u8,
}

/// Seals in place. `region` must be exactly `esp_len(payload_len)` bytes with the payload
/// already at `ESP_PREFIX_LEN`; header, IV, trailer and ICV are written here.
pub fn seal(p: &SealParams<'_>, region: &mut [u8], payload_len: usize) -> Result<(), EspError> {
    if region.len() != esp_len(payload_len) {
        return Err(EspError::NoRoom);
    }
    region[..4].copy_from_slice(&p.spi.to_be_bytes());
    // Only the low-order 32 bits go on the wire, also under ESN (RFC 4303 section 2.2.1).
    region[4..8].copy_from_slice(&(p.seq as u32).to_be_bytes());
    region[8..16].copy_from_slice(&p.iv);
    let pad = pad_len(payload_len);
    let trailer_at = ESP_PREFIX_LEN + payload_len;
    // RFC 4303 2.4: padding bytes are 1, 2, 3, ... Written as one 4-byte store whatever
    // `pad` (at most 3): a loop of 0 to 3 steps costs a mispredicted branch whenever packet
    // lengths vary. The bytes past the padding are overwritten next (pad length, next header)
    // or by the ICV: the ICV's 16 bytes follow, so the store stays inside `region`.
    if let Some(w) = region.get_mut(trailer_at..trailer_at + 4) {
        w.copy_from_slice(&[1, 2, 3, 0]);
    }
    region[trailer_at + pad] = pad as u8;
    region[trailer_at + pad + 1] = p.next_header;
    let mut aad_buf = [0u8; 12];
    let aad_len = aad(p.spi, p.seq, p.esn, &mut aad_buf);
    let n = nonce(p.salt, &p.iv);
    let icv_at = region.len() - ICV_LEN;
    let tag = p.aead.seal(&n, &aad_buf[..aad_len], &mut region[ESP_PREFIX_LEN..icv_at]);
    region[icv_at..].copy_from_slice(&tag);
    Ok(())
}

/// What an opened ESP packet holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub next_header: u8,
    /// Payload length, starting at `ESP_PREFIX_LEN` in the region.
    pub payload_len: usize,
    /// Bytes after the payload: padding, pad length, next header and ICV.
    pub trailer_len: usize,
}

/// Checks the length of an ESP region before anything else is done with it.
#[inline]
pub fn check_len(esp_len: usize) -> Result<(), EspError> {
    // RFC 4303 2.4: the ciphertext (payload + trailer) ends on a 4-octet boundary.
    if esp_len < ESP_PREFIX_LEN + 2 + ICV_LEN || !(esp_len - ESP_PREFIX_LEN - ICV_LEN).is_multiple_of(4) {
        return Err(EspError::BadLength);
    }
    Ok(())
}

/// Authenticates and decrypts `region` (ESP header to ICV) in place, with the full sequence
/// number `seq` from the replay window, then checks the trailer.
pub fn open(
    aead: &dyn Aead,
    salt: &[u8; SALT_LEN],
    seq: u64,
    esn: bool,
    region: &mut [u8],
) -> Result<Opened, EspError> {
    authenticate_decrypt(aead, salt, seq, esn, region)?;
    trailer(region)
}

/// The first half of [`open`]: checks the length, authenticates and decrypts in place.
pub fn authenticate_decrypt(
    aead: &dyn Aead,
    salt: &[u8; SALT_LEN],
    seq: u64,
    esn: bool,
    region: &mut [u8],
) -> Result<(), EspError> {
    check_len(region.len())?;
    let spi = u32::from_be_bytes([region[0], region[1], region[2], region[3]]);
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&region[8..16]);
    let mut aad_buf = [0u8; 12];
    let aad_len = aad(spi, seq, esn, &mut aad_buf);
    aead.open_appended(&nonce(salt, &iv), &aad_buf[..aad_len], &mut region[ESP_PREFIX_LEN..])
        .map_err(|_| EspError::AuthFailed)
}

/// Whether the `pad` bytes before `region[end]` are 1, 2, 3, ... (RFC 4303 2.4). Up to 3 of
/// them, as GCM senders write (4-byte alignment), are compared in one 32-bit word, without a
/// loop whose length the branch predictor would have to guess for every packet. `end` is at
/// least 16 + `pad` (a checked trailer), so the word read stays inside `region`.
#[inline]
fn padding_ok(region: &[u8], end: usize, pad: usize) -> bool {
    const EXPECTED: [u32; 4] = [0, 0x01, 0x0102, 0x01_0203];
    match (EXPECTED.get(pad), end.checked_sub(4).and_then(|at| region.get(at..end))) {
        (Some(&want), Some(&[a, b, c, d])) => {
            let mask = (1u32 << (8 * pad)) - 1;
            u32::from_be_bytes([a, b, c, d]) & mask == want
        }
        _ => end
            .checked_sub(pad)
            .and_then(|at| region.get(at..end))
            .is_some_and(|p| p.iter().enumerate().all(|(i, &b)| b == (i + 1) as u8)),
    }
}

/// The second half of [`open`]: reads and checks the trailer of a decrypted `region`.
pub fn trailer(region: &[u8]) -> Result<Opened, EspError> {
    check_len(region.len())?;
    let icv_at = region.len() - ICV_LEN;
    let plain = &region[ESP_PREFIX_LEN..icv_at];
    let next_header = plain[plain.len() - 1];
    let pad = usize::from(plain[plain.len() - 2]);
    if pad + 2 > plain.len() {
        return Err(EspError::BadPadLength);
    }
    let payload_len = plain.len() - 2 - pad;
    // RFC 4303 2.4: with the default padding scheme the receiver checks the bytes are 1, 2, 3...
    if !padding_ok(region, icv_at - 2, pad) {
        return Err(EspError::BadPadding);
    }
    Ok(Opened { next_header, payload_len, trailer_len: pad + 2 + ICV_LEN })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decrypted region (zeroed header and ICV) whose plaintext is `payload` bytes of 0xee,
    /// the given padding bytes, their count and next header 4.
    fn region(payload: usize, padding: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; ESP_PREFIX_LEN];
        r.extend(std::iter::repeat_n(0xee, payload));
        r.extend_from_slice(padding);
        r.extend_from_slice(&[padding.len() as u8, 4]);
        r.extend_from_slice(&[0u8; ICV_LEN]);
        r
    }

    /// The trailer check accepts exactly the padding 1, 2, 3, ... of every length a sender
    /// may use (RFC 4303 2.4: up to 255 bytes), also where the word it reads reaches back
    /// into the payload or the IV, and refuses each byte changed.
    #[test]
    fn padding_of_every_length_is_checked_byte_by_byte() {
        for payload in [0usize, 1, 2, 3, 5, 40] {
            for pad in (0..=12).chain([100, 255]) {
                if !(payload + pad + 2).is_multiple_of(4) {
                    continue;
                }
                let good: Vec<u8> = (1..=pad).map(|i| i as u8).collect();
                let r = region(payload, &good);
                let opened = trailer(&r).unwrap_or_else(|e| panic!("payload {payload} pad {pad}: {e:?}"));
                assert_eq!((opened.payload_len, opened.next_header), (payload, 4));
                for i in 0..pad {
                    let mut bad = good.clone();
                    bad[i] ^= 0x80;
                    assert_eq!(trailer(&region(payload, &bad)), Err(EspError::BadPadding), "pad {pad} byte {i}");
                }
            }
        }
    }

    /// Sealing writes the padding, its length and the next header as RFC 4303 2.4 says, for
    /// each of the four padding lengths, and nothing before the padding.
    #[test]
    fn seal_writes_the_trailer_the_check_accepts() {
        struct Null;
        impl Aead for Null {
            fn seal(&self, _: &[u8; 12], _: &[u8], _: &mut [u8]) -> [u8; ICV_LEN] {
                [0xaa; ICV_LEN]
            }
            fn open(
                &self,
                _: &[u8; 12],
                _: &[u8],
                _: &mut [u8],
                _: &[u8; ICV_LEN],
            ) -> Result<(), crate::aead::AuthError> {
                Ok(())
            }
        }
        for payload in 20..28 {
            let mut r = vec![0u8; esp_len(payload)];
            r[ESP_PREFIX_LEN..ESP_PREFIX_LEN + payload].fill(0xee);
            let p =
                SealParams { aead: &Null, salt: &[0; 4], spi: 0x100, seq: 1, esn: false, iv: [0; 8], next_header: 4 };
            seal(&p, &mut r, payload).unwrap();
            let pad = pad_len(payload);
            let t = ESP_PREFIX_LEN + payload;
            assert!(r[ESP_PREFIX_LEN..t].iter().all(|&b| b == 0xee), "payload {payload}");
            let want: Vec<u8> = (1..=pad as u8).chain([pad as u8, 4]).collect();
            assert_eq!(&r[t..t + pad + 2], &want[..], "payload {payload}");
            assert!(r[t + pad + 2..].iter().all(|&b| b == 0xaa), "ICV");
            assert_eq!(trailer(&r).unwrap().payload_len, payload);
        }
    }
}
