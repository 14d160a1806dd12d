//! Tunnel-mode SAs (RFC 4301 section 4.1, RFC 4303 section 3.1.2): an outbound SA wraps an
//! inner IP packet in a new outer IP header (and UDP, RFC 3948) plus ESP; an inbound SA checks,
//! opens and strips that again.

use crate::EspError;
use crate::aead::{Aead, Backend, Cipher, IV_LEN, KeyMaterial, SALT_LEN};
use crate::buf::PacketBuf;
use crate::codec::{self, ESP_PREFIX_LEN, SealParams};
use crate::replay::{BLOCK_BITS, ReplayWindow, SlotsAt};
use crate::wire::{
    EspOuter, IPV4_HDR_LEN, IPV6_HDR_LEN, Ipv4Packet, Ipv6Packet, PROTO_ESP, PROTO_IPV4, PROTO_IPV6, PROTO_NONE,
    PROTO_UDP, UDP_HDR_LEN, checksum_add, checksum_finish,
};
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Hop limit of the outer header we build.
pub const OUTER_TTL: u8 = 64;

/// UDP encapsulation ports (RFC 3948); both are 4500 unless a NAT rewrote the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpEncap {
    pub sport: u16,
    pub dport: u16,
}

/// Everything one direction of a tunnel-mode SA needs, as configured or negotiated.
#[derive(Clone, Debug)]
pub struct SaConfig {
    pub spi: u32,
    pub key: KeyMaterial,
    /// This gateway's tunnel endpoint address.
    pub local: IpAddr,
    /// The peer's tunnel endpoint address.
    pub remote: IpAddr,
    pub encap: Option<UdpEncap>,
    /// 64-bit extended sequence numbers (RFC 4303 section 2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets (inbound only).
    pub replay_window: u32,
    /// Which AES-GCM implementation seals and opens its packets.
    pub backend: Backend,
}

impl SaConfig {
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.spi < 256 {
            // RFC 4303 2.1: SPI values 1-255 are reserved by IANA, 0 is local-only.
            return Err("SPI must be at least 256 (0-255 are reserved, RFC 4303 section 2.1)");
        }
        if self.local.is_ipv4() != self.remote.is_ipv4() {
            return Err("tunnel endpoints must both be IPv4 or both IPv6");
        }
        Ok(())
    }
}

/// The outbound sequence counter of one SA, shared by every core that sends on it. It sits on a
/// cache line of its own; cores reserve whole bursts with one atomic add, so each sequence
/// number (and so each IV, which is the sequence number) is used exactly once across cores.
#[repr(align(64))]
#[derive(Debug)]
pub struct SeqCounter {
    next: AtomicU64,
}

impl Default for SeqCounter {
    fn default() -> Self {
        SeqCounter::starting_at(1)
    }
}

impl SeqCounter {
    /// A counter whose next number is `next` (tests use this to reach the end of the space).
    pub fn starting_at(next: u64) -> Self {
        SeqCounter { next: AtomicU64::new(next) }
    }

    /// Reserves `n` consecutive numbers and returns the first. Numbers past the end of the space
    /// (2^32 - 1, or 2^63 - 1 with ESN: see [`OutboundSa::seq_last`]) must not be used: see
    /// [`OutboundSa::seq_usable`].
    #[inline]
    pub fn reserve(&self, n: u64) -> u64 {
        self.next.fetch_add(n, Ordering::Relaxed)
    }

    /// The next number that would be handed out (for counters shown to operators).
    pub fn peek(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// Outer header fields that never change for an SA, built once when it is installed. 52
/// bytes, laid out in order (see [`OutboundSa`]).
#[derive(Clone, Debug)]
#[repr(C)]
struct OuterTemplate {
    hdr: [u8; IPV6_HDR_LEN + UDP_HDR_LEN],
    /// IPv4: the checksum sum of the fixed fields, folded to 16 bits; the per-packet ones are
    /// added to it (ones' complement addition is associative, RFC 1071 2(A)).
    partial_sum: u16,
    /// 20 or 40.
    ip_len: u8,
    udp: bool,
}

impl OuterTemplate {
    fn new(local: IpAddr, remote: IpAddr, encap: Option<UdpEncap>) -> Self {
        let mut hdr = [0u8; IPV6_HDR_LEN + UDP_HDR_LEN];
        let proto = if encap.is_some() { PROTO_UDP } else { PROTO_ESP };
        let ip_len = match (local, remote) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                hdr[0] = 0x45;
                hdr[8] = OUTER_TTL;
                hdr[9] = proto;
                hdr[12..16].copy_from_slice(&s.octets());
                hdr[16..20].copy_from_slice(&d.octets());
                IPV4_HDR_LEN
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                hdr[0] = 0x60;
                hdr[6] = proto;
                hdr[7] = OUTER_TTL;
                hdr[8..24].copy_from_slice(&s.octets());
                hdr[24..40].copy_from_slice(&d.octets());
                IPV6_HDR_LEN
            }
            // Refused by SaConfig::validate; an IPv4 header with the right addresses of nothing.
            _ => IPV4_HDR_LEN,
        };
        if let Some(e) = encap {
            hdr[ip_len..ip_len + 2].copy_from_slice(&e.sport.to_be_bytes());
            hdr[ip_len + 2..ip_len + 4].copy_from_slice(&e.dport.to_be_bytes());
        }
        let partial_sum = !checksum_finish(checksum_add(0, &hdr[..IPV4_HDR_LEN]));
        OuterTemplate { hdr, partial_sum, ip_len: ip_len as u8, udp: encap.is_some() }
    }

    fn ip_len(&self) -> usize {
        usize::from(self.ip_len)
    }

    fn len(&self) -> usize {
        self.ip_len() + if self.udp { UDP_HDR_LEN } else { 0 }
    }

    /// Copies the first `N` bytes of the template to the front of `pkt`; false if `pkt` is
    /// shorter. A copy of constant length is a few vector moves where one of the variable
    /// length `len()` was a call to `memcpy`, about 2% of a 64-byte encapsulation's samples.
    #[inline]
    fn copy_to<const N: usize>(&self, pkt: &mut [u8]) -> bool {
        match (pkt.first_chunk_mut::<N>(), self.hdr.first_chunk::<N>()) {
            (Some(to), Some(from)) => {
                *to = *from;
                true
            }
            _ => false,
        }
    }

    /// Writes the outer headers at the front of `pkt` (whose ESP part is already sealed).
    #[inline(always)]
    fn write(&self, pkt: &mut [u8], tos: u8, df: bool, id: u16) {
        let copied = match (self.ip_len(), self.udp) {
            (IPV4_HDR_LEN, false) => self.copy_to::<IPV4_HDR_LEN>(pkt),
            (IPV4_HDR_LEN, true) => self.copy_to::<{ IPV4_HDR_LEN + UDP_HDR_LEN }>(pkt),
            (_, false) => self.copy_to::<IPV6_HDR_LEN>(pkt),
            (_, true) => self.copy_to::<{ IPV6_HDR_LEN + UDP_HDR_LEN }>(pkt),
        };
        // The caller made room for the headers; nothing to write into otherwise.
        if !copied {
            return;
        }
        let total = pkt.len();
        if self.ip_len() == IPV4_HDR_LEN {
            let Some(h) = pkt.first_chunk_mut::<IPV4_HDR_LEN>() else { return };
            h[1] = tos;
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            let flags: u16 = if df { 0x4000 } else { 0 };
            h[6..8].copy_from_slice(&flags.to_be_bytes());
            // The template's fields are summed once; here only TOS, length, ID and flags.
            let sum = u32::from(self.partial_sum) + u32::from(tos) + total as u32 + u32::from(id) + u32::from(flags);
            let c = checksum_finish(sum);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            let Some(h) = pkt.first_chunk_mut::<IPV6_HDR_LEN>() else { return };
            h[0] = 0x60 | (tos >> 4);
            h[1] = tos << 4;
            h[4..6].copy_from_slice(&((total - IPV6_HDR_LEN) as u16).to_be_bytes());
        }
        if self.udp {
            let u = self.ip_len();
            let ulen = (total - u) as u16;
            pkt[u + 4..u + 6].copy_from_slice(&ulen.to_be_bytes());
            if u == IPV6_HDR_LEN {
                // RFC 8200 8.1: UDP over IPv6 needs a real checksum. Over IPv4 RFC 3948 2.1 lets
                // it be zero, as the ESP ICV protects the content.
                let mut sum = checksum_add(0, &pkt[8..40]);
                sum = sum.wrapping_add(u32::from(ulen)).wrapping_add(u32::from(PROTO_UDP));
                sum = checksum_add(sum, &pkt[u..]);
                let c = match checksum_finish(sum) {
                    0 => 0xffff,
                    c => c,
                };
                pkt[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
}

/// Reads what the outer header copies from the inner one (RFC 4301 5.1.2): DSCP and ECN
/// (RFC 6040 normal mode copies ECN too) and, for IPv4, the DF bit. Checks that the buffer
/// holds exactly one IP packet.
fn inner_fields(inner: &[u8]) -> Result<(u8, u8, bool), EspError> {
    match inner.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(inner).map_err(|_| EspError::BadInnerPacket)?;
            if p.total_len() != inner.len() {
                return Err(EspError::BadInnerPacket);
            }
            Ok((PROTO_IPV4, p.tos(), p.dont_fragment()))
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(inner).map_err(|_| EspError::BadInnerPacket)?;
            if p.total_len() != inner.len() {
                return Err(EspError::BadInnerPacket);
            }
            Ok((PROTO_IPV6, p.traffic_class(), false))
        }
        _ => Err(EspError::BadInnerPacket),
    }
}

/// The sending half of an SA. With many tunnels each is a cache miss, so it is cache-line
/// aligned and laid out in order: what sealing a packet reads (sequence counter, SPI, salt,
/// outer header, ESN flag, cipher) lies in the first two lines ([`Self::HOT_LEN`]), and the
/// endpoint addresses, read only to route the SA's packets, come after.
#[repr(C, align(64))]
pub struct OutboundSa {
    seq: Arc<SeqCounter>,
    pub spi: u32,
    salt: [u8; SALT_LEN],
    outer: OuterTemplate,
    pub esn: bool,
    aead: Cipher,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub encap: Option<UdpEncap>,
}

// What sealing reads fits the first two cache lines.
const _: () = assert!(OutboundSa::HOT_LEN <= 128);

impl Drop for OutboundSa {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl OutboundSa {
    /// The bytes at the start of the SA that sealing a packet reads (up to the end of the
    /// cipher): what to prefetch.
    pub const HOT_LEN: usize = core::mem::offset_of!(OutboundSa, aead) + core::mem::size_of::<Cipher>();

    /// Builds the SA; every core's copy must share one `seq` counter.
    pub fn new(cfg: &SaConfig, seq: Arc<SeqCounter>) -> Result<Self, &'static str> {
        cfg.validate()?;
        Ok(OutboundSa {
            spi: cfg.spi,
            esn: cfg.esn,
            local: cfg.local,
            remote: cfg.remote,
            encap: cfg.encap,
            aead: Cipher::new(cfg.backend, &cfg.key),
            salt: cfg.key.salt(),
            outer: OuterTemplate::new(cfg.local, cfg.remote, cfg.encap),
            seq,
        })
    }

    pub fn seq_counter(&self) -> &Arc<SeqCounter> {
        &self.seq
    }

    /// Memory that sealing a packet reads beyond the SA itself, each as (start, bytes): the
    /// cipher's key state and the shared sequence counter. Addresses only, for prefetching.
    pub fn hot_memory(&self) -> [(*const u8, usize); 3] {
        let [k0, k1] = self.aead.key_state();
        [k0, k1, (Arc::as_ptr(&self.seq).cast(), core::mem::size_of::<SeqCounter>())]
    }

    /// Bytes this SA adds in front of the inner packet.
    pub fn overhead_front(&self) -> usize {
        self.outer.len() + ESP_PREFIX_LEN
    }

    /// Length of the outer packet this SA makes of an inner packet of `inner_len` bytes.
    #[inline]
    pub fn encapsulated_len(&self, inner_len: usize) -> usize {
        self.overhead_front() + inner_len + codec::trailer_len(inner_len)
    }

    /// The longest inner packet whose outer packet still fits in `outer_mtu` bytes: the MTU
    /// of the tunnel, as reported to senders in ICMP "packet too big" messages.
    pub fn max_inner_len(&self, outer_mtu: usize) -> usize {
        // Payload, padding and the 2 trailer bytes end on a 4-byte boundary (RFC 4303 2.4).
        let room = outer_mtu.saturating_sub(self.overhead_front() + crate::aead::ICV_LEN);
        (room & !3).saturating_sub(2)
    }

    /// True if `seq` may still be sent. RFC 4303 3.3.3: the counter must never cycle; the SA
    /// must be replaced (rekeyed) before 2^32 packets (with ESN, before 2^63: see
    /// [`Self::seq_last`]).
    #[inline]
    pub fn seq_usable(&self, seq: u64) -> bool {
        seq != 0 && seq <= self.seq_last()
    }

    /// The last sequence number this SA may send: 2^32 - 1, or with ESN 2^63 - 1. Half of the
    /// 64-bit space is more than any SA lives to use, and it keeps the counter (one atomic add
    /// per burst, which would wrap past 2^64 - 1) from ever coming back to numbers already
    /// used: past the end, it stays past it for another 2^63 numbers.
    #[inline]
    pub fn seq_last(&self) -> u64 {
        if self.esn { u64::MAX >> 1 } else { u64::from(u32::MAX) }
    }

    /// The sequence number from which the SA asks to be replaced, as at a soft lifetime: a
    /// sixteenth of the space before its end, 2^28 packets without ESN (half a minute at
    /// 10 Mpps) for a rekey to take over (RFC 4303 3.3.3).
    #[inline]
    pub fn seq_soft(&self) -> u64 {
        self.seq_last() - self.seq_last() / 16
    }

    /// Encrypts the inner IP packet in `buf` into an outer packet with sequence number `seq`
    /// (reserved from this SA's counter). The IV is the sequence number, unique per key
    /// because sequence numbers are (RFC 4106 section 3.1 permits a counter).
    #[inline]
    pub fn encapsulate<B: PacketBuf + ?Sized>(&self, seq: u64, buf: &mut B) -> Result<(), EspError> {
        self.encapsulate_with_iv(seq, seq.to_be_bytes(), buf)
    }

    /// As [`encapsulate`](Self::encapsulate) with an explicit IV, for published test vectors.
    pub fn encapsulate_with_iv<B: PacketBuf + ?Sized>(
        &self,
        seq: u64,
        iv: [u8; IV_LEN],
        buf: &mut B,
    ) -> Result<(), EspError> {
        if !self.seq_usable(seq) {
            return Err(EspError::SeqExhausted);
        }
        let (next_header, tos, df) = inner_fields(buf.data())?;
        let payload_len = buf.len();
        let front = self.overhead_front();
        let total = front + payload_len + codec::trailer_len(payload_len);
        if total > usize::from(u16::MAX) {
            return Err(EspError::NoRoom);
        }
        if buf.append(codec::trailer_len(payload_len)).is_none() {
            return Err(EspError::NoRoom);
        }
        let Some(pkt) = buf.prepend(front) else {
            return Err(EspError::NoRoom);
        };
        let outer_len = self.outer.len();
        let params =
            SealParams { aead: &self.aead, salt: &self.salt, spi: self.spi, seq, esn: self.esn, iv, next_header };
        codec::seal(&params, &mut pkt[outer_len..], payload_len)?;
        self.outer.write(pkt, tos, df, seq as u16);
        Ok(())
    }
}

/// An ESP packet [`InboundSa::open`] authenticated and decrypted, to be finished
/// ([`InboundSa::finish`]) by the same SA. Only `open` makes one.
#[derive(Debug)]
#[must_use]
pub struct Authentic {
    seq: u64,
    /// Recorded in the anti-replay window already ([`InboundSa::commit_run`]).
    committed: bool,
}

/// What came out of a decapsulated packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    /// 4 or 6.
    pub inner_version: u8,
    /// The 64-bit sequence number that was authenticated.
    pub seq: u64,
}

/// The receiving half of an SA. Each core gets its own copy (`clone`): the cipher state is
/// private to the copy, the anti-replay window is shared (lock-free), so a packet replayed
/// towards another core's queue is caught as well.
///
/// Laid out in order, as [`OutboundSa`] is: what opening a packet reads (window, salt,
/// cipher) first, within [`Self::HOT_LEN`] bytes, the endpoint addresses after.
#[derive(Clone)]
#[repr(C)]
pub struct InboundSa {
    replay: Arc<ReplayWindow>,
    /// Where `replay`'s slots are, so that `hot_memory` does not read the window.
    replay_slots: SlotsAt,
    salt: [u8; SALT_LEN],
    pub spi: u32,
    aead: Cipher,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub encap: Option<UdpEncap>,
}

// The salt is key material (RFC 4106 8.1: the last 4 octets of the keying material): shown
// as redacted, as the cipher's key is.
impl core::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("salt", &"<redacted>")
            .field("next_seq", &self.seq.peek())
            .field("esn", &self.esn)
            .field("aead", &self.aead)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("encap", &self.encap)
            .finish()
    }
}

impl core::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("salt", &"<redacted>")
            .field("replay", &self.replay)
            .field("aead", &self.aead)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("encap", &self.encap)
            .finish()
    }
}

impl Drop for InboundSa {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl InboundSa {
    /// The bytes at the start of the SA that opening a packet reads (up to the end of the
    /// cipher).
    pub const HOT_LEN: usize = core::mem::offset_of!(InboundSa, aead) + core::mem::size_of::<Cipher>();

    pub fn new(cfg: &SaConfig) -> Result<Self, &'static str> {
        cfg.validate()?;
        let replay = Arc::new(ReplayWindow::new(cfg.replay_window, cfg.esn)?);
        Ok(InboundSa {
            spi: cfg.spi,
            local: cfg.local,
            remote: cfg.remote,
            encap: cfg.encap,
            aead: Cipher::new(cfg.backend, &cfg.key),
            salt: cfg.key.salt(),
            replay_slots: replay.slots_at(),
            replay,
        })
    }

    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Memory that opening a packet with sequence number (low half) `seq_low` reads beyond the
    /// SA itself, each as (start, bytes): the cipher's key state, the shared anti-replay
    /// window's head and its slot for that number. Addresses only, for prefetching: computed
    /// from the SA's own fields, without reading any of that memory.
    pub fn hot_memory(&self, seq_low: u32) -> [(*const u8, usize); 4] {
        let [k0, k1] = self.aead.key_state();
        [k0, k1, (Arc::as_ptr(&self.replay).cast(), 64), self.replay_slots.slot_memory(seq_low)]
    }

    /// The same SA (the cipher's key schedule shared, not rebuilt) with a fresh anti-replay
    /// window of the same size: for measurements that offer the same packets again.
    pub fn with_new_window(&self) -> Result<Self, &'static str> {
        let w = &self.replay;
        let size = u32::try_from(w.size()).map_err(|_| "replay window too large")?;
        let replay = Arc::new(ReplayWindow::new(size, w.esn())?);
        Ok(InboundSa {
            spi: self.spi,
            local: self.local,
            remote: self.remote,
            encap: self.encap,
            aead: self.aead.clone(),
            salt: self.salt,
            replay_slots: replay.slots_at(),
            replay,
        })
    }

    /// Checks, authenticates, decrypts and strips an ESP packet classified as `outer`, leaving
    /// the inner IP packet in `buf`. The order is RFC 4303 3.4.3 and 3.4.4: replay check, ICV
    /// check and decryption, and only then the window update.
    pub fn decapsulate<B: PacketBuf + ?Sized>(&self, outer: &EspOuter, buf: &mut B) -> Result<Decapsulated, EspError> {
        let authentic = self.open(outer, buf)?;
        self.finish(outer, buf, authentic)
    }

    /// The first step of [`Self::decapsulate`]: the replay check, then the ICV check and
    /// decryption in place. What it returns is all [`Self::finish`] takes, so that nothing
    /// unauthenticated reaches the window.
    ///
    /// A caller with a burst opens every packet before it finishes any: reading the trailer
    /// right after the cipher wrote it waits for the cipher's last store (a masked vector
    /// store, which a load cannot be forwarded from) to commit, and with intel-ipsec-mb that
    /// wait was half of the pipeline's inbound phase for 64-byte packets.
    pub fn open<B: PacketBuf + ?Sized>(&self, outer: &EspOuter, buf: &mut B) -> Result<Authentic, EspError> {
        codec::check_len(outer.esp_len())?;
        let seq = self.replay.check(outer.seq_low())?;
        let end = outer.esp_offset() + outer.esp_len();
        let Some(region) = buf.data_mut().get_mut(outer.esp_offset()..end) else {
            return Err(EspError::Truncated);
        };
        // Not authenticated: the window stays as it was.
        codec::authenticate_decrypt(&self.aead, &self.salt, seq, self.replay.esn(), region)?;
        Ok(Authentic { seq, committed: false })
    }

    /// Records the sequence numbers of a run of packets this SA opened in the anti-replay
    /// window, in order, before they are finished: one compare-and-swap for each block of 32
    /// numbers instead of one a packet (a locked instruction waits for every store before it
    /// to complete). A number recorded already (by any core, or earlier in the run) or fallen
    /// out of the window turns its packet's result into that error, as [`Self::finish`]
    /// would have; results that are errors already are left alone. The outcome is the same
    /// as finishing the packets one by one, and [`Self::finish`] leaves the window alone for
    /// the packets recorded here.
    pub fn commit_run<E: From<EspError>>(&self, run: &mut [Result<Authentic, E>]) {
        let window = &*self.replay;
        if window.size() == 0 {
            // Anti-replay off: nothing to record.
            for a in run.iter_mut().flatten() {
                a.committed = true;
            }
            return;
        }
        let mut i = 0;
        while i < run.len() {
            let Ok(first) = &run[i] else {
                i += 1;
                continue;
            };
            let (block, seq) = (first.seq >> BLOCK_BITS, first.seq);
            // The run's packets from `i` on with numbers in this block, up to the first in
            // another block (so that the order of blocks, which moves the window, is kept).
            let mut bits = 0u32;
            let mut end = i;
            while end < run.len() {
                match &run[end] {
                    Ok(a) if a.seq >> BLOCK_BITS == block => {
                        let bit = 1u32 << (a.seq & ((1 << BLOCK_BITS) - 1));
                        if let Err(e) = window.in_window(a.seq) {
                            run[end] = Err(e.into());
                        } else if bits & bit != 0 {
                            run[end] = Err(EspError::ReplayDuplicate.into());
                        } else {
                            bits |= bit;
                        }
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
                end += 1;
            }
            let recorded = window.commit_block(seq, bits);
            // Each packet still accepted here has a bit of `bits` to itself.
            for r in &mut run[i..end] {
                let Ok(a) = r else { continue };
                let bit = 1u32 << (a.seq & ((1 << BLOCK_BITS) - 1));
                match recorded {
                    Ok(fresh) if fresh & bit != 0 => a.committed = true,
                    Ok(_) => *r = Err(EspError::ReplayDuplicate.into()),
                    Err(e) => *r = Err(e.into()),
                }
            }
            i = end;
        }
    }

    /// The second step of [`Self::decapsulate`], for a packet [`Self::open`] accepted: the
    /// trailer, the window update and the inner packet.
    pub fn finish<B: PacketBuf + ?Sized>(
        &self,
        outer: &EspOuter,
        buf: &mut B,
        authentic: Authentic,
    ) -> Result<Decapsulated, EspError> {
        let seq = authentic.seq;
        let end = outer.esp_offset() + outer.esp_len();
        let Some(region) = buf.data_mut().get_mut(outer.esp_offset()..end) else {
            return Err(EspError::Truncated);
        };
        // Committed before the trailer is checked: an authentic packet with a bad trailer was
        // still sent with this number, so it is recorded like any authenticated packet
        // (RFC 4303 3.4.3), then dropped.
        if !authentic.committed {
            self.replay.commit(seq)?;
        }
        let opened = codec::trailer(region)?;
        let inner_at = outer.esp_offset() + ESP_PREFIX_LEN;
        let inner = &mut buf.data_mut()[inner_at..inner_at + opened.payload_len];
        // RFC 4303 2.6: dummy packets are discarded silently (counted).
        // The inner header's own length wins over the payload length: anything after it is
        // TFC padding (RFC 4303 2.7).
        let (inner_version, inner_len) = match opened.next_header {
            PROTO_NONE => return Err(EspError::DummyPacket),
            PROTO_IPV4 => {
                let p = Ipv4Packet::new_checked(&*inner).map_err(|_| EspError::BadInnerPacket)?;
                if !p.checksum_ok() {
                    return Err(EspError::BadInnerPacket);
                }
                (4, p.total_len())
            }
            PROTO_IPV6 => {
                let p = Ipv6Packet::new_checked(&*inner).map_err(|_| EspError::BadInnerPacket)?;
                (6, p.total_len())
            }
            _ => return Err(EspError::BadNextHeader),
        };
        ecn_decapsulate(outer.tos(), &mut inner[..inner_len])?;
        let len_after_adj = buf.len() - inner_at;
        if !buf.adj(inner_at) || !buf.trim(len_after_adj - inner_len) {
            return Err(EspError::Truncated);
        }
        Ok(Decapsulated { inner_version, seq })
    }
}

/// RFC 6040 section 4.2 (normal mode), the decapsulation table: congestion experienced (CE)
/// on the outer header is carried to an ECN-capable inner header, and so is ECT(1) over
/// ECT(0); a CE mark over a Not-ECT inner packet cannot be passed on, so the packet is dropped.
fn ecn_decapsulate(outer_tos: u8, inner: &mut [u8]) -> Result<(), EspError> {
    const NOT_ECT: u8 = 0b00;
    const ECT1: u8 = 0b01;
    const ECT0: u8 = 0b10;
    const CE: u8 = 0b11;
    let outer = outer_tos & 0b11;
    let v4 = inner[0] >> 4 == 4;
    let tos = if v4 { inner[1] } else { (inner[0] << 4) | (inner[1] >> 4) };
    let new = match (tos & 0b11, outer) {
        (NOT_ECT, CE) => return Err(EspError::CongestionOnNotEct),
        (NOT_ECT, _) | (CE, _) => return Ok(()),
        (_, CE) => CE,
        (ECT0, ECT1) => ECT1,
        _ => return Ok(()),
    };
    let new_tos = (tos & !0b11) | new;
    if v4 {
        let old = inner[1];
        inner[1] = new_tos;
        // Incremental checksum update (RFC 1624 eqn. 3): HC' = ~(~HC + ~m + m').
        let hc = u16::from_be_bytes([inner[10], inner[11]]);
        let m = u16::from_be_bytes([inner[0], old]);
        let m2 = u16::from_be_bytes([inner[0], new_tos]);
        let c = checksum_finish(u32::from(!hc) + u32::from(!m) + u32::from(m2));
        inner[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        inner[0] = (inner[0] & 0xf0) | (new_tos >> 4);
        inner[1] = (inner[1] & 0x0f) | (new_tos << 4);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::GcmKeyLen;
    use crate::buf::VecBuf;
    use crate::wire::{Classified, classify};

    fn cfg(esn: bool) -> SaConfig {
        SaConfig {
            spi: 0x1234,
            key: KeyMaterial::new(GcmKeyLen::Aes128, &[7; 16], &[1, 2, 3, 4]).unwrap(),
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            encap: None,
            esn,
            replay_window: 64,
            backend: Default::default(),
        }
    }

    fn inner_v4(tos: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[1] = tos;
        p[3] = 40;
        p[8] = 64;
        p[9] = 17;
        let c = checksum_finish(checksum_add(0, &p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn seal(out: &OutboundSa, seq: u64, inner: &[u8], outer_tos: Option<u8>) -> VecBuf {
        let mut b = VecBuf::new(inner, 64, 64);
        out.encapsulate(seq, &mut b).unwrap();
        if let Some(t) = outer_tos {
            let d = b.data_mut();
            d[1] = t;
            d[10] = 0;
            d[11] = 0;
            let c = checksum_finish(checksum_add(0, &d[..20]));
            d[10..12].copy_from_slice(&c.to_be_bytes());
        }
        b
    }

    fn open(inb: &InboundSa, mut b: VecBuf) -> Result<VecBuf, EspError> {
        let Ok(Classified::Esp(o)) = classify(b.data()) else { panic!("not ESP") };
        inb.decapsulate(&o, &mut b).map(|_| b)
    }

    /// The window's slot that `hot_memory` names (from the SA's copy of where the slots are)
    /// is the one the window itself reads, for the SA, its per-core copies and an SA with a
    /// new window; and none without anti-replay.
    #[test]
    fn debug_output_shows_no_key_material() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let inb = InboundSa::new(&cfg(false)).unwrap();
        for text in [format!("{out:?}"), format!("{inb:?}")] {
            // Key bytes 7, salt 1, 2, 3, 4 (see `cfg`).
            assert!(!text.contains("7, 7") && !text.contains("1, 2, 3, 4"), "{text}");
            assert!(text.contains("salt: \"<redacted>\"") && text.contains("spi: 0x1234"), "{text}");
        }
    }

    #[test]
    fn numbers_past_the_end_stay_unusable() {
        for esn in [false, true] {
            let sa = OutboundSa::new(&cfg(esn), Arc::new(SeqCounter::starting_at(1))).unwrap();
            let last = sa.seq_last();
            assert_eq!(last, if esn { (1 << 63) - 1 } else { (1 << 32) - 1 });
            assert!(sa.seq_usable(last) && !sa.seq_usable(last + 1) && !sa.seq_usable(0));
            // A counter at the end, taken further by bursts: nothing it gives is usable again
            // for as long as anything can run (with ESN, 2^63 more numbers).
            let c = SeqCounter::starting_at(last - 1);
            assert_eq!((c.reserve(4), c.reserve(4)), (last - 1, last + 3));
            assert!(!sa.seq_usable(c.peek()) && !sa.seq_usable(u64::MAX));
        }
    }

    #[test]
    fn hot_memory_names_the_windows_own_slot() {
        let inb = InboundSa::new(&SaConfig { replay_window: 1024, ..cfg(true) }).unwrap();
        let fresh = inb.with_new_window().unwrap();
        for sa in [&inb, &inb.clone(), &fresh] {
            for seq in [1u32, 31, 32, 1000, 0x8000_0000, 0xffff_fff0] {
                let m = sa.hot_memory(seq);
                assert_eq!(m[2].0, Arc::as_ptr(&sa.replay).cast());
                assert_eq!(m[3], sa.replay_window().slots_at().slot_memory(seq), "seq {seq:#x}");
                assert_eq!(m[3].1, 8);
            }
        }
        assert_ne!(fresh.hot_memory(1)[3].0, inb.hot_memory(1)[3].0, "a new window has slots of its own");
        let off = InboundSa::new(&SaConfig { replay_window: 0, ..cfg(false) }).unwrap();
        assert_eq!(off.hot_memory(5)[3].1, 0, "anti-replay off");
    }

    #[test]
    fn ecn_decapsulation_follows_rfc_6040() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let inb = InboundSa::new(&cfg(false)).unwrap();
        // (inner ECN, outer ECN) -> inner ECN after decapsulation, or None for a drop.
        let table = [
            (0b00, 0b00, Some(0b00)),
            (0b00, 0b10, Some(0b00)),
            (0b00, 0b11, None),
            (0b10, 0b01, Some(0b01)),
            (0b10, 0b11, Some(0b11)),
            (0b01, 0b10, Some(0b01)),
            (0b01, 0b11, Some(0b11)),
            (0b11, 0b00, Some(0b11)),
        ];
        for (seq, (inner, outer, want)) in table.into_iter().enumerate() {
            let b = seal(&out, seq as u64 + 1, &inner_v4(0xb8 | inner), Some(0xb8 | outer));
            match (open(&inb, b), want) {
                (Ok(b), Some(w)) => {
                    assert_eq!(b.data()[1], 0xb8 | w, "inner {inner:02b} outer {outer:02b}");
                    assert!(crate::wire::Ipv4Packet::new_checked(b.data()).unwrap().checksum_ok());
                }
                (Err(EspError::CongestionOnNotEct), None) => {}
                (r, w) => panic!("inner {inner:02b} outer {outer:02b}: {r:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn outer_header_copies_dscp_and_df() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let mut inner = inner_v4(0xb8);
        inner[6] = 0x40;
        let c = checksum_finish(checksum_add(0, &{
            let mut h = inner[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        }));
        inner[10..12].copy_from_slice(&c.to_be_bytes());
        let b = seal(&out, 1, &inner, None);
        let p = crate::wire::Ipv4Packet::new_checked(b.data()).unwrap();
        assert_eq!(p.tos(), 0xb8);
        assert!(p.dont_fragment());
        assert!(p.checksum_ok());
        assert_eq!(p.protocol(), PROTO_ESP);
    }

    #[test]
    fn tunnel_mtu_is_the_largest_inner_packet_that_fits() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        for mtu in 1280..1300 {
            let max = out.max_inner_len(mtu);
            assert!(out.encapsulated_len(max) <= mtu, "mtu {mtu}");
            assert!(out.encapsulated_len(max + 1) > mtu, "mtu {mtu}");
        }
    }

    #[test]
    fn the_last_sequence_number_is_never_sent() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let mut b = VecBuf::new(&inner_v4(0), 64, 64);
        assert_eq!(out.encapsulate(u64::from(u32::MAX) + 1, &mut b), Err(EspError::SeqExhausted));
        assert_eq!(out.encapsulate(0, &mut b), Err(EspError::SeqExhausted));
        assert!(out.encapsulate(u64::from(u32::MAX), &mut b).is_ok());
        let esn = OutboundSa::new(&cfg(true), Arc::new(SeqCounter::default())).unwrap();
        let mut b = VecBuf::new(&inner_v4(0), 64, 64);
        assert!(esn.encapsulate(u64::from(u32::MAX) + 1, &mut b).is_ok());
    }

    #[test]
    fn authentic_packet_with_bad_inner_still_moves_the_window() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let inb = InboundSa::new(&cfg(false)).unwrap();
        // CE over Not-ECT: authentic, dropped after the window is updated.
        let b = seal(&out, 9, &inner_v4(0), Some(0b11));
        let again = b.clone();
        assert_eq!(open(&inb, b).err(), Some(EspError::CongestionOnNotEct));
        assert_eq!(inb.replay_window().top(), 9);
        assert_eq!(open(&inb, again).err(), Some(EspError::ReplayDuplicate));
        // A forged packet does not move it.
        let mut forged = seal(&out, 50, &inner_v4(0), None);
        let n = forged.len();
        forged.data_mut()[n - 1] ^= 1;
        assert_eq!(open(&inb, forged).err(), Some(EspError::AuthFailed));
        assert_eq!(inb.replay_window().top(), 9);
    }

    /// Packets 5, `seq` and 5 again, with their outer headers.
    fn burst_with_a_copy(out: &OutboundSa, seq: u64) -> ([VecBuf; 3], Vec<EspOuter>) {
        let first = seal(out, 5, &inner_v4(0), None);
        let burst = [first.clone(), seal(out, seq, &inner_v4(0), None), first];
        let outers = burst
            .iter()
            .map(|b| match classify(b.data()) {
                Ok(Classified::Esp(o)) => o,
                other => panic!("{other:?}"),
            })
            .collect();
        (burst, outers)
    }

    /// A burst is opened whole before any packet is finished: two copies of one packet in it
    /// both pass the replay check, and the window lets only the first through; an opened
    /// packet leaves the window alone until it is finished.
    #[test]
    fn copies_opened_in_one_burst_finish_once() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let inb = InboundSa::new(&cfg(false)).unwrap();
        let (mut burst, outers) = burst_with_a_copy(&out, 7);
        let opened: Vec<Authentic> = burst.iter_mut().zip(&outers).map(|(b, o)| inb.open(o, b).unwrap()).collect();
        assert_eq!(inb.replay_window().top(), 0, "opening alone must not move the window");
        let finished: Vec<_> =
            burst.iter_mut().zip(&outers).zip(opened).map(|((b, o), a)| inb.finish(o, b, a).map(|d| d.seq)).collect();
        assert_eq!(finished, [Ok(5), Ok(7), Err(EspError::ReplayDuplicate)]);
        assert_eq!(burst[0].data(), &inner_v4(0)[..]);
        assert_eq!(inb.replay_window().top(), 7);
    }

    /// The same burst recorded with `commit_run` before it is finished: the copy is refused
    /// there, and finishing the others does not record them twice (which would refuse them).
    #[test]
    fn a_run_committed_at_once_finishes_without_committing_again() {
        let out = OutboundSa::new(&cfg(false), Arc::new(SeqCounter::default())).unwrap();
        let inb = InboundSa::new(&cfg(false)).unwrap();
        let (mut burst, outers) = burst_with_a_copy(&out, 40);
        let mut opened: Vec<Result<Authentic, EspError>> =
            burst.iter_mut().zip(&outers).map(|(b, o)| inb.open(o, b)).collect();
        inb.commit_run(&mut opened);
        assert_eq!(inb.replay_window().top(), 40);
        assert_eq!(opened[2].as_ref().err(), Some(&EspError::ReplayDuplicate));
        let finished: Vec<_> = burst
            .iter_mut()
            .zip(&outers)
            .zip(opened)
            .map(|((b, o), a)| a.and_then(|a| inb.finish(o, b, a)).map(|d| d.seq))
            .collect();
        assert_eq!(finished, [Ok(5), Ok(40), Err(EspError::ReplayDuplicate)]);
        assert_eq!(burst[1].data(), &inner_v4(0)[..]);
    }

    /// Four cores' copies of one SA record every number in runs (each core in its own
    /// order): each number is accepted by exactly one of them.
    #[test]
    fn commit_run_accepts_each_number_once_across_cores() {
        let sa = InboundSa::new(&SaConfig { replay_window: 1024, ..cfg(false) }).unwrap();
        let n = 100_000u64;
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let sa = sa.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    let seqs: Vec<u64> = (1..=n).collect();
                    // Runs of 1 to 32 packets; half the cores swap neighbours.
                    for run in seqs.chunks(1 + (t as usize * 11) % 32) {
                        let mut r: Vec<Result<Authentic, EspError>> =
                            run.iter().map(|&seq| Ok(Authentic { seq, committed: false })).collect();
                        if t % 2 == 1 {
                            r.reverse();
                        }
                        sa.commit_run(&mut r);
                        mine.extend(r.into_iter().flatten().map(|a| a.seq));
                    }
                    mine
                })
            })
            .collect();
        let all = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        crate::replay::assert_each_accepted_once(all, n, "window 1024");
        assert_eq!(sa.replay_window().top(), n);
    }

    /// `commit_run` over runs of numbers (in order, reordered, repeated, too old, with
    /// results that are errors already) decides each packet as committing it alone would.
    #[test]
    fn commit_run_agrees_with_committing_one_by_one() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for window in [64u32, 1024] {
            let sa_cfg = SaConfig { replay_window: window, ..cfg(false) };
            let batched = InboundSa::new(&sa_cfg).unwrap();
            let single = InboundSa::new(&sa_cfg).unwrap();
            let mut base = 1u64;
            for _ in 0..2000 {
                let len = 1 + next(40) as usize;
                let mut run = Vec::with_capacity(len);
                let mut want = Vec::with_capacity(len);
                for _ in 0..len {
                    // Mostly ahead and in order; sometimes back into or past the window, or
                    // a number just used.
                    let seq = match next(10) {
                        0 => base.saturating_sub(next(u64::from(window) + 80)),
                        1 => base.saturating_sub(1),
                        _ => base,
                    };
                    base += next(3);
                    if next(12) == 0 {
                        run.push(Err(EspError::AuthFailed));
                        want.push(Err(EspError::AuthFailed));
                    } else {
                        run.push(Ok(Authentic { seq, committed: false }));
                        want.push(single.replay_window().commit(seq).map(|()| seq));
                    }
                }
                batched.commit_run(&mut run);
                let got: Vec<Result<u64, EspError>> = run
                    .iter()
                    .map(|r| match r {
                        Ok(a) => {
                            assert!(a.committed, "an accepted packet is marked committed");
                            Ok(a.seq)
                        }
                        Err(e) => Err(*e),
                    })
                    .collect();
                assert_eq!(got, want, "window {window}");
                assert_eq!(batched.replay_window().top(), single.replay_window().top());
            }
        }
    }
}
