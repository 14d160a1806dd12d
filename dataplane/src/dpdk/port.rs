//! Ethernet ports: set-up, addresses, statistics, and the RX/TX bursts.

use std::ffi::{CStr, CString, c_char};
use std::sync::atomic::{AtomicU16, Ordering};

use dpdk_sys as sys;

use super::error::{DpdkError, RteErrno};
use super::mbuf::Mbuf;
use super::mempool::Mempool;

const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;

/// Queues set up and started by [`Port::configure`], per port (0 = not started). The bursts
/// check these: DPDK's burst functions do not validate ids, and an unset queue is a NULL
/// pointer inside the driver.
static RX_QUEUES: [AtomicU16; MAX_PORTS] = [const { AtomicU16::new(0) }; MAX_PORTS];
static TX_QUEUES: [AtomicU16; MAX_PORTS] = [const { AtomicU16::new(0) }; MAX_PORTS];

#[inline]
fn rx_ready(port: u16, queue: u16) -> bool {
    RX_QUEUES.get(usize::from(port)).is_some_and(|n| queue < n.load(Ordering::Acquire))
}

#[inline]
fn tx_ready(port: u16, queue: u16) -> bool {
    TX_QUEUES.get(usize::from(port)).is_some_and(|n| queue < n.load(Ordering::Acquire))
}

fn mark_stopped(port: u16) {
    if let (Some(rx), Some(tx)) = (RX_QUEUES.get(usize::from(port)), TX_QUEUES.get(usize::from(port))) {
        rx.store(0, Ordering::Release);
        tx.store(0, Ordering::Release);
    }
}

fn valid(port: u16) -> bool {
    // Safety: rte_eth_dev_is_valid_port range-checks the id and reads the static device table.
    unsafe { sys::rte_eth_dev_is_valid_port(port) != 0 }
}

fn check(port: u16, op: &'static str, ret: i32) -> Result<(), DpdkError> {
    if ret < 0 { Err(DpdkError::port(port, op, ret)) } else { Ok(()) }
}

/// Number of usable ports.
pub fn port_count() -> u16 {
    // Safety: reads the static device table.
    unsafe { sys::rte_eth_dev_count_avail() }
}

/// The id of the port named `name` (for a vdev, its name as given, e.g. "net_tap0").
pub fn port_by_name(name: &str) -> Option<u16> {
    let cname = CString::new(name).ok()?;
    let mut id = 0u16;
    // Safety: cname is a valid C string; id is a valid out pointer.
    let ret = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

/// The name of port `port`.
pub fn port_name(port: u16) -> Option<String> {
    let mut buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
    // Safety: buf has the RTE_ETH_NAME_MAX_LEN bytes the function may write, NUL included.
    let ret = unsafe { sys::rte_eth_dev_get_name_by_port(port, buf.as_mut_ptr()) };
    if ret != 0 {
        return None;
    }
    // Safety: on success buf holds a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// The NUMA socket of the port ([`SOCKET_ID_ANY`](super::SOCKET_ID_ANY) if unknown or invalid).
pub fn port_socket(port: u16) -> i32 {
    // Safety: the id is checked by the function.
    unsafe { sys::rte_eth_dev_socket_id(port) }
}

/// A port configured and started by [`Port::configure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub id: u16,
    pub nb_rxq: u16,
    pub nb_txq: u16,
    /// Descriptors per RX / TX queue, after the driver's adjustment.
    pub nb_rx_desc: u16,
    pub nb_tx_desc: u16,
    /// RSS is on (hash functions `rss_hf`), spreading flows over the RX queues.
    pub rss: bool,
    pub rss_hf: u64,
    pub socket: i32,
}

impl Port {
    /// Configures `port_id` with `nb_rxq` RX and `nb_txq` TX queues of `nb_desc` descriptors
    /// (adjusted to the driver's limits) on the port's NUMA socket, RX buffers from `pool`;
    /// RSS over IP and UDP when `nb_rxq > 1` and the device supports it; then starts the port
    /// and turns on promiscuous mode (where the driver has it).
    pub fn configure(port_id: u16, nb_rxq: u16, nb_txq: u16, nb_desc: u16, pool: &Mempool) -> Result<Port, DpdkError> {
        let einval = |op| DpdkError::Port { port: port_id, op, errno: RteErrno::from_code(libc::EINVAL) };
        if !valid(port_id) {
            return Err(DpdkError::Port { port: port_id, op: "configure", errno: RteErrno::from_code(libc::ENODEV) });
        }
        if nb_rxq == 0 || nb_txq == 0 || nb_desc == 0 {
            return Err(einval("configure: need at least one queue and descriptor"));
        }
        let mut info = sys::rte_eth_dev_info::default();
        // Safety: valid port; info is a valid out pointer.
        check(port_id, "dev_info_get", unsafe { sys::rte_eth_dev_info_get(port_id, &mut info) })?;
        if nb_rxq > info.max_rx_queues || nb_txq > info.max_tx_queues {
            return Err(einval("configure: more queues than the device has"));
        }

        let mut conf = sys::rte_eth_conf::default();
        let wanted = u64::from(sys::RTE_ETH_RSS_IP) | u64::from(sys::RTE_ETH_RSS_UDP);
        let rss_hf = wanted & info.flow_type_rss_offloads;
        let rss = nb_rxq > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = std::ptr::null_mut(); // the driver's default key
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            let hash_offload = u64::from(sys::RTE_ETH_RX_OFFLOAD_RSS_HASH);
            if info.rx_offload_capa & hash_offload != 0 {
                conf.rxmode.offloads |= hash_offload; // deliver the hash in mbuf.hash.rss
            }
        }
        mark_stopped(port_id);
        // Safety: valid port, conf fully initialised.
        check(port_id, "configure", unsafe { sys::rte_eth_dev_configure(port_id, nb_rxq, nb_txq, &conf) })?;

        let (mut nb_rx_desc, mut nb_tx_desc) = (nb_desc, nb_desc);
        // Safety: valid port; valid out pointers.
        check(port_id, "adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut nb_rx_desc, &mut nb_tx_desc)
        })?;
        let socket = port_socket(port_id);
        for q in 0..nb_rxq {
            // Safety: configured port, q < nb_rxq; NULL conf means the driver's defaults; the pool
            // outlives the port (pools are never freed). SOCKET_ID_ANY casts to its unsigned form.
            check(port_id, "rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(port_id, q, nb_rx_desc, socket as u32, std::ptr::null(), pool.as_ptr())
            })?;
        }
        for q in 0..nb_txq {
            // Safety: as above, for TX.
            check(port_id, "tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(port_id, q, nb_tx_desc, socket as u32, std::ptr::null())
            })?;
        }
        // Safety: configured port with all queues set up.
        check(port_id, "start", unsafe { sys::rte_eth_dev_start(port_id) })?;
        // Safety: started port.
        let ret = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
        if ret < 0 && ret != -libc::ENOTSUP {
            return Err(DpdkError::port(port_id, "promiscuous_enable", ret));
        }
        RX_QUEUES[usize::from(port_id)].store(nb_rxq, Ordering::Release);
        TX_QUEUES[usize::from(port_id)].store(nb_txq, Ordering::Release);
        Ok(Port { id: port_id, nb_rxq, nb_txq, nb_rx_desc, nb_tx_desc, rss, rss_hf, socket })
    }
}

/// The port's MAC address.
pub fn port_mac(port: u16) -> Result<[u8; 6], DpdkError> {
    let mut addr = sys::rte_ether_addr::default();
    // Safety: the id is checked by the function; addr is a valid out pointer.
    check(port, "macaddr_get", unsafe { sys::rte_eth_macaddr_get(port, &mut addr) })?;
    Ok(addr.addr_bytes)
}

/// Sets the port's MAC address (gives a TAP the NIC's address, for example).
pub fn set_port_mac(port: u16, mac: [u8; 6]) -> Result<(), DpdkError> {
    let mut addr = sys::rte_ether_addr { addr_bytes: mac };
    // Safety: the id is checked by the function; addr is valid for the call.
    check(port, "default_mac_addr_set", unsafe { sys::rte_eth_dev_default_mac_addr_set(port, &mut addr) })
}

/// The name of the port's driver (`net_af_packet`, `net_ice`, ...), the kernel interface
/// index it reports (0 when it drives no kernel interface) and its most RX queues.
pub fn port_driver(port: u16) -> Result<(String, u32, u16), DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // Safety: the id is checked by the function; info is a valid out pointer.
    check(port, "dev_info_get", unsafe { sys::rte_eth_dev_info_get(port, &mut info) })?;
    let name = if info.driver_name.is_null() {
        String::new()
    } else {
        // Safety: a non-NULL driver name is a NUL-terminated string owned by the driver.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    };
    Ok((name, info.if_index, info.max_rx_queues))
}

/// Port counters (`rte_eth_stats`, without the per-queue arrays).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the NIC: RX queues full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// The port's counters.
pub fn port_stats(port: u16) -> Result<PortStats, DpdkError> {
    let mut s = sys::rte_eth_stats::default();
    // Safety: the id is checked by the function; s is a valid out pointer.
    check(port, "stats_get", unsafe { sys::rte_eth_stats_get(port, &mut s) })?;
    Ok(PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    })
}

/// Stops the port. No other thread may be bursting on it.
pub fn port_stop(port: u16) -> Result<(), DpdkError> {
    mark_stopped(port);
    // Safety: the id is checked by the function; bursts through this module now return 0.
    check(port, "stop", unsafe { sys::rte_eth_dev_stop(port) })
}

/// Closes (releases) the port. No other thread may be bursting on it.
pub fn port_close(port: u16) -> Result<(), DpdkError> {
    mark_stopped(port);
    // Safety: as for port_stop.
    check(port, "close", unsafe { sys::rte_eth_dev_close(port) })
}

/// Asks the port to bring its link up; drivers without the operation are fine.
pub fn link_up(port: u16) {
    // Safety: the id is checked by the function. The result is ignored on purpose.
    let _ = unsafe { sys::rte_eth_dev_set_link_up(port) };
}

/// Whether the port's link is up now (`rte_eth_link_get_nowait`); false for an unknown port.
pub fn link_is_up(port: u16) -> bool {
    // Safety: rte_eth_link is plain data, all zeroes is valid; the function checks the id and
    // fills the struct it is given.
    let mut link: sys::rte_eth_link = unsafe { std::mem::zeroed() };
    // Safety: a valid pointer to a struct that lives across the call.
    let rc = unsafe { sys::rte_eth_link_get_nowait(port, &mut link) };
    rc == 0 && link.link_status() == 1
}

/// Receives up to `out.capacity() - out.len()` packets from RX queue `queue` of `port` and
/// appends them to `out`; returns how many. Never allocates: reserve the burst size first.
/// Returns 0 for a port/queue that [`Port::configure`] has not started.
#[inline]
pub fn rx_burst(port: u16, queue: u16, out: &mut Vec<Mbuf>) -> usize {
    let len = out.len();
    let room = u16::try_from(out.capacity() - len).unwrap_or(u16::MAX);
    if room == 0 || !rx_ready(port, queue) {
        return 0;
    }
    // Safety: the port and queue are started; the spare capacity holds `room` slots, and Mbuf
    // is a repr(transparent) NonNull<rte_mbuf>, so the driver's non-NULL mbuf pointers are
    // valid Mbufs that we now own.
    let n = unsafe {
        let slots = out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>();
        usize::from(sys::rte_eth_rx_burst(port, queue, slots, room))
    };
    // Safety: the driver initialised the first n spare slots (n <= room).
    unsafe { out.set_len(len + n) };
    n
}

/// Transmits packets from the front of `pkts` on TX queue `queue` of `port`, removes the ones
/// the driver took (it frees them once sent) and leaves the rest, in order, for the caller to
/// retry or drop. Returns how many were taken; 0 for a port/queue not started.
#[inline]
pub fn tx_burst(port: u16, queue: u16, pkts: &mut Vec<Mbuf>) -> usize {
    let len = pkts.len();
    let n = u16::try_from(len).unwrap_or(u16::MAX);
    if n == 0 || !tx_ready(port, queue) {
        return 0;
    }
    let base = pkts.as_mut_ptr();
    // Safety: the port and queue are started; the first n elements are valid owned mbufs laid out
    // as *mut rte_mbuf (repr(transparent)). The driver takes ownership of the first `sent`.
    let sent = usize::from(unsafe { sys::rte_eth_tx_burst(port, queue, base.cast(), n) });
    // Safety: the first `sent` Mbufs now belong to the driver: drop them from the Vec without
    // running Drop by moving the unsent tail to the front and shortening the Vec.
    unsafe {
        std::ptr::copy(base.add(sent), base, len - sent);
        pkts.set_len(len - sent);
    }
    sent
}
