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
    for (i, b) in region[trailer_at..trailer_at + pad].iter_mut().enumerate() {
        // RFC 4303 2.4: padding bytes are 1, 2, 3, ...
        *b = (i + 1) as u8;
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
    if plain[payload_len..payload_len + pad].iter().enumerate().any(|(i, &b)| b != (i + 1) as u8) {
        return Err(EspError::BadPadding);
    }
    Ok(Opened { next_header, payload_len, trailer_len: pad + 2 + ICV_LEN })
}
