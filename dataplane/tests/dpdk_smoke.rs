//! Runs the EAL for real (no hugepages, no PCI, two net_ring vdevs, lcores 0 and 1) and exercises
//! the safe wrappers in `dataplane::dpdk`. Needs root (or the rights DPDK wants for --no-huge).
//!
//! net_ring loops each TX queue back to the same-numbered RX queue of the same port. The test
//! sends on net_ring0 from the main lcore, a worker on lcore 1 forwards net_ring0 -> net_ring1
//! (the shape of a dataplane worker), and the main lcore receives on net_ring1.
//!
//! The EAL can be initialised once per process, so everything is in one #[test].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use dataplane::dpdk::{
    self, DpdkError, Eal, Mbuf, Mempool, Port, launch, port_by_name, port_count, port_name, port_stats, rx_burst,
    tx_burst, wait_all,
};
use esp::buf::PacketBuf;

const BURST: usize = 32;

fn packet(i: usize) -> Vec<u8> {
    // A 60..124-byte frame whose bytes identify it.
    (0..60 + i % 64).map(|j| (i * 7 + j) as u8).collect()
}

/// Polls `port`/`queue` until `want` packets arrived or two seconds passed.
fn receive(port: u16, queue: u16, want: usize) -> Vec<Mbuf> {
    let deadline = dpdk::tsc() + 2 * dpdk::tsc_hz();
    let mut got = Vec::with_capacity(want + BURST);
    while got.len() < want && dpdk::tsc() < deadline {
        let mut burst = Vec::with_capacity(BURST);
        rx_burst(port, queue, &mut burst);
        got.append(&mut burst);
    }
    got
}

/// Removes the EAL's (empty) runtime directory, even if the test fails.
struct RuntimeDir(String);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let base = std::env::var("XDG_RUNTIME_DIR").ok().filter(|_| !is_root()).unwrap_or_else(|| "/var/run".into());
        let _ = std::fs::remove_dir_all(format!("{base}/dpdk/{}", self.0));
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

#[test]
fn eal_mempool_mbuf_ports_bursts_lcores() {
    let prefix = format!("dpdktest{}", std::process::id());
    let _runtime_dir = RuntimeDir(prefix.clone());
    let args: Vec<String> = [
        "dpdk_smoke",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-telemetry",
        // No shared config or multi-process socket in the runtime directory.
        "--no-shconf",
        "-l",
        "0,1",
        &format!("--file-prefix={prefix}"),
        "--vdev=net_ring0",
        "--vdev=net_ring1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("rte_eal_init");
    assert_eq!(eal.consumed_args() + 1, args.len());
    assert_eq!(Eal::init(&args).unwrap_err(), DpdkError::EalAlreadyInitialised);
    assert!(dpdk::tsc_hz() > 0);
    assert_eq!(dpdk::lcore_id(), dpdk::main_lcore());
    assert_eq!(dpdk::worker_lcores(), vec![1]);
    // Each lcore's CPUs as the EAL pinned them (`-l 0,1`: lcore n on CPU n), and the main
    // thread's own affinity is the main lcore's.
    assert_eq!((dpdk::lcore_cpus(0), dpdk::lcore_cpus(1)), (vec![0], vec![1]));
    assert_eq!(dpdk::affinity::current().unwrap(), dpdk::lcore_cpus(dpdk::main_lcore()));
    assert!(dpdk::lcore_cpus(dpdk_sys::RTE_MAX_LCORE).is_empty());

    // Mempool and mbuf.
    let pool = Mempool::new("smoke_pool", 4095, 64, dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16, dpdk::socket_id())
        .expect("mempool");
    assert!(matches!(Mempool::new("smoke_pool", 63, 0, 2176, dpdk::SOCKET_ID_ANY), Err(DpdkError::Mempool { .. })));
    let full = pool.avail_count();
    assert_eq!(full, 4095);
    {
        let mut m = Mbuf::alloc(&pool).expect("alloc");
        assert_eq!((m.len(), m.headroom(), m.tailroom()), (0, 128, 2048));
        assert!(m.is_contiguous());
        assert!(m.rss_hash().is_none());
        assert!(m.prepend(129).is_none());
        assert_eq!(m.prepend(128).unwrap().len(), 128);
        assert!(!m.adj(129));
        assert!(m.adj(100));
        assert_eq!((m.len(), m.headroom()), (28, 100));
        assert!(m.append(2048 + 1).is_none());
        assert_eq!(m.append(2048).unwrap().len(), 2076);
        assert_eq!(m.tailroom(), 0);
        assert!(!m.trim(2077));
        assert!(m.trim(2076));
        assert!(m.is_empty());
        m.append(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        m.data_mut()[0] = 9;
        assert_eq!(PacketBuf::data(&m), &[9, 2, 3, 4]);
        assert_eq!(m.pkt_len(), 4);
        // Round trip through the raw pointer.
        let raw = m.into_raw();
        // Safety: `raw` came from into_raw just above and nothing else holds it.
        let m = unsafe { Mbuf::from_raw(raw) };
        assert_eq!(m.data(), &[9, 2, 3, 4]);
        assert!(Mbuf::from_slice(&pool, &[0u8; 2049]).is_none());
        assert_eq!(Mbuf::from_slice(&pool, &[5u8; 2048]).unwrap().len(), 2048);
    }
    assert_eq!(pool.avail_count(), full, "mbufs leaked");

    // Ports.
    assert_eq!(port_count(), 2);
    let p0 = port_by_name("net_ring0").expect("net_ring0");
    let p1 = port_by_name("net_ring1").expect("net_ring1");
    assert_eq!(port_by_name("nonexistent"), None);
    assert_eq!(port_name(p0).as_deref(), Some("net_ring0"));
    let port0 = Port::configure(p0, 1, 1, 512, &pool).expect("configure p0");
    // Two queues: net_ring has no RSS, so RSS must stay off rather than fail.
    let port1 = Port::configure(p1, 2, 2, 512, &pool).expect("configure p1");
    assert_eq!((port0.nb_rxq, port1.nb_rxq), (1, 2));
    assert!(!port1.rss);
    assert!(Port::configure(999, 1, 1, 512, &pool).is_err());
    dpdk::link_up(p0);
    let mac = [0x02, 0, 0, 0, 0, 0x42];
    match dpdk::set_port_mac(p1, mac) {
        Ok(()) => assert_eq!(dpdk::port_mac(p1).unwrap(), mac),
        Err(DpdkError::Port { errno, .. }) if errno.code == libc::ENOTSUP => {}
        Err(e) => panic!("set_port_mac: {e}"),
    }
    assert!(dpdk::port_mac(p0).is_ok());

    // Unconfigured queue, full vector: nothing happens.
    let mut v = Vec::with_capacity(BURST);
    assert_eq!(rx_burst(p0, 5, &mut v), 0);
    assert_eq!(rx_burst(p1, 2, &mut v), 0);
    let mut full_vec: Vec<Mbuf> = Vec::new();
    assert_eq!(rx_burst(p0, 0, &mut full_vec), 0);

    // A worker on lcore 1 forwards p0 -> p1 until it has moved N packets.
    const N: usize = 100;
    let forwarded = Arc::new(AtomicUsize::new(0));
    let worker_lcore = Arc::new(AtomicU32::new(u32::MAX));
    {
        let (forwarded, worker_lcore) = (forwarded.clone(), worker_lcore.clone());
        launch(1, move || {
            worker_lcore.store(dpdk::lcore_id(), Ordering::Relaxed);
            let deadline = dpdk::tsc() + 3 * dpdk::tsc_hz();
            let mut pkts = Vec::with_capacity(BURST);
            let mut done = 0;
            while done < N && dpdk::tsc() < deadline {
                rx_burst(p0, 0, &mut pkts);
                done += tx_burst(p1, 0, &mut pkts);
            }
            forwarded.store(done, Ordering::Relaxed);
        })
        .expect("launch");
    }
    assert!(matches!(launch(0, || ()), Err(DpdkError::Lcore { .. })), "main lcore is not a worker");

    let mut out: Vec<Mbuf> = (0..N).map(|i| Mbuf::from_slice(&pool, &packet(i)).expect("from_slice")).collect();
    assert_eq!(tx_burst(p0, 0, &mut out), N);
    assert!(out.is_empty());
    let got = receive(p1, 0, N);
    wait_all().expect("worker");
    assert_eq!(forwarded.load(Ordering::Relaxed), N);
    assert_eq!(worker_lcore.load(Ordering::Relaxed), 1);
    assert_eq!(got.len(), N);
    for (i, m) in got.iter().enumerate() {
        assert!(m.is_contiguous());
        assert_eq!(m.data(), packet(i).as_slice(), "packet {i}");
    }
    drop(got);

    // A panicking worker is reported, not fatal.
    launch(1, || panic!("intentional panic on a worker lcore")).expect("launch");
    assert_eq!(wait_all(), Err(DpdkError::WorkersFailed(vec![1])));

    // TX into a full ring: what is not taken stays in the vector, in order.
    let mut many: Vec<Mbuf> = (0..1100).map(|i| Mbuf::from_slice(&pool, &packet(i)).unwrap()).collect();
    let sent = tx_burst(p0, 0, &mut many);
    assert!(sent > 0 && sent < 1100, "sent {sent}");
    assert_eq!(many.len(), 1100 - sent);
    assert_eq!(many[0].data(), packet(sent).as_slice());
    assert_eq!(tx_burst(p0, 0, &mut many), 0, "ring is full");
    let back = receive(p0, 0, sent);
    assert_eq!(back.len(), sent);
    assert!(back.iter().enumerate().all(|(i, m)| m.data() == packet(i).as_slice()));
    drop(back);
    drop(many);

    let s0 = port_stats(p0).unwrap();
    let s1 = port_stats(p1).unwrap();
    assert_eq!((s0.opackets, s0.ipackets), ((N + sent) as u64, (N + sent) as u64));
    assert_eq!((s1.opackets, s1.ipackets), (N as u64, N as u64));
    assert_eq!(pool.avail_count(), full, "mbufs leaked");

    dpdk::port_stop(p0).unwrap();
    dpdk::port_stop(p1).unwrap();
    assert_eq!(rx_burst(p0, 0, &mut v), 0, "stopped port");
    dpdk::port_close(p0).unwrap();
    dpdk::port_close(p1).unwrap();
    assert_eq!(port_count(), 0);
    drop(eal);
}
