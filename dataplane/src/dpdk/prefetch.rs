//! Cache prefetch hints (`rte_prefetch0` in DPDK): a worker asks for the memory of a whole
//! burst's SAs before it needs any of it, so that the cache misses of different packets
//! overlap instead of following one another. With thousands of tunnels, each packet's SA,
//! key schedule and counters are in no cache; a burst waits for one miss instead of ~8 x 32.

/// Asks for the cache line holding `p` to be brought into all cache levels. A hint only: it
/// never faults, whatever the address, and changes nothing a program can observe but time.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // Safety: PREFETCHT0 (SSE, part of every x86-64 CPU) does not access memory
    // architecturally: it cannot fault, even on an invalid or unmapped address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] for every cache line that the first `len.min(max)` bytes from `p` touch.
#[inline(always)]
pub fn prefetch_range(p: *const u8, len: usize, max: usize) {
    let len = len.min(max);
    if len == 0 {
        return;
    }
    // From the line holding the first byte to the line holding the last.
    let skew = p.addr() & 63;
    let first = p.wrapping_sub(skew);
    for off in (0..skew + len).step_by(64) {
        prefetch(first.wrapping_add(off));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_is_harmless() {
        let v = [1u8; 200];
        prefetch(v.as_ptr());
        prefetch_range(v.as_ptr(), v.len(), 1024);
        prefetch(core::ptr::null::<u8>());
        prefetch(usize::MAX as *const u8);
        assert_eq!(v[199], 1);
    }
}
