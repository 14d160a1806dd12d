//! AES-GCM from intel-ipsec-mb (libIPSec_MB, the library under DPDK's crypto_ipsec_mb PMD)
//! through its synchronous direct API: one call seals or opens a packet in place, with the code
//! path (SSE, AVX2, AVX-512, VAES) the library picked for this CPU. It stands behind
//! [`esp::aead::Aead`] as the backend named `ipsec-mb`.

use dpdk_sys::ipsec_mb as imb;
use esp::aead::{Aead, AesGcm, AuthError, Backend, GcmKeyLen, ICV_LEN, KeyMaterial};
use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The library's manager: after `init_mb_mgr_auto` a read-only table of function pointers for
/// this CPU. It lives as long as the process.
struct Manager(&'static imb::IMB_MGR);

/// Where this CPU's code path keeps H^1..H^5 in the key structure (see `low_powers_offset`),
/// set with the manager, before any key exists. A plain static: `key_state` reads it per
/// packet.
static LOW_POWERS: AtomicUsize = AtomicUsize::new(0);

// Safety: the manager is written once, by `init_mb_mgr_auto` before it is shared, and only
// read afterwards; the direct GCM functions keep no state in it.
unsafe impl Send for Manager {}
// Safety: as above, shared reads only.
unsafe impl Sync for Manager {}

fn manager() -> Option<&'static imb::IMB_MGR> {
    static MGR: OnceLock<Option<Manager>> = OnceLock::new();
    MGR.get_or_init(|| {
        // Safety: alloc_mb_mgr returns an owned, suitably aligned manager or NULL; it is
        // initialised before any use and never freed, so the 'static reference stays valid.
        unsafe {
            let m = imb::alloc_mb_mgr(0);
            if m.is_null() {
                return None;
            }
            let mut arch: imb::IMB_ARCH = 0;
            imb::init_mb_mgr_auto(m, &mut arch);
            if imb::imb_get_errno(m) != 0 {
                imb::free_mb_mgr(m);
                return None;
            }
            LOW_POWERS.store(low_powers_offset(arch), Ordering::Relaxed);
            Some(Manager(&*m))
        }
    })
    .as_ref()
    .map(|m| m.0)
}

/// Whether the library initialised on this CPU.
pub fn available() -> bool {
    manager().is_some()
}

/// The backend for SAs: AES-GCM by intel-ipsec-mb, or RustCrypto's where the library is
/// missing (never chosen then: see `crypto::choose`).
pub fn backend() -> Backend {
    Backend::External("ipsec-mb", |km| match new_cipher(km) {
        Some(c) => c,
        None => Box::new(AesGcm::new(km)),
    })
}

/// One 16-byte block, aligned as the library's vector loads like it.
#[repr(C, align(16))]
struct Block([u8; 16]);

impl Block {
    /// The block whose bytes are `lo` then `hi`, little-endian, written with one 16-byte
    /// store (see `IpsecMbGcm::run`).
    #[inline(always)]
    fn new(lo: u64, hi: u64) -> Block {
        use std::arch::x86_64::{__m128i, _mm_set_epi64x};
        let mut b = Block([0u8; 16]);
        // Safety: SSE2 is part of x86-64; `b` is 16-byte aligned and 16 bytes long. Volatile,
        // so that the compiler keeps it one store instead of splitting it into two.
        unsafe { std::ptr::write_volatile(b.0.as_mut_ptr().cast::<__m128i>(), _mm_set_epi64x(hi as i64, lo as i64)) };
        b
    }
}

/// The expanded key and GHASH tables, aligned as the library's AVX-512 code wants them.
#[repr(C, align(64))]
struct KeyData(imb::gcm_key_data);

type PreFn = unsafe extern "C" fn(*const std::ffi::c_void, *mut imb::gcm_key_data);

type GcmFn = unsafe extern "C" fn(
    *const imb::gcm_key_data,
    *mut imb::gcm_context_data,
    *mut u8,
    *const u8,
    u64,
    *const u8,
    *const u8,
    u64,
    *mut u8,
    u64,
);

/// One SA's AES-GCM key for intel-ipsec-mb, `KEY` bytes long (16 or 32). The key schedule is
/// wiped on drop. It lives inline, not behind a pointer of its own: with thousands of SAs each
/// packet's cipher is a cache miss, and one indirection fewer is one miss fewer.
///
/// The key length is the type's, not a field: it says which functions to call and how many
/// round keys there are, so that neither the functions nor `key_state` read a cache line of
/// the structure beyond the key schedule itself.
#[repr(C)]
pub struct IpsecMbGcm<const KEY: usize> {
    key: KeyData,
}

/// The library's encrypt and decrypt functions for 128- and 256-bit keys, found by the first
/// `new_cipher` of that length, before any key of it exists.
static FNS_128: OnceLock<(GcmFn, GcmFn)> = OnceLock::new();
static FNS_256: OnceLock<(GcmFn, GcmFn)> = OnceLock::new();

/// Bytes of GHASH key powers H^1..H^5 that a 64-byte packet's ciphertext (five blocks with
/// the ESP trailer) needs: the library hashes n blocks with H^n..H^1.
const LOW_POWERS_LEN: usize = 5 * 16;

/// Where the library's code path for this CPU keeps H^1..H^5 in `gcm_key_data` (libIPSec_MB
/// 1.3): the SSE, AVX, AVX2 and AVX-512 code store H, H^2, ... from the start of the GHASH
/// keys (after the 240 bytes of round keys); the VAES AVX-512 code stores 48 powers from the
/// highest down, so H^5..H^1 are its last 80 bytes.
fn low_powers_offset(arch: imb::IMB_ARCH) -> usize {
    let start = std::mem::offset_of!(imb::gcm_key_data, ghash_keys);
    let vaes = std::arch::is_x86_feature_detected!("vaes") && std::arch::is_x86_feature_detected!("vpclmulqdq");
    if arch == imb::IMB_ARCH_AVX512 && vaes {
        start + std::mem::size_of::<imb::gcm_key_data__bindgen_ty_1__bindgen_ty_3>() - LOW_POWERS_LEN
    } else {
        start
    }
}

/// intel-ipsec-mb's AES-GCM for `km`, if the library runs here.
fn new_cipher(km: &KeyMaterial) -> Option<Box<dyn Aead>> {
    let m = manager()?;
    match km.key_len() {
        GcmKeyLen::Aes128 => {
            let (pre, enc, dec) = (m.gcm128_pre?, m.gcm128_enc?, m.gcm128_dec?);
            FNS_128.get_or_init(|| (enc, dec));
            IpsecMbGcm::<16>::boxed(km, pre)
        }
        GcmKeyLen::Aes256 => {
            let (pre, enc, dec) = (m.gcm256_pre?, m.gcm256_enc?, m.gcm256_dec?);
            FNS_256.get_or_init(|| (enc, dec));
            IpsecMbGcm::<32>::boxed(km, pre)
        }
    }
}

impl<const KEY: usize> IpsecMbGcm<KEY> {
    /// Bytes of round keys: AES-128 has 11, AES-256 15 (FIPS 197 5.2).
    const ROUND_KEYS: usize = (KEY / 4 + 7) * 16;

    /// Built in place on the heap: a key schedule made on the stack and moved would leave a
    /// copy behind that nothing wipes. `pre` is the library's key expansion for this length.
    fn boxed(km: &KeyMaterial, pre: PreFn) -> Option<Box<dyn Aead>> {
        if km.key().len() != KEY {
            return None;
        }
        let mut c = Box::new(IpsecMbGcm::<KEY> { key: KeyData(imb::gcm_key_data::default()) });
        // Safety: `pre` reads KEY bytes of AES key and fills the key structure, both valid for
        // the call.
        unsafe { pre(km.key().as_ptr().cast(), &mut c.key.0) };
        Some(c)
    }

    /// The library's encrypt and decrypt for this key length. Set before any key of it exists
    /// (`new_cipher`), so always there for `self`.
    #[inline]
    fn fns() -> (GcmFn, GcmFn) {
        let fns = if KEY == 16 { FNS_128.get() } else { FNS_256.get() };
        fns.copied().unwrap_or((missing, missing))
    }

    /// Runs `f` (the library's encrypt or decrypt) over `buf` in place. Always inlined into
    /// `seal`, `open` and `open_appended`: as a call of its own it cost about 20 instructions a
    /// packet.
    #[inline(always)]
    fn run(&self, f: GcmFn, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &mut [u8; ICV_LEN]) {
        // The one-call API initialises the context itself (aad_hash, lengths, counters: the
        // library's GCM_INIT) before it reads any of it, so it is not zeroed first: those 104
        // bytes of stores queued behind the previous packet's were 40% of this function's
        // time with two workers busy.
        let mut ctx = std::mem::MaybeUninit::<imb::gcm_context_data>::uninit();
        // The IV and the AAD in zero-padded whole blocks, so that whatever the library's
        // vector code may load past a 12-byte IV or an 8-byte AAD is defined. J0 = IV ||
        // 0x00000001 (NIST SP 800-38D 7.1) fills the IV block.
        //
        // The library reads each block with one 16-byte vector load. A load that spans several
        // narrower stores still in flight cannot take its data from them and waits for them to
        // retire (a store-forwarding stall, measured at 14% of the library's time for a
        // 64-byte packet), so each block is assembled in registers, from reads of the pieces
        // as ESP wrote them (salt and explicit IV, RFC 4106 4; 32-bit AAD words, RFC 4106 5),
        // and written with one store. `black_box` keeps the compiler from merging the reads of
        // neighbouring pieces back into one wide load across them.
        let word = |b: &[u8], at: usize| {
            b.get(at..at + 4).map_or(0, |w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        };
        let salt = word(nonce, 0);
        let explicit = black_box(u64::from_le_bytes([
            nonce[4], nonce[5], nonce[6], nonce[7], nonce[8], nonce[9], nonce[10], nonce[11],
        ]));
        let iv = Block::new(salt | explicit << 32, explicit >> 32 | 1 << 56);
        let aad_block;
        let aad: &[u8] = if aad.len() <= 16 && aad.len().is_multiple_of(4) {
            let (lo, hi) =
                (word(aad, 0) | black_box(word(aad, 4)) << 32, word(aad, 8) | black_box(word(aad, 12)) << 32);
            aad_block = Block::new(lo, hi);
            &aad_block.0[..aad.len()]
        } else if aad.len() <= 16 {
            let mut b = Block([0u8; 16]);
            b.0[..aad.len()].copy_from_slice(aad);
            aad_block = b;
            &aad_block.0[..aad.len()]
        } else {
            aad
        };
        let p = buf.as_mut_ptr();
        // Safety: the key was prepared by the matching `pre`; `buf` is valid for reads and
        // writes of its length, and the library supports in == out; the IV is 12 bytes as the
        // direct API expects; `aad` and `tag` are valid for their lengths; the context is
        // valid for writes, written by the library before it is read, and never read here.
        unsafe {
            f(
                &self.key.0,
                ctx.as_mut_ptr(),
                p,
                p.cast_const(),
                buf.len() as u64,
                iv.0.as_ptr(),
                aad.as_ptr(),
                aad.len() as u64,
                tag.as_mut_ptr(),
                ICV_LEN as u64,
            )
        };
    }
}

/// Stands in for the library's functions if they were not set, which cannot happen: no key
/// is made before the functions of its length (see `new_cipher`). Should it ever run, it
/// wipes the output and the tag, so that nothing goes out in the clear.
unsafe extern "C" fn missing(
    _: *const imb::gcm_key_data,
    _: *mut imb::gcm_context_data,
    out: *mut u8,
    _: *const u8,
    len: u64,
    _: *const u8,
    _: *const u8,
    _: u64,
    tag: *mut u8,
    tag_len: u64,
) {
    // Safety: the same contract as the library's functions: `out` and `tag` are valid for
    // writes of `len` and `tag_len` bytes.
    unsafe {
        std::ptr::write_bytes(out, 0, len as usize);
        std::ptr::write_bytes(tag, 0, tag_len as usize);
    }
}

impl<const KEY: usize> Drop for IpsecMbGcm<KEY> {
    fn drop(&mut self) {
        // Volatile writes keep the wipe from being optimised away.
        let bytes = std::ptr::from_mut(&mut self.key.0).cast::<u8>();
        for i in 0..std::mem::size_of::<imb::gcm_key_data>() {
            // Safety: the key structure is plain bytes, `i` stays within it, and we own it.
            unsafe { bytes.add(i).write_volatile(0) };
        }
    }
}

/// Tag comparison in time independent of where the tags differ.
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

impl<const KEY: usize> Aead for IpsecMbGcm<KEY> {
    #[inline]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; ICV_LEN] {
        let mut tag = [0u8; ICV_LEN];
        self.run(Self::fns().0, nonce, aad, buf, &mut tag);
        tag
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; ICV_LEN]) -> Result<(), AuthError> {
        let mut computed = [0u8; ICV_LEN];
        self.run(Self::fns().1, nonce, aad, buf, &mut computed);
        if tags_equal(&computed, tag) {
            return Ok(());
        }
        // The library decrypts before the tag is known: put the ciphertext back (CTR mode is
        // its own inverse) so that a failed open leaves `buf` as it was.
        let mut ignored = [0u8; ICV_LEN];
        self.run(Self::fns().0, nonce, aad, buf, &mut ignored);
        Err(AuthError)
    }

    #[inline]
    fn open_appended(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<(), AuthError> {
        let at = buf.len().checked_sub(ICV_LEN).ok_or(AuthError)?;
        let (data, tag) = buf.split_at_mut(at);
        // The received tag is read before the library writes the plaintext: its last, partial
        // block is a masked 64-byte store, and a later load within those 64 bytes (the tag
        // follows the ciphertext) cannot be forwarded from it and waits for it to commit.
        let received: [u8; ICV_LEN] = (&*tag).try_into().map_err(|_| AuthError)?;
        let mut computed = [0u8; ICV_LEN];
        self.run(Self::fns().1, nonce, aad, data, &mut computed);
        // On failure the packet is dropped: its contents need not be restored.
        if tags_equal(&computed, &received) { Ok(()) } else { Err(AuthError) }
    }

    /// The round keys and H^1..H^5: 5 cache lines of the 16 for AES-128, 6 for AES-256.
    /// Prefetching all of them for a burst of SAs would crowd the packets out of the
    /// first-level cache. Computed without reading `self`, which is what is to be prefetched.
    fn key_state(&self) -> [(*const u8, usize); 2] {
        let key: *const u8 = (&raw const self.key.0).cast();
        let low_powers = LOW_POWERS.load(Ordering::Relaxed);
        [(key, Self::ROUND_KEYS), (key.wrapping_add(low_powers), LOW_POWERS_LEN)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esp::aead::Cipher;

    #[test]
    fn agrees_with_the_other_backends() {
        if !available() {
            eprintln!("intel-ipsec-mb did not initialise here; nothing to compare");
            return;
        }
        for len in [GcmKeyLen::Aes128, GcmKeyLen::Aes256] {
            let km = KeyMaterial::new(len, &vec![0x5a; len.key_len()], &[1, 2, 3, 4]).unwrap();
            let ours = Cipher::new(backend(), &km);
            // Every AAD length ESP uses (8, 12) and around them, in and past the 16-byte block
            // the AAD is copied into; nonce and AAD bytes all distinct, so a misplaced piece
            // of either shows.
            let nonce: [u8; 12] = std::array::from_fn(|i| 0x70 + i as u8);
            let aads: Vec<Vec<u8>> =
                [0, 3, 8, 12, 13, 16, 20].iter().map(|&n| (0..n).map(|i| 0x90 + i).collect()).collect();
            for (size, aad) in [0, 1, 16, 63, 64, 1420, 9000].into_iter().flat_map(|s| aads.iter().map(move |a| (s, a)))
            {
                let plain: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
                let (mut a, mut b) = (plain.clone(), plain.clone());
                let ta = ours.seal(&nonce, aad, &mut a);
                let tb = Cipher::new(Backend::RustCrypto, &km).seal(&nonce, aad, &mut b);
                assert_eq!((&a, ta), (&b, tb), "{len:?} {size} aad {}", aad.len());
                let mut bad = ta;
                bad[3] ^= 0x10;
                assert_eq!(ours.open(&nonce, aad, &mut a, &bad), Err(AuthError));
                assert_eq!(a, b, "restored after a failed open");
                ours.open(&nonce, aad, &mut a, &ta).unwrap();
                assert_eq!(a, plain);
                let mut appended = [b.as_slice(), &tb].concat();
                ours.open_appended(&nonce, aad, &mut appended).unwrap();
                assert_eq!(&appended[..size], &plain[..]);
                let mut tampered = [b.as_slice(), &tb].concat();
                tampered[0] ^= 1;
                assert_eq!(ours.open_appended(&nonce, aad, &mut tampered), Err(AuthError));
            }
        }
    }
}
