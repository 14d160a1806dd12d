//! The receive-ring drops of `net_af_packet` ports, which DPDK's driver leaves out of its
//! counters.
//!
//! The driver receives through one AF_PACKET socket per queue, each with a memory-mapped
//! receive ring (`PACKET_RX_RING`, packet(7)). When a ring is full the kernel drops the frame
//! and counts it for that socket only, readable with `getsockopt(PACKET_STATISTICS)`. The
//! driver's `stats_get` sums its own queue counters and never asks (DPDK 22.11 through 24.11),
//! so a port's `imissed` stays 0 however many frames the kernel dropped in front of it. The
//! sockets are found here among the process's file descriptors, by the interface they are
//! bound to, and asked.
//!
//! `PACKET_STATISTICS` returns the counts since the previous call and resets them, so
//! [`RingDrops`] keeps the sum. Each drop reaches one reader: should a later driver read them
//! too (25.03 does, into `imissed`), `imissed` plus this sum still counts each drop once.

use std::cell::Cell;
use std::mem::{size_of, zeroed};
use std::os::raw::c_int;

use libc::{PACKET_STATISTICS, tpacket_stats};

/// The receive sockets of one port and what they dropped so far.
#[derive(Debug)]
pub struct RingDrops {
    fds: Vec<c_int>,
    total: Cell<u64>,
}

impl RingDrops {
    /// The AF_PACKET sockets of this process bound to interface `ifindex`: the driver's, one
    /// per queue pair. The driver opens them when EAL probes the device and closes them when
    /// the port stops or closes (depending on the 22.11 release): read them only before that.
    pub fn find(ifindex: u32) -> RingDrops {
        let fds = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<c_int>().ok())
            .filter(|&fd| bound_to(fd) == Some(ifindex))
            .collect();
        RingDrops { fds, total: Cell::new(0) }
    }

    /// How many sockets were found.
    pub fn sockets(&self) -> usize {
        self.fds.len()
    }

    /// Frames the kernel dropped on these sockets since they were opened: for want of room in
    /// their rings, mostly (the count also holds its other reasons, such as a failed
    /// allocation). Read it at least every 2^32 drops: the kernel's counter is 32 bits wide.
    pub fn read(&self) -> u64 {
        for &fd in &self.fds {
            // `struct tpacket_stats`: the TPACKET_V1/V2 rings' statistics (the driver's are V2).
            let mut st = tpacket_stats { tp_packets: 0, tp_drops: 0 };
            let mut len = size_of::<tpacket_stats>() as libc::socklen_t;
            // Safety: `st` is valid for writes of `len` bytes, and `len` for reads and writes; a
            // stale or foreign descriptor makes the call fail, it cannot write elsewhere.
            let ret =
                unsafe { libc::getsockopt(fd, libc::SOL_PACKET, PACKET_STATISTICS, (&raw mut st).cast(), &mut len) };
            if ret == 0 {
                self.total.set(self.total.get() + u64::from(st.tp_drops));
            }
        }
        self.total.get()
    }
}

/// The interface an AF_PACKET socket is bound to; `None` for any other descriptor.
fn bound_to(fd: c_int) -> Option<u32> {
    // Safety: an all-zero sockaddr_ll is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // Safety: `addr` is valid for writes of `len` bytes; the kernel writes at most that many
    // (an address that does not fit is truncated, and then `len` says so).
    let ret = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) };
    let whole = len as usize <= size_of::<libc::sockaddr_ll>();
    (ret == 0 && whole && c_int::from(addr.sll_family) == libc::AF_PACKET && addr.sll_ifindex > 0)
        .then_some(addr.sll_ifindex as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet socket of this process is found by the interface it is bound to (loopback,
    /// which every namespace has), and reading its statistics works and adds up.
    #[test]
    fn finds_this_process_packet_sockets() {
        // Safety: plain socket calls on a descriptor this test owns.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            eprintln!("no AF_PACKET sockets here (needs CAP_NET_RAW); nothing to check");
            return;
        }
        // Safety: a NUL-terminated name.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert!(lo > 0);
        // Safety: an all-zero sockaddr_ll is valid; bind reads `size_of` bytes of it.
        let bound = unsafe {
            let mut a: libc::sockaddr_ll = zeroed();
            a.sll_family = libc::AF_PACKET as u16;
            a.sll_ifindex = lo as i32;
            libc::bind(fd, (&raw const a).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        };
        assert_eq!(bound, 0);
        assert_eq!(bound_to(fd), Some(lo));
        // Not sockets, or not bound to an interface: none of them.
        assert_eq!(bound_to(0), None);
        assert_eq!(bound_to(-1), None);
        let drops = RingDrops::find(lo);
        assert!(drops.fds.contains(&fd), "{drops:?}");
        // Without a ring nothing is dropped for want of room in it.
        assert_eq!(drops.read(), 0);
        assert_eq!(drops.read(), 0);
        assert_eq!(RingDrops::find(u32::MAX).sockets(), 0);
        // Safety: closing the descriptor made above.
        unsafe { libc::close(fd) };
    }
}
