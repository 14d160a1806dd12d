//! Safe wrappers over DPDK 22.11 (`dpdk-sys`): the only module of `dataplane` allowed to use
//! `unsafe`. Every unsafe block carries a `// Safety:` comment.
//!
//! # API
//!
//! EAL, errors, lcores and time ([`eal`]):
//! - `Eal::init(args: &[String]) -> Result<Eal, DpdkError>`: `rte_eal_init`; `args[0]` is the
//!   program name. Dropping the [`Eal`] waits for all workers, then calls `rte_eal_cleanup`.
//! - `DpdkError` (thiserror); failures from DPDK carry an [`RteErrno`] (code + `rte_strerror` text).
//! - `lcore_id() -> u32` ([`LCORE_ID_ANY`] off EAL threads), `main_lcore() -> u32`,
//!   `worker_lcores() -> Vec<u32>`, `lcore_cpus(lcore: u32) -> Vec<usize>` (the CPUs an lcore
//!   is pinned to), `socket_id() -> i32` ([`SOCKET_ID_ANY`] when unknown).
//! - [`affinity`]: the calling thread's CPUs, read and set; where the control thread goes.
//! - `launch(lcore: u32, f: impl FnOnce() + Send + 'static) -> Result<(), DpdkError>` (main lcore
//!   only; `rte_eal_remote_launch`), `wait_all() -> Result<(), DpdkError>` (waits for every worker;
//!   reports lcores whose closure panicked).
//! - `tsc() -> u64` (`rte_rdtsc`), `tsc_hz() -> u64`.
//!
//! Memory ([`mempool`], [`mbuf`]):
//! - `Mempool::new(name: &str, n_mbufs: u32, cache_size: u32, data_room_size: u16,
//!   socket_id: i32) -> Result<Mempool, DpdkError>` (`rte_pktmbuf_pool_create`); a `Clone + Send +
//!   Sync` handle; pools are never freed before `rte_eal_cleanup` (NIC rings hold their mbufs).
//! - `Mbuf`: an owned `#[repr(transparent)]` `NonNull<rte_mbuf>`, freed on drop, `Send`.
//!   `alloc(&Mempool) -> Option<Mbuf>`, `from_slice(&Mempool, &[u8]) -> Option<Mbuf>`, `data()`,
//!   `data_mut()`, `len()`, `pkt_len()`, `headroom()`, `tailroom()`, `is_contiguous()`, `port()`,
//!   `rss_hash() -> Option<u32>`, `into_raw()`, `unsafe from_raw()`, and [`esp::buf::PacketBuf`].
//!   **`data()` covers the first segment only**: for a multi-segment mbuf it is shorter than
//!   `pkt_len()`, and the `PacketBuf` grow/shrink methods refuse to act (None/false). Callers drop
//!   packets that are not `is_contiguous()`.
//!
//! Ports and bursts ([`port`]):
//! - `port_count() -> u16`, `port_by_name(&str) -> Option<u16>`, `port_name(u16) -> Option<String>`,
//!   `port_socket(u16) -> i32`.
//! - `Port::configure(port_id, nb_rxq, nb_txq, nb_desc, &Mempool) -> Result<Port, DpdkError>`:
//!   configure (RSS over IP/UDP when `nb_rxq > 1` and the device can), queues on the port's
//!   socket, start, promiscuous on (ENOTSUP ignored).
//! - `port_mac(u16) -> Result<[u8; 6], _>`, `set_port_mac(u16, [u8; 6]) -> Result<(), _>`,
//!   `port_stats(u16) -> Result<PortStats, _>`, `port_driver(u16) -> Result<(String, u32, u16), _>`
//!   (driver name, kernel interface index, most RX queues), `port_stop(u16)`, `port_close(u16)`, `link_up(u16)`,
//!   `link_is_up(u16) -> bool`.
//! - [`af_packet::RingDrops`]: the kernel's drops in front of a `net_af_packet` port's receive
//!   rings, which the driver does not count (`find(ifindex)`, `read() -> u64`).
//! - `rx_burst(port, queue, out: &mut Vec<Mbuf>) -> usize`: appends up to
//!   `out.capacity() - out.len()` mbufs, never allocates (reserve 32 or more beforehand).
//! - `tx_burst(port, queue, pkts: &mut Vec<Mbuf>) -> usize`: sends from the front, removes what
//!   was sent, leaves the rest in `pkts` for the caller to retry or drop.
//!
//! CPU cache hints ([`prefetch`]), here because they need `unsafe`:
//! - `prefetch(p: *const T)` (`rte_prefetch0`), `prefetch_range(p: *const u8, len, max)`.
//!
//! # Rules the types cannot check
//!
//! - Drop every `Mbuf` and stop the ports before the `Eal` (memory goes away in `rte_eal_cleanup`).
//! - A given (port, queue) is polled by one thread at a time; DPDK queues are not thread-safe.
//!   (Bursts on a port/queue that is not configured and started through [`Port::configure`] do
//!   nothing and return 0, so a wrong id is harmless.)
//! - Don't stop or close a port while another thread is still bursting on it.

#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod af_packet;
pub mod affinity;
pub mod eal;
mod error;
pub mod ipsec_mb;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod prefetch;

pub use eal::{
    Eal, LCORE_ID_ANY, SOCKET_ID_ANY, launch, lcore_cpus, lcore_id, main_lcore, socket_id, tsc, tsc_hz, wait_all,
    worker_lcores,
};
pub use error::{DpdkError, RteErrno};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{
    Port, PortStats, link_is_up, link_up, port_by_name, port_close, port_count, port_driver, port_mac, port_name,
    port_socket, port_stats, port_stop, rx_burst, set_port_mac, tx_burst,
};
pub use prefetch::{prefetch, prefetch_range};

#[cfg(test)]
mod tests {
    use super::*;
    use esp::buf::PacketBuf;

    #[test]
    fn mbuf_is_a_pointer() {
        use std::mem::{align_of, size_of};
        assert_eq!(size_of::<Mbuf>(), size_of::<*mut dpdk_sys::rte_mbuf>());
        assert_eq!(align_of::<Mbuf>(), align_of::<*mut dpdk_sys::rte_mbuf>());
        assert_eq!(size_of::<Option<Mbuf>>(), size_of::<*mut dpdk_sys::rte_mbuf>());
    }

    #[test]
    fn no_eal_means_errors_not_crashes() {
        // None of these may touch DPDK state that only exists after rte_eal_init.
        let mut v: Vec<Mbuf> = Vec::with_capacity(32);
        assert_eq!(rx_burst(0, 0, &mut v), 0);
        assert_eq!(tx_burst(0, 0, &mut v), 0);
        assert_eq!(rx_burst(u16::MAX, u16::MAX, &mut v), 0);
        assert!(matches!(Mempool::new("p", 63, 0, 2176, SOCKET_ID_ANY), Err(DpdkError::EalNotInitialised)));
        assert!(matches!(launch(1, || ()), Err(DpdkError::EalNotInitialised)));
        assert_eq!(port_count(), 0);
        assert_eq!(port_by_name("net_ring0"), None);
        assert!(worker_lcores().is_empty());
        let bad = vec!["prog".to_string(), "a\0b".to_string()];
        assert!(matches!(Eal::init(&bad), Err(DpdkError::NulInArgument(_))));
        let _ = <Mbuf as PacketBuf>::len; // the trait is implemented
    }

    #[test]
    fn errno_text() {
        let e = RteErrno::from_code(libc::ENOTSUP);
        assert_eq!(e.code, libc::ENOTSUP);
        assert!(!e.text.is_empty());
        assert!(RteErrno::from_code(1001).text.contains("secondary"), "{}", RteErrno::from_code(1001).text);
    }
}
