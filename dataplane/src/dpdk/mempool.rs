//! Packet buffer pools.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::eal::eal_running;
use super::error::{DpdkError, RteErrno};

/// A handle to a pool of packet mbufs (`rte_pktmbuf_pool_create`).
///
/// Pools are never freed: NIC rings and other cores may hold their mbufs at any time, so a pool
/// lives until `rte_eal_cleanup`. Cloning copies the handle.
#[derive(Clone)]
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
}

// Safety: the pool is created with the default multi-producer/multi-consumer ops, so get and
// put are thread-safe (per-lcore caches are used only by their own lcore); the handle itself is
// an immutable pointer to a pool that is never freed.
unsafe impl Send for Mempool {}
// Safety: as for Send; &Mempool only allows thread-safe operations.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n_mbufs` mbufs with `data_room_size` bytes of buffer each (headroom
    /// included: `RTE_MBUF_DEFAULT_BUF_SIZE` = 2048 + 128 is the usual value), a per-lcore cache
    /// of `cache_size`, on NUMA socket `socket_id` ([`SOCKET_ID_ANY`](super::SOCKET_ID_ANY)
    /// for any). `n_mbufs` is best a power of two minus one.
    pub fn new(
        name: &str,
        n_mbufs: u32,
        cache_size: u32,
        data_room_size: u16,
        socket_id: i32,
    ) -> Result<Mempool, DpdkError> {
        if !eal_running() {
            return Err(DpdkError::EalNotInitialised);
        }
        let cname = CString::new(name).map_err(|_| DpdkError::NulInArgument(name.to_owned()))?;
        // Safety: the EAL runs and cname is a valid C string; DPDK copies the name.
        let ptr =
            unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n_mbufs, cache_size, 0, data_room_size, socket_id) };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Mempool { ptr }),
            None => Err(DpdkError::Mempool { name: name.to_owned(), errno: RteErrno::last() }),
        }
    }

    /// The raw pool, for calls into `dpdk_sys`.
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// The pool's name.
    pub fn name(&self) -> String {
        // Safety: the pool is alive (never freed) and its name is a NUL-terminated array.
        unsafe { CStr::from_ptr((*self.ptr.as_ptr()).name.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Mbufs free in the pool, per-lcore caches included (approximate while others use it).
    pub fn avail_count(&self) -> u32 {
        // Safety: the pool is alive; the count only reads pool state.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs taken from the pool (approximate while others use it).
    pub fn in_use_count(&self) -> u32 {
        // Safety: as for avail_count.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool").field("name", &self.name()).field("avail", &self.avail_count()).finish()
    }
}
