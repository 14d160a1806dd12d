//! Brings the gateway up from a checked [`Config`]: EAL, mempool, data ports and their
//! exception-path TAPs, per-worker pipelines, the workers themselves and the control thread;
//! and takes it down again, returning the final counters.

use crate::config::{Config, Direction};
use crate::control::ControlServer;
use crate::controller::{Controller, EVENT_ROUND_GAP, ReportedPort};
use crate::counters::{Snapshot, WorkerCounters};
use crate::doorbell::Doorbell;
use crate::dpdk::af_packet::RingDrops;
use crate::dpdk::affinity;
use crate::dpdk::{self, Eal, Mempool, Port};
use crate::net::Mac;
use crate::pipeline::{Neighbor, Pipeline, PortInfo};
use crate::route::{Route, RouteTable};
use crate::sad::{Sad, SadError};
use crate::worker::{PortIds, Worker};
use crossbeam::queue::ArrayQueue;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("DPDK: {0}")]
    Dpdk(#[from] dpdk::DpdkError),
    #[error(
        "port[{index}].name: no DPDK port named {name:?} (give a PCI address bound to vfio-pci, or a --vdev in eal.args)"
    )]
    NoSuchPort { index: usize, name: String },
    #[error("setting up the exception-path interface {iface}: {reason}")]
    Tap { iface: String, reason: String },
    #[error("control socket {path}: {source}")]
    Control { path: String, source: std::io::Error },
    #[error("{0}")]
    Sad(#[from] SadError),
    #[error("dataplane.crypto: {0}")]
    Crypto(String),
    #[error("the control thread's doorbell (a socket pair): {0}")]
    Doorbell(std::io::Error),
}

/// How long to run and where the control socket lives.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Extra EAL arguments after those of the configuration file.
    pub extra_eal_args: Vec<String>,
    pub run_for: Option<Duration>,
    pub control_socket: Option<PathBuf>,
    /// Set from a signal handler to stop.
    pub stop: Arc<AtomicBool>,
}

fn ip_cmd(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Vdev name of the exception-path TAP of data port `i` (the `net_tap` driver matches by prefix).
fn tap_vdev(i: usize) -> String {
    format!("net_tapexc{i}")
}

/// Without an exception path (`[dataplane] exception_path = false`, for benchmarks), a
/// `net_null` device that receives nothing and drops what is sent stands in for each TAP.
fn null_vdev(i: usize) -> String {
    format!("net_nullexc{i}")
}

pub fn run(cfg: &Config, opts: &RunOptions) -> Result<Snapshot, GatewayError> {
    let mut args = vec!["dataplane".to_string()];
    args.extend(cfg.eal_args.iter().cloned());
    args.extend(opts.extra_eal_args.iter().cloned());
    for (i, p) in cfg.ports.iter().enumerate() {
        if cfg.exception_path {
            args.push(format!("--vdev={},iface={}", tap_vdev(i), p.tap));
        } else {
            args.push(format!("--vdev={},no-rx=1", null_vdev(i)));
        }
    }
    // Read before the EAL pins this thread to the main lcore (see `dpdk::affinity`).
    let allowed = affinity::current().unwrap_or_else(|e| {
        eprintln!("dataplane: the control thread will share the main lcore's CPU (its affinity: {e})");
        Vec::new()
    });
    let eal = Eal::init(&args)?;
    let result = run_with_eal(cfg, opts, &allowed);
    drop(eal);
    result
}

/// `allowed`: the CPUs the process was allowed before `rte_eal_init`.
fn run_with_eal(cfg: &Config, opts: &RunOptions, allowed: &[usize]) -> Result<Snapshot, GatewayError> {
    // Every lcore polls, the main one included; the control thread is a plain thread that
    // sleeps between rounds (waiting for the workers on the main lcore would spin a core).
    let mut worker_lcores = vec![dpdk::main_lcore()];
    worker_lcores.extend(dpdk::worker_lcores());
    let nq = worker_lcores.len() as u16;
    let pool = Mempool::new("dp_mbufs", cfg.mbufs, 256, 2048 + 128, dpdk::socket_id())?;

    let mut ids = PortIds { data: Vec::new(), tap: Vec::new() };
    // What snapshots report: each data port, and its exception path when it is a real TAP.
    let mut reported: Vec<ReportedPort> = Vec::new();
    let mut macs = Vec::new();
    let mut started: Vec<Port> = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let id =
            dpdk::port_by_name(&p.name).ok_or_else(|| GatewayError::NoSuchPort { index: i, name: p.name.clone() })?;
        started.push(Port::configure(id, nq, nq, cfg.rx_desc, &pool)?);
        // The driver opened its sockets, one per queue pair, when EAL probed the device.
        let ring = match dpdk::port_driver(id) {
            Ok((driver, ifindex, queues)) if driver == "net_af_packet" && ifindex > 0 => {
                let ring = RingDrops::find(ifindex);
                if ring.sockets() != usize::from(queues) {
                    eprintln!(
                        "dataplane: port {}: found {} of its {queues} af_packet sockets; rx-missed leaves out the \
                         kernel's drops on the others",
                        p.name,
                        ring.sockets()
                    );
                }
                Some(ring)
            }
            _ => None,
        };
        reported.push(ReportedPort { id, name: p.name.clone(), role: p.role.name(), ring });
        let mac = match p.mac {
            // Some devices (net_pcap) cannot change their MAC; the port is promiscuous, so the
            // configured address still works: the pipeline filters on it in software.
            Some(m) => {
                if let Err(e) = dpdk::set_port_mac(id, m.0) {
                    eprintln!("dataplane: port {}: using MAC {m} in software only ({e})", p.name);
                }
                m.0
            }
            None => dpdk::port_mac(id)?,
        };
        let exc = if cfg.exception_path { tap_vdev(i) } else { null_vdev(i) };
        let tap_id = dpdk::port_by_name(&exc)
            .ok_or_else(|| GatewayError::Tap { iface: p.tap.clone(), reason: "TAP vdev did not appear".into() })?;
        started.push(Port::configure(tap_id, nq, nq, 512, &pool)?);
        if !cfg.exception_path {
            ids.data.push(id);
            ids.tap.push(tap_id);
            macs.push(Mac(mac));
            continue;
        }
        reported.push(ReportedPort { id: tap_id, name: p.tap.clone(), role: "exception", ring: None });
        // The host stack answers ARP and ICMP for the port's addresses: it must use the port's MAC.
        dpdk::set_port_mac(tap_id, mac)?;
        let tap_err = |reason: String| GatewayError::Tap { iface: p.tap.clone(), reason };
        ip_cmd(&["link", "set", "dev", &p.tap, "mtu", &p.mtu.to_string(), "up"]).map_err(tap_err)?;
        for a in &p.addresses {
            let a = a.to_string();
            let mut cmd = vec!["addr", "replace", a.as_str(), "dev", p.tap.as_str()];
            if p.addresses.iter().any(|x| x.to_string() == a && x.addr.is_ipv6()) {
                cmd.push("nodad");
            }
            ip_cmd(&cmd).map_err(tap_err)?;
        }
        ids.data.push(id);
        ids.tap.push(tap_id);
        macs.push(Mac(mac));
    }

    let hz = dpdk::tsc_hz();
    let (pipelines, sad) = build_pipelines(cfg, &macs, &worker_lcores, hz)?;
    let (backend, speeds) = crate::crypto::choose(&cfg.crypto).map_err(GatewayError::Crypto)?;
    let measured: Vec<String> = speeds
        .iter()
        .map(|s| format!("{} {:.1} Gbit/s at 1420 B, {:.1} Mpps at 64 B", s.backend.name(), s.gbps_1420(), s.mpps_64()))
        .collect();
    eprintln!(
        "dataplane: AES-GCM by {}{}",
        backend.name(),
        if measured.is_empty() { String::new() } else { format!(" (fastest here: {})", measured.join("; ")) }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let doorbell = Arc::new(Doorbell::new().map_err(GatewayError::Doorbell)?);
    let mut counters = Vec::new();
    let mut updates = Vec::new();
    let mut events = Vec::new();
    let mut workers = Vec::new();
    for (q, pipeline) in pipelines.into_iter().enumerate() {
        let c = pipeline.counters().clone();
        let u = Arc::new(ArrayQueue::new(1024));
        let e = Arc::new(ArrayQueue::new(1024));
        workers.push(Worker {
            pipeline,
            ports: ids.clone(),
            queue: q as u16,
            burst: cfg.burst,
            pool: pool.clone(),
            updates: u.clone(),
            events: e.clone(),
            doorbell: doorbell.clone(),
            stop: stop.clone(),
            idle_sleep: Duration::from_micros(cfg.idle_sleep_us),
        });
        counters.push(c);
        updates.push(u);
        events.push(e);
    }

    let socket_path = opts.control_socket.clone().or_else(|| cfg.control_socket.as_ref().map(PathBuf::from));
    let server = match &socket_path {
        Some(p) => Some(
            ControlServer::bind(p).map_err(|source| GatewayError::Control { path: p.display().to_string(), source })?,
        ),
        None => None,
    };

    // The control thread: answers the control socket, programs the workers, shares learned
    // neighbours, frees what they retire, enforces lifetimes, and decides when to stop.
    let control = {
        let stop = stop.clone();
        let doorbell = doorbell.clone();
        let ext_stop = opts.stop.clone();
        let mut ctl = Controller::new(sad, counters.clone(), updates, events);
        ctl.report_ports(reported);
        let deadline = opts.run_for.map(|d| Instant::now() + d);
        // Off the workers' CPUs where there are others (see `dpdk::affinity`).
        let lcore_cpus: Vec<usize> = worker_lcores.iter().flat_map(|&l| dpdk::lcore_cpus(l)).collect();
        let cpus = affinity::control_cpus(allowed, &lcore_cpus);
        // Named, for `top -H` and `taskset`; a failure to spawn panics, as `thread::spawn` does.
        std::thread::Builder::new()
            .name("dp-control".into())
            .spawn(move || {
                if !cpus.is_empty()
                    && let Err(e) = affinity::set_current(&cpus)
                {
                    eprintln!("dataplane: the control thread stays on the main lcore's CPU: {e}");
                }
                let fds: Vec<_> = server.iter().map(|s| s.as_fd()).collect();
                while !stop.load(Ordering::Relaxed) {
                    let round = Instant::now();
                    ctl.tick(round);
                    if let Some(s) = &server {
                        s.poll(&mut |cmd| ctl.handle(cmd));
                    }
                    let now = Instant::now();
                    // A signal's stop is seen at the next wake: within the pause, at most the
                    // 100 ms between lifetime checks.
                    if ext_stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    // Until a client connects, a worker rings or there is housekeeping to do.
                    let mut pause = ctl.pause(now);
                    if let Some(d) = deadline {
                        pause = pause.min(d.saturating_duration_since(now));
                    }
                    if doorbell.sleep(&fds, pause, || ctl.has_events()) {
                        // Rounds for the workers' events come at most every EVENT_ROUND_GAP:
                        // a worker may report something every burst (a flood of new
                        // neighbours, acquires for many policies), and this thread may share
                        // a CPU with a worker. Clients are still answered at once.
                        let left = EVENT_ROUND_GAP.saturating_sub(round.elapsed());
                        if !left.is_zero() {
                            ctlproto::line::wait_readable(&fds, left.min(pause));
                        }
                    }
                }
                // The final counters are read once the workers have stopped (below).
                ctl
            })
            .expect("spawning the control thread")
    };

    let mut inline = None;
    let mut launched = Ok(());
    for (w, &lcore) in workers.into_iter().zip(&worker_lcores) {
        if lcore == dpdk::main_lcore() {
            inline = Some(w);
        } else if let Err(e) = dpdk::launch(lcore, move || w.run()) {
            launched = Err(e);
            break;
        }
    }
    if launched.is_ok()
        && let Some(w) = inline
    {
        w.run();
    }
    // Whatever ended the run (a stop, or a worker that could not be launched), the workers
    // and the control thread, which reads the ports' counters, finish before the ports close.
    stop.store(true, Ordering::Relaxed);
    doorbell.wake();
    let waited = dpdk::wait_all();
    let snap = control.join().map_or_else(|_| crate::counters::snapshot(&counters, Vec::new()), |c| c.snapshot());
    for p in &started {
        let _ = dpdk::port_stop(p.id);
        let _ = dpdk::port_close(p.id);
    }
    launched?;
    waited?;
    Ok(snap)
}

/// One pipeline per worker lcore, as the gateway runs them, and the control thread's book of
/// SAs and policies they were programmed from: shared read-only routes (connected subnets of
/// the ports' addresses plus the configured routes), the configured policies and SAs installed
/// through the same [`Sad`] the control socket uses, the static neighbours, and the first
/// worker asked to resolve the next hops it will need. `macs` are the data ports' MAC
/// addresses, in configuration order.
pub fn build_pipelines(
    cfg: &Config,
    macs: &[Mac],
    lcores: &[u32],
    tsc_hz: u64,
) -> Result<(Vec<Pipeline>, Sad), GatewayError> {
    let infos: Vec<PortInfo> = cfg
        .ports
        .iter()
        .zip(macs)
        .map(|(p, &mac)| PortInfo { mac, role: p.role, addresses: p.addresses.clone(), mtu: p.mtu })
        .collect();
    let mut routes: Vec<Route> = cfg
        .ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.addresses.iter().map(move |a| Route { prefix: a.network(), via: None, port: i }))
        .collect();
    routes.extend(cfg.routes.iter().map(|r| Route { prefix: r.prefix, via: r.via, port: r.port }));
    let routes = Arc::new(RouteTable::new(routes));

    let mut pipelines: Vec<Pipeline> = lcores
        .iter()
        .map(|&lcore| {
            let c = Arc::new(WorkerCounters::new(lcore, cfg.max_sas));
            Pipeline::new(infos.clone(), routes.clone(), cfg.max_sas, c, tsc_hz)
        })
        .collect();
    let counters: Vec<Arc<WorkerCounters>> = pipelines.iter().map(|p| p.counters().clone()).collect();
    let mut sad = Sad::new(cfg.max_sas, lcores.len());
    sad.set_backend(crate::crypto::choose(&cfg.crypto).map_err(GatewayError::Crypto)?.0);
    let mut apply = |updates: Vec<Vec<crate::pipeline::Update>>| {
        for (p, list) in pipelines.iter_mut().zip(updates) {
            for u in list {
                p.apply(u);
            }
        }
    };
    // Policies first, so that inbound SAs find the selectors of the policies naming them.
    for p in &cfg.policies {
        apply(sad.set_policy(p.clone()));
    }
    for s in &cfg.sas {
        apply(sad.add_sa(s, &counters)?.1);
    }
    for p in &mut pipelines {
        for n in &cfg.neighbors {
            p.set_neighbor(Neighbor { port: n.port, ip: n.ip, mac: n.mac });
        }
    }
    if let Some(p) = pipelines.first_mut() {
        // Resolve the next hops we know we will need before traffic needs them.
        for r in cfg.routes.iter().filter_map(|r| r.via.map(|v| (r.port, v))) {
            p.want_neighbor(r.0, r.1, 0);
        }
        for s in cfg.sas.iter().filter(|s| s.direction == Direction::Out) {
            if let Some((port, hop)) = routes.lookup(s.sa.remote) {
                p.want_neighbor(port, hop, 0);
            }
        }
    }
    Ok((pipelines, sad))
}
