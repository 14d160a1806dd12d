//! Anti-replay window (RFC 4303 section 3.4.3, Appendix A) with 64-bit extended sequence
//! numbers (Appendix A2), shared by every core that receives on the SA and lock-free.
//!
//! The bitmap is a ring of slots, one more than the window needs. Each slot is one atomic
//! 64-bit word: the high half is the number of the 32-packet block it describes, the low half
//! that block's bits. A slot is only ever moved to a newer block, with a compare-and-swap, so
//! sliding the window needs no clearing pass (which could race with another core setting a bit)
//! and a sequence number is accepted at most once whatever the cores do concurrently.
//!
//! The window's right edge moves a whole block at a time: a commit makes its locked update of
//! the edge only when its number opens a newer block than the edge's, once in 32 packets of an
//! in-order stream, instead of once a packet (the compare-and-swap of the slot is the one locked
//! instruction the other 31 pay). A number is too old when it lies `size` or more below the
//! start of the newest block, so the window reaches between `size` and `size + 31` numbers
//! below the highest one received: at least the size configured, which is the receiver's
//! choice (RFC 4303 3.4.3), and within the slots, which span one block more than `size`.
//!
//! Use: [`ReplayWindow::check`] before authenticating, [`ReplayWindow::commit`] only after the
//! ICV verified (RFC 4303 3.4.3: the window is updated only if the integrity verification
//! succeeds). `commit` decides again, atomically, so two copies of one packet (in one burst, or
//! on two cores) cannot both get through.

use crate::EspError;
use core::sync::atomic::{AtomicU64, Ordering};

/// Smallest and largest window the gateway accepts, in packets.
pub const MIN_WINDOW: u32 = 64;
pub const MAX_WINDOW: u32 = 1 << 16;

/// Sequence numbers per slot.
pub(crate) const BLOCK_BITS: u32 = 5;
const BLOCK: u64 = 1 << BLOCK_BITS;

#[derive(Debug)]
pub struct ReplayWindow {
    /// A sequence number authenticated in the newest block any has been authenticated in (the
    /// first one there, single-threaded); 0 before the first packet (0 is never sent). Only its
    /// block counts for the window (see the module's documentation).
    edge: AtomicU64,
    /// Window size in packets, a multiple of 64.
    size: u64,
    esn: bool,
    slots: Box<[AtomicU64]>,
}

#[inline]
fn block_start(seq: u64) -> u64 {
    seq & !(BLOCK - 1)
}

#[inline]
fn block_of(seq: u64) -> u32 {
    // Block numbers are compared with wrapping arithmetic, so 32 bits are enough even with ESN:
    // every block a slot can hold lies within one window of the top.
    (seq >> BLOCK_BITS) as u32
}

/// Where a window's slots lie (they never move: the window is made with all of them), copied
/// out of it. With many SAs, reading the window only to learn where a packet's slot is would
/// be a cache miss of its own, waited for by the phase that asks for the window's lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotsAt {
    base: usize,
    len: usize,
}

impl SlotsAt {
    /// The slot for a packet with this low half of a sequence number, as (start, bytes), for
    /// prefetching only; nothing with anti-replay off. (The slot index depends on the low bits
    /// alone: the ring has at most 2^12 slots of 2^5 numbers.)
    #[inline]
    pub fn slot_memory(&self, seq_low: u32) -> (*const u8, usize) {
        if self.len == 0 {
            return (core::ptr::null(), 0);
        }
        // The slot count is a power of two.
        let i = ((seq_low >> BLOCK_BITS) as usize) & (self.len - 1);
        let at = (self.base as *const u8).wrapping_add(i * core::mem::size_of::<AtomicU64>());
        (at, core::mem::size_of::<AtomicU64>())
    }
}

impl ReplayWindow {
    /// `size` is rounded up to a multiple of 64 and must lie in [`MIN_WINDOW`, `MAX_WINDOW`];
    /// 0 disables anti-replay, which RFC 4303 3.4.3 leaves to the receiver (for manually keyed
    /// SAs, or to measure as DPDK's ipsec-secgw does by default). ESN needs the window.
    pub fn new(size: u32, esn: bool) -> Result<Self, &'static str> {
        if size == 0 && !esn {
            return Ok(ReplayWindow { edge: AtomicU64::new(0), size: 0, esn, slots: Box::new([]) });
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return Err("replay window must be between 64 and 65536 packets, or 0 (off, without ESN)");
        }
        let size = u64::from(size).div_ceil(64) * 64;
        // One slot more than the window spans, rounded up to a power of two for a cheap index.
        let slots = ((size / BLOCK + 1) as usize).next_power_of_two();
        let slots = (0..slots).map(|_| AtomicU64::new(0)).collect();
        Ok(ReplayWindow { edge: AtomicU64::new(0), size, esn, slots })
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    /// The highest authenticated sequence number, for operators and tests: the highest bit set
    /// in the newest block's slot. (While other cores commit, a moment old.)
    pub fn top(&self) -> u64 {
        let edge = self.edge.load(Ordering::Acquire);
        if self.size == 0 || edge == 0 {
            return edge;
        }
        let slot = self.slot(edge).load(Ordering::Acquire);
        let bits = slot as u32;
        if (slot >> 32) as u32 != block_of(edge) || bits == 0 {
            return edge;
        }
        block_start(edge) | u64::from(31 - bits.leading_zeros())
    }

    /// The first number of the newest block: the window reaches `size` below it.
    #[inline]
    fn edge_block_start(&self) -> u64 {
        block_start(self.edge.load(Ordering::Acquire))
    }
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// The 64-bit sequence number a received low-order 32 bits stand for (RFC 4303 A2.2).
    /// Without ESN the high half is always 0. `None` if it would lie below zero, or, in case
    /// A, if it lies below the window but reading it as the next subspace would put it more
    /// than 3 * 2^30 ahead: such a packet arrived later than the window reaches (reordered
    /// across cores or queues by far less than 2^30), it is not three billion packets early.
    /// A2.2 would have it fail authentication; calling it too old saves the decryption and
    /// tells the operator what happened.
    pub fn infer(&self, seq_low: u32) -> Option<u64> {
        if !self.esn {
            return Some(u64::from(seq_low));
        }
        // The window's right edge as `check` places it (module documentation).
        let top = self.edge_block_start();
        let tl = top as u32;
        let th = (top >> 32) as u32;
        let w = self.size as u32;
        let bottom = tl.wrapping_sub(w).wrapping_add(1);
        let seq_high = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_low >= bottom {
                Some(th)
            } else if tl - seq_low < 1 << 30 {
                // Below the window and not far: late, not the next subspace (see above).
                None
            } else {
                th.checked_add(1)
            }
        } else if seq_low >= bottom {
            // Case B: the window spans two subspaces and seq_low is in the lower one.
            th.checked_sub(1)
        } else {
            Some(th)
        };
        seq_high.map(|h| (u64::from(h) << 32) | u64::from(seq_low))
    }

    /// Checks a received sequence number before authentication. Returns the full 64-bit number
    /// to authenticate with (it goes into the AAD under ESN, RFC 4106 section 5).
    pub fn check(&self, seq_low: u32) -> Result<u64, EspError> {
        if self.size == 0 {
            return Ok(u64::from(seq_low));
        }
        let seq = self.infer(seq_low).ok_or(EspError::ReplayTooOld)?;
        self.check_full(seq).map(|()| seq)
    }

    pub(crate) fn in_window(&self, seq: u64) -> Result<(), EspError> {
        if seq == 0 {
            // RFC 4303 3.3.3: the first packet sent has sequence number 1; 0 is never valid.
            return Err(EspError::ReplayTooOld);
        }
        let top = self.edge_block_start();
        if seq <= top && top - seq >= self.size {
            return Err(EspError::ReplayTooOld);
        }
        Ok(())
    }

    /// Reads the slot of `seq`: Ok(true) if already received, Err if the slot has moved on.
    #[inline]
    fn seen(slot: u64, seq: u64) -> Result<bool, EspError> {
        let tag = (slot >> 32) as u32;
        match block_of(seq).wrapping_sub(tag) as i32 {
            // The slot holds a newer block: this number has left the window.
            d if d < 0 => Err(EspError::ReplayTooOld),
            0 => Ok(slot & (1 << (seq % BLOCK)) != 0),
            // An older block: stale, this number is unseen.
            _ => Ok(false),
        }
    }

    fn check_full(&self, seq: u64) -> Result<(), EspError> {
        self.in_window(seq)?;
        match Self::seen(self.slot(seq).load(Ordering::Acquire), seq)? {
            true => Err(EspError::ReplayDuplicate),
            false => Ok(()),
        }
    }

    /// Records an authenticated sequence number and slides the window. Fails, changing nothing,
    /// if the number was committed already (by any core) or has fallen out of the window.
    pub fn commit(&self, seq: u64) -> Result<(), EspError> {
        if self.size == 0 {
            return Ok(());
        }
        self.in_window(seq)?;
        match self.commit_block(seq, 1 << (seq % BLOCK)) {
            Ok(0) => Err(EspError::ReplayDuplicate),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records several authenticated numbers of one block with one compare-and-swap: bit `i`
    /// of `bits` stands for `block_start(seq) + i`, and each of them must have passed
    /// [`Self::in_window`]. Returns the bits that were not recorded before (the numbers
    /// accepted now; the others are duplicates), or an error, changing nothing, if the block
    /// has left the window. With anti-replay off, all of `bits`.
    pub(crate) fn commit_block(&self, seq: u64, bits: u32) -> Result<u32, EspError> {
        if self.size == 0 {
            return Ok(bits);
        }
        let slot = self.slot(seq);
        let block = block_of(seq);
        let mut cur = slot.load(Ordering::Acquire);
        let fresh = loop {
            let (fresh, new) = match block.wrapping_sub((cur >> 32) as u32) as i32 {
                // The slot holds a newer block: these numbers have left the window.
                d if d < 0 => return Err(EspError::ReplayTooOld),
                // Same block: add the bits.
                0 => (bits & !(cur as u32), cur | u64::from(bits)),
                // An older block: take the slot over for this one.
                _ => (bits, (u64::from(block) << 32) | u64::from(bits)),
            };
            if fresh == 0 {
                // All seen already: nothing to write.
                return Ok(0);
            }
            match slot.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break fresh,
                Err(now) => cur = now,
            }
        };
        // Only a newer block (or the first number) moves the edge: a locked update once per
        // block in order.
        let edge = self.edge.load(Ordering::Acquire);
        if edge == 0 || block_start(seq) > block_start(edge) {
            self.edge.fetch_max(seq, Ordering::AcqRel);
        }
        Ok(fresh)
    }

    /// Where the slots lie, as plain numbers: an SA keeps a copy so that it can name a
    /// packet's slot without reading the window (see [`SlotsAt`]).
    pub fn slots_at(&self) -> SlotsAt {
        SlotsAt { base: self.slots.as_ptr() as usize, len: self.slots.len() }
    }

    #[inline]
    fn slot(&self, seq: u64) -> &AtomicU64 {
        // The slot count is a power of two.
        &self.slots[((seq >> BLOCK_BITS) as usize) & (self.slots.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &ReplayWindow, seq_low: u32) -> Result<u64, EspError> {
        let s = w.check(seq_low)?;
        w.commit(s)?;
        Ok(s)
    }

    #[test]
    fn rejects_zero_duplicates_and_too_old() {
        let w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(0), Err(EspError::ReplayTooOld));
        assert_eq!(accept(&w, 1), Ok(1));
        assert_eq!(accept(&w, 1), Err(EspError::ReplayDuplicate));
        assert_eq!(accept(&w, 100), Ok(100));
        // 100 is in the block 96..=127, and the window reaches 64 below its start.
        assert_eq!(accept(&w, 33), Ok(33), "inside the window, unseen");
        assert_eq!(accept(&w, 32), Err(EspError::ReplayTooOld), "96 - 32 = 64 = window size");
        assert_eq!(accept(&w, 33), Err(EspError::ReplayDuplicate));
        assert_eq!(w.top(), 100);
        assert_eq!(accept(&w, 99), Ok(99));
        assert_eq!(w.top(), 100, "a lower number does not move the top");
        assert_eq!(accept(&w, 127), Ok(127));
        assert_eq!(w.top(), 127);
        // A new block moves the window: 128 - 64 = 64 is its bottom.
        assert_eq!(accept(&w, 130), Ok(130));
        assert_eq!(w.top(), 130);
        assert_eq!(accept(&w, 64), Err(EspError::ReplayTooOld));
        assert_eq!(accept(&w, 65), Ok(65));
    }

    #[test]
    fn size_zero_turns_anti_replay_off_without_esn_only() {
        let w = ReplayWindow::new(0, false).unwrap();
        for _ in 0..3 {
            assert_eq!(accept(&w, 7), Ok(7), "the same number again and again");
        }
        assert!(ReplayWindow::new(0, true).is_err());
        assert!(ReplayWindow::new(32, false).is_err());
    }

    #[test]
    fn commit_rechecks_so_a_burst_cannot_pass_a_duplicate() {
        let w = ReplayWindow::new(128, false).unwrap();
        let a = w.check(5).unwrap();
        let b = w.check(5).unwrap();
        assert!(w.commit(a).is_ok());
        assert_eq!(w.commit(b), Err(EspError::ReplayDuplicate));
    }

    #[test]
    fn failed_check_changes_nothing() {
        let w = ReplayWindow::new(64, false).unwrap();
        accept(&w, 10).unwrap();
        let _ = w.check(5000);
        assert_eq!(w.top(), 10, "check alone must not slide the window");
        assert_eq!(w.check(5000), Ok(5000));
        assert_eq!(w.check(10), Err(EspError::ReplayDuplicate));
    }

    #[test]
    fn sliding_far_clears_old_bits() {
        let w = ReplayWindow::new(64, false).unwrap();
        for s in 1..=64 {
            accept(&w, s).unwrap();
        }
        accept(&w, 64 + 64 * 3 + 5).unwrap();
        // Everything between the old and new top that is inside the window must read as unseen.
        for s in (64 + 64 * 3 + 5 - 63)..(64 + 64 * 3 + 5) {
            assert_eq!(w.check(s), Ok(u64::from(s)), "seq {s}");
        }
    }

    /// Compares against a plain set-based model over a pseudo-random reordered stream.
    #[test]
    fn matches_a_simple_model_for_large_windows() {
        for size in [64u32, 192, 1024, 4096] {
            let w = ReplayWindow::new(size, false).unwrap();
            let size = w.size();
            let mut seen = std::collections::BTreeSet::new();
            // Highest accepted; the window reaches `size` below the start of its block.
            let mut top = 0u64;
            let mut x: u64 = 0x9e3779b97f4a7c15;
            for i in 1..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly increasing, with jitter back across and beyond the window.
                let seq = (i + (x % (2 * size + 10))).saturating_sub(size + 5).max(1);
                let expect = if seq + size <= top & !31 {
                    Err(EspError::ReplayTooOld)
                } else if seen.contains(&seq) {
                    Err(EspError::ReplayDuplicate)
                } else {
                    Ok(seq)
                };
                let got = accept(&w, seq as u32);
                assert_eq!(got, expect, "size {size} seq {seq} top {top}");
                if got.is_ok() {
                    seen.insert(seq);
                    top = top.max(seq);
                }
            }
        }
    }

    #[test]
    fn esn_infers_the_high_half_across_the_32_bit_boundary() {
        let w = ReplayWindow::new(64, true).unwrap();
        // Window near the top of the first subspace (case A).
        w.commit(0xffff_fff0).unwrap();
        assert_eq!(w.check(0xffff_fff5), Ok(0xffff_fff5));
        assert_eq!(w.check(3), Ok(0x1_0000_0003), "low bits wrapped: next subspace");
        w.commit(0x1_0000_0003).unwrap();
        // Window now spans the boundary (case B): old numbers belong to the lower subspace.
        assert_eq!(w.infer(0xffff_fffe), Some(0xffff_fffe));
        assert_eq!(w.check(0xffff_fffe), Ok(0xffff_fffe));
        assert_eq!(w.check(0xffff_fff0), Err(EspError::ReplayDuplicate));
        assert_eq!(w.check(7), Ok(0x1_0000_0007));
        // Below the window's bottom in the lower subspace reads as the far future of the upper
        // one (A2.2 case B, kept as the RFC has it: the window spans two subspaces only for
        // its first packets after a wrap); such an old packet then fails authentication.
        assert_eq!(w.check(0xffff_ff00), Ok(0x1_ffff_ff00));
    }

    /// A packet reordered further back than the window (say by a queue that fell behind) is
    /// too old, not a packet from the next 2^32 block (which A2.2 case A would make it, and
    /// which would then fail authentication as if forged).
    #[test]
    fn esn_late_packet_below_the_window_is_too_old() {
        let w = ReplayWindow::new(1024, true).unwrap();
        w.commit(0x7_0000_5000).unwrap();
        assert_eq!(w.check(0x5000 - 1023), Ok(0x7_0000_5000 - 1023), "the window's bottom");
        assert_eq!(w.check(0x5000 - 1024), Err(EspError::ReplayTooOld));
        assert_eq!(w.check(3), Err(EspError::ReplayTooOld));
        // Past the middle of the block, small numbers are the sender's next block (a jump of
        // more than 2^31, as the scapy interop test makes).
        w.commit(0x7_8000_0000).unwrap();
        assert_eq!(w.check(1), Ok(0x8_0000_0001));
        // The bound: 3 * 2^30 ahead is still the next block, one more is a late packet.
        w.commit(0x9_4000_0000).unwrap();
        assert_eq!(w.check(0), Ok(0xa_0000_0000));
        assert_eq!(w.check(1), Err(EspError::ReplayTooOld));
    }

    #[test]
    fn esn_case_b_in_the_first_subspace_never_goes_negative() {
        let w = ReplayWindow::new(64, true).unwrap();
        w.commit(10).unwrap();
        assert_eq!(w.infer(0xffff_fff0), None);
        assert_eq!(w.check(0xffff_fff0), Err(EspError::ReplayTooOld));
    }

    #[test]
    fn without_esn_the_high_half_is_zero() {
        let w = ReplayWindow::new(64, false).unwrap();
        w.commit(0xffff_fff0).unwrap();
        assert_eq!(w.check(3), Err(EspError::ReplayTooOld));
    }

    #[test]
    fn slot_memory_is_the_slot_a_packet_reads_even_with_esn() {
        let w = ReplayWindow::new(1024, true).unwrap();
        for seq in [1u64, 31, 32, 1000, 0x1_2345_6789, 0xffff_ffff_ffff_fff0] {
            let (at, len) = w.slots_at().slot_memory(seq as u32);
            assert_eq!(at, (w.slot(seq) as *const AtomicU64).cast(), "seq {seq:#x}");
            assert_eq!(len, 8);
        }
        assert_eq!(ReplayWindow::new(0, false).unwrap().slots_at().slot_memory(7).1, 0, "anti-replay off");
    }

    #[test]
    fn window_size_limits() {
        assert!(ReplayWindow::new(32, false).is_err());
        assert!(ReplayWindow::new(MAX_WINDOW + 1, false).is_err());
        assert_eq!(ReplayWindow::new(100, false).unwrap().size(), 128);
        assert_eq!(ReplayWindow::new(4096, true).unwrap().size(), 4096);
    }
}

/// Checks that the numbers cores accepted (`all`) are 1 to `n`, each once.
#[cfg(test)]
pub(crate) fn assert_each_accepted_once(mut all: Vec<u64>, n: u64, what: &str) {
    let accepted = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), accepted, "{what}: a sequence number was accepted twice");
    assert_eq!(accepted as u64, n, "{what}: every number accepted once");
}

#[cfg(test)]
mod concurrency {
    use super::*;
    use std::sync::Arc;

    /// Four threads offer every sequence number, each in its own slightly shuffled order
    /// (neighbours swapped): every number must be accepted by exactly one thread. The first
    /// offer of any number comes at most one ahead of the window's top, so nothing is too old.
    #[test]
    fn each_number_is_accepted_once_across_threads() {
        for size in [64u32, 1024] {
            let w = Arc::new(ReplayWindow::new(size, false).unwrap());
            let n = 200_000u64;
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let w = w.clone();
                    std::thread::spawn(move || {
                        let mut mine = Vec::new();
                        for i in 1..=n {
                            // Pairs (2k+1, 2k+2) are swapped by half of the threads.
                            let seq = if (i.div_ceil(2) + t) % 2 == 0 && i < n {
                                if i % 2 == 1 { i + 1 } else { i - 1 }
                            } else {
                                i
                            };
                            if let Ok(s) = w.check(seq as u32)
                                && w.commit(s).is_ok()
                            {
                                mine.push(s);
                            }
                        }
                        mine
                    })
                })
                .collect();
            let all = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            assert_each_accepted_once(all, n, &format!("window {size}"));
            assert_eq!(w.top(), n);
        }
    }
}
