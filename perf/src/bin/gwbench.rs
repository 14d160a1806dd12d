//! gwbench: how fast the gateway forwards, next to the I/O ceiling and the raw AEAD.
//!
//! For each direction, packet size, crypto backend, core count and run it:
//! 1. writes a pcap of test traffic: clear IPv4/IPv6 UDP frames over `--flows` flows for
//!    outbound, or the ESP frames a peer gateway would send for inbound (sealed here with the
//!    `esp` crate);
//! 2. runs `dpdk-testpmd --forward-mode=io` from a `net_pcap` port replaying that file
//!    (`infinite_rx=1`) to a `net_null` port, on the same lcores: the I/O ceiling;
//! 3. runs the real `dataplane` binary over the same two vdevs (the pcap port on the input side,
//!    `net_null` on the output side, no exception path) and reads its counters over the
//!    control socket after a warm-up: packets forwarded per second, with every packet checked to
//!    have been encrypted (or decrypted) and sent, none dropped;
//! 4. measures the backend's bare AES-GCM seal speed on the same payload sizes.
//!
//! It prints Mpps, Gbit/s (inner IP bytes), cycles per packet, the ratio to the testpmd ceiling
//! and to the raw AEAD, as medians over `--runs` runs with their spread, and writes JSON and an
//! SVG chart. Each run says how much of the forwarding CPUs' time a hypervisor took for
//! anything else (`steal` in /proc/stat), when it took any: a run slowed that way can be told
//! from a slow gateway. Inbound SAs run with anti-replay off (`replay_window = 0`): the pcap
//! repeats its sequence numbers, as in DPDK's ipsec-secgw measurements.

use clap::{Parser, ValueEnum};
use esp::aead::{Backend, GcmKeyLen, KeyMaterial};
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{OutboundSa, SaConfig, SeqCounter};
use perf::{IMIX, StealClock, ipv4_udp, ipv6_udp, median_min_max};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Dir {
    /// Clear in on the protected side, ESP out.
    Out,
    /// ESP in on the unprotected side, clear out.
    In,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Family {
    V4,
    V6,
}

#[derive(Parser, Debug)]
#[command(name = "gwbench", about = "Gateway throughput on DPDK vdevs next to dpdk-testpmd and the raw AEAD")]
struct Args {
    /// Inner IP packet sizes in bytes (64 to 1500), or imix (7:4:1 of 64/576/1500).
    #[arg(long, value_delimiter = ',', default_value = "64,576,1420,imix")]
    sizes: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "out,in")]
    dirs: Vec<Dir>,
    /// IP version, inner and outer.
    #[arg(long, default_value = "v4")]
    family: Family,
    /// AES-GCM backends: aes-gcm, aws-lc, ipsec-mb, or auto (the dataplane's choice).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    backends: Vec<String>,
    /// Worker cores (each figure is measured for each count): 1 or 2 on this machine.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    cores: Vec<usize>,
    /// Distinct flows (UDP port pairs and addresses) in the traffic.
    #[arg(long, default_value_t = 64)]
    flows: usize,
    /// SA pairs (and policies), the flows spread over them (every pair gets traffic: flows and
    /// packets are raised to at least this). Installed through the control socket.
    #[arg(long, default_value_t = 1)]
    sas: usize,
    /// SA programming rate instead of throughput: with traffic flowing through one established
    /// SA pair, install this many more SA pairs and policies through the control socket, and
    /// report how long it took and whether any packet of the established pair was lost.
    #[arg(long)]
    program: Option<usize>,
    /// AES key size: 128 or 256.
    #[arg(long, default_value_t = 128)]
    aes: u16,
    /// Runs of each measurement: the tables show the median and the min-max spread.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measured seconds of each run, after the warm-up.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Packets in each pcap (the replay loops over them).
    #[arg(long, default_value_t = 2048)]
    packets: usize,
    /// Packets a worker receives and processes at once (the dataplane's `burst`, 1-256), and
    /// testpmd's burst for the ceiling.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    burst: u16,
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    svg: Option<PathBuf>,
    /// The dataplane binary (default: beside this one).
    #[arg(long)]
    dataplane: Option<PathBuf>,
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// Where the pcaps, configurations and logs go (default: a fresh directory under /tmp).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Skip the testpmd ceiling (ratios are then left out).
    #[arg(long)]
    no_ceiling: bool,
    /// With --sas N: also run the gateway with one SA pair on as many frames, interleaved run
    /// by run with the N pairs, and report the ratio of each run to its one-pair run (many
    /// tunnels against one, on a machine whose speed drifts between runs).
    #[arg(long)]
    vs_one_pair: bool,
    /// Also measure per-packet latency at this offered load (Mpps), one-core cases: trafgen
    /// sends the case's traffic over net_memif through the dataplane, then through testpmd
    /// (the I/O path alone), for --seconds each.
    #[arg(long)]
    latency_mpps: Option<f64>,
    /// The traffic generator (default: beside this program).
    #[arg(long)]
    trafgen: Option<PathBuf>,
}

const PROT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const UNPROT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
const KEY_OUT: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_IN: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const SALT: [u8; 4] = [0x0a, 0x0b, 0x0c, 0x0d];

fn hex(s: &str) -> Vec<u8> {
    dataplane::config::parse_hex(s).expect("hex constant")
}

/// The addresses of the benchmark topology: our gateway, the peer gateway, the host behind us
/// (every inbound packet goes to it) and the peer's subnet (flows spread over it).
struct Topo {
    gw: IpAddr,
    peer: IpAddr,
    host: IpAddr,
    prot_prefix: String,
    unprot_prefix: String,
    local_net: String,
    remote_net: String,
}

impl Topo {
    fn new(f: Family) -> Self {
        match f {
            Family::V4 => Topo {
                gw: "192.0.2.1".parse().unwrap(),
                peer: "192.0.2.2".parse().unwrap(),
                host: "10.1.0.10".parse().unwrap(),
                prot_prefix: "10.1.0.1/24".into(),
                unprot_prefix: "192.0.2.1/24".into(),
                local_net: "10.1.0.0/24".into(),
                remote_net: "10.2.0.0/16".into(),
            },
            Family::V6 => Topo {
                gw: "2001:db8::1".parse().unwrap(),
                peer: "2001:db8::2".parse().unwrap(),
                host: "fd01::10".parse().unwrap(),
                prot_prefix: "fd01::1/64".into(),
                unprot_prefix: "2001:db8::1/64".into(),
                local_net: "fd01::/64".into(),
                remote_net: "fd02::/48".into(),
            },
        }
    }

    /// The peer-side address of a flow: with one SA pair the flows spread over the peer's
    /// subnet (`remote_net`); with several, each SA pair's flows share its own address (its
    /// policy's /32 or /128), outside that subnet.
    fn remote_addr(&self, sas: usize, sa: usize, flow: usize) -> IpAddr {
        if sas > 1 {
            return self.sa_addr(sa);
        }
        let i = flow as u32;
        match self.host {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16)),
        }
    }

    /// The peer-side address of SA pair `k`'s policy (10.16.0.0 up, or fd03::).
    fn sa_addr(&self, k: usize) -> IpAddr {
        let i = k as u32;
        match self.host {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 16, 0, 0)) + i)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfd03, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16)),
        }
    }

    fn host_len(&self) -> u8 {
        if self.host.is_ipv4() { 32 } else { 128 }
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let ethertype: u16 = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    // Classic pcap, microsecond timestamps, Ethernet (LINKTYPE_ETHERNET = 1).
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&[0; 8])?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for (i, f) in frames.iter().enumerate() {
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&(i as u32).to_le_bytes())?;
        out.write_all(&(f.len() as u32).to_le_bytes())?;
        out.write_all(&(f.len() as u32).to_le_bytes())?;
        out.write_all(f)?;
    }
    out.flush()
}

/// Inner IP packet lengths of `n` packets of a size case.
fn lengths(size: &str, n: usize) -> Result<Vec<usize>, String> {
    if size.eq_ignore_ascii_case("imix") {
        return Ok((0..n).map(|j| IMIX[j % IMIX.len()]).collect());
    }
    let s: usize = size.parse().map_err(|_| format!("size {size:?} is neither a number nor imix"))?;
    if !(64..=1500).contains(&s) {
        return Err(format!("size {s}: 64 to 1500 bytes"));
    }
    Ok(vec![s; n])
}

#[derive(Clone, Copy)]
struct Case<'a> {
    dir: Dir,
    size: &'a str,
    backend: &'a str,
    cores: usize,
    /// SA pairs carrying the traffic.
    sas: usize,
    /// Frames in the pcap: at least one per SA pair.
    frames: usize,
}

fn aes(args: &Args) -> GcmKeyLen {
    if args.aes == 256 { GcmKeyLen::Aes256 } else { GcmKeyLen::Aes128 }
}

fn algorithm(args: &Args) -> &'static str {
    if args.aes == 256 { "aes256gcm16" } else { "aes128gcm16" }
}

fn key_hex(args: &Args, k: &str) -> String {
    k[..if args.aes == 256 { 64 } else { 32 }].to_string()
}

/// The traffic of a case: inner packets, and for inbound their ESP form as the peer sends it.
fn traffic(args: &Args, t: &Topo, case: &Case) -> Result<(Vec<Vec<u8>>, u64), String> {
    let lens = lengths(case.size, case.frames)?;
    let (sas, flows) = (case.sas, args.flows.max(case.sas));
    let inner_bytes: u64 = lens.iter().map(|&l| l as u64).sum();
    // The peer's outbound SAs (our inbound), one per SA pair.
    let peer_sas: Vec<OutboundSa> = if case.dir == Dir::In {
        (0..sas)
            .map(|k| {
                let key = KeyMaterial::new(aes(args), &hex(&key_hex(args, KEY_IN)), &SALT).expect("key");
                let cfg = SaConfig {
                    spi: (SPI_IN + k) as u32,
                    key,
                    local: t.peer,
                    remote: t.gw,
                    encap: None,
                    esn: false,
                    replay_window: 64,
                    backend: Backend::RustCrypto,
                };
                OutboundSa::new(&cfg, Arc::new(SeqCounter::default())).expect("SA")
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut frames = Vec::with_capacity(lens.len());
    for (j, &len) in lens.iter().enumerate() {
        let flow = j % flows.max(1);
        let sa = flow % sas.max(1);
        let remote = t.remote_addr(sas, sa, flow);
        let (sport, dport) = (10000 + flow as u16, 20000 + (flow / 7) as u16);
        // Outbound: host -> remote subnet. Inbound: remote subnet -> host.
        let (src, dst) = if case.dir == Dir::Out { (t.host, remote) } else { (remote, t.host) };
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = ipv4_udp(s, d, len, j);
                p[20..22].copy_from_slice(&sport.to_be_bytes());
                p[22..24].copy_from_slice(&dport.to_be_bytes());
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_udp(s, d, len, sport, dport),
            _ => unreachable!("one family"),
        };
        frames.push(match case.dir {
            Dir::Out => frame(PROT_MAC, HOST_MAC, &ip),
            Dir::In => {
                let mut b = VecBuf::new(&ip, 128, 64);
                peer_sas[sa].encapsulate(j as u64 / sas.max(1) as u64 + 1, &mut b).map_err(|e| e.to_string())?;
                frame(UNPROT_MAC, PEER_MAC, b.data())
            }
        });
    }
    Ok((frames, inner_bytes))
}

/// mbufs for a program replaying the pcap: each RX queue holds the whole file in memory
/// (infinite_rx), plus room for the packets in flight.
fn mbufs(case: &Case) -> usize {
    case.cores * case.frames + 32767
}

/// The gateway's configuration for a case: the pcap port on the input side, net_null on the
/// output side, static neighbours. The SAs and policies come through the control socket.
fn gateway_config(args: &Args, t: &Topo, case: &Case, socket: &Path, (prot_port, unprot_port): (&str, &str)) -> String {
    format!(
        r#"[dataplane]
crypto = "{backend}"
exception_path = false
control_socket = "{socket}"
mbufs = {mbufs}
burst = {burst}
max_sas = {max_sas}

[[port]]
name = "{prot_port}"
role = "protected"
mac = "02:00:00:00:00:01"
addresses = ["{prot}"]
mtu = 9000

[[port]]
name = "{unprot_port}"
role = "unprotected"
mac = "02:00:00:00:00:02"
addresses = ["{unprot}"]
mtu = 9000

[[neighbor]]
port = "{prot_port}"
ip = "{host}"
mac = "02:00:00:00:00:10"

[[neighbor]]
port = "{unprot_port}"
ip = "{peer}"
mac = "02:00:00:00:00:20"
"#,
        backend = case.backend,
        socket = socket.display(),
        mbufs = mbufs(case),
        burst = args.burst,
        max_sas = (2 * (case.sas + args.program.unwrap_or(0))).max(16),
        prot = t.prot_prefix,
        unprot = t.unprot_prefix,
        host = t.host,
        peer = t.peer,
    )
}

/// SA pair `k` (SPIs 0x1000 + k out and 0x100000 + k in) and its policy as control-socket
/// commands. With `subnet`, the policy covers the peer's subnet; otherwise the pair's own
/// address.
fn sa_pair(args: &Args, t: &Topo, k: usize, subnet: bool) -> [ctlproto::Command; 3] {
    let sa = |dir: &str, spi: usize, key: &str| ctlproto::RawSa {
        name: format!("{dir}{k}"),
        spi: spi as u32,
        direction: dir.into(),
        algorithm: algorithm(args).into(),
        key: key_hex(args, key).into(),
        salt: "0a0b0c0d".into(),
        local: t.gw.to_string(),
        remote: t.peer.to_string(),
        replay_window: (dir == "in").then_some(0),
        ..Default::default()
    };
    let dst = if subnet { t.remote_net.clone() } else { format!("{}/{}", t.sa_addr(k), t.host_len()) };
    let policy = ctlproto::RawPolicy {
        name: format!("p{k}"),
        src: t.local_net.clone(),
        dst,
        action: "protect".into(),
        sa_out: Some(format!("out{k}")),
        sa_in: Some(format!("in{k}")),
        ..Default::default()
    };
    [
        ctlproto::Command::SetPolicy { policy },
        ctlproto::Command::AddSa { sa: sa("out", SPI_OUT + k, KEY_OUT) },
        ctlproto::Command::AddSa { sa: sa("in", SPI_IN + k, KEY_IN) },
    ]
}

const SPI_OUT: usize = 0x1000;
const SPI_IN: usize = 0x10_0000;

/// Sends commands through the control socket in batches of whole SA pairs (as many as one
/// connection takes); fails on the first refused one.
fn install(socket: &Path, commands: impl Iterator<Item = ctlproto::Command>) -> Result<(), String> {
    let per_batch = ctlproto::MAX_BATCH / 3 * 3;
    let mut batch = Vec::with_capacity(per_batch);
    let send = |batch: &mut Vec<ctlproto::Command>| -> Result<(), String> {
        let answers = ctlproto::request_many(socket, std::mem::take(batch))?;
        match answers.into_iter().find_map(|a| a.error) {
            Some(e) => Err(format!("the dataplane refused an SA or policy: {e}")),
            None => Ok(()),
        }
    };
    for c in commands {
        batch.push(c);
        if batch.len() == per_batch {
            send(&mut batch)?;
        }
    }
    if !batch.is_empty() {
        send(&mut batch)?;
    }
    Ok(())
}

/// The EAL arguments both programs get: the lcores, memory without hugepages, and the two
/// vdevs (one pcap RX queue per core).
fn eal_args(pcap: &Path, cores: usize, mbufs: usize, prefix: &str, testpmd: bool) -> Vec<String> {
    // About 2.4 KiB per mbuf with its headers, plus the rest of DPDK.
    let memory_mb = (mbufs * 3 / 1024 + 256).max(1024);
    let lcores = match (cores, testpmd) {
        // testpmd forwards on lcores other than its main one: main on CPU 0, forwarding on 1.
        (1, true) => "0,1".to_string(),
        (1, false) => "1".to_string(),
        // Two forwarding lcores on CPUs 0 and 1, testpmd's (mostly sleeping) main beside them.
        (_, true) => "0@0,1@0,2@1".to_string(),
        (_, false) => "0,1".to_string(),
    };
    let lflag = if lcores.contains('@') { "--lcores" } else { "-l" };
    let rx = (0..cores).map(|_| format!("rx_pcap={}", pcap.display())).collect::<Vec<_>>().join(",");
    vec![
        lflag.into(),
        lcores,
        "--no-huge".into(),
        "-m".into(),
        memory_mb.to_string(),
        format!("--file-prefix={prefix}"),
        "--no-pci".into(),
        format!("--vdev=net_pcap0,{rx},infinite_rx=1"),
        "--vdev=net_null0,no-rx=1".into(),
        "--log-level=lib.eal:error".into(),
    ]
}

/// The CPUs that forward, as `eal_args` places the lcores (the same for testpmd and the
/// gateway): whose stolen time a run reports.
fn forwarding_cpus(cores: usize) -> &'static [usize] {
    if cores == 1 { &[1] } else { &[0, 1] }
}

/// testpmd io forwarding over the same vdevs: the median of its per-second RX rates on the
/// pcap port after the warm-up, and the share of the forwarding CPUs' time stolen meanwhile.
fn ceiling(args: &Args, case: &Case, pcap: &Path, log: &Path) -> Result<(f64, Option<f64>), String> {
    let (cores, mbufs) = (case.cores, mbufs(case));
    let mut cmd = Command::new(&args.testpmd);
    cmd.args(eal_args(pcap, cores, mbufs, "gwbench-tp", true));
    cmd.args(["--", "--forward-mode=io", "--stats-period=1", "--no-lsc-interrupt"]);
    cmd.arg(format!("--burst={}", args.burst));
    cmd.arg(format!("--total-num-mbufs={mbufs}"));
    cmd.arg(format!("--nb-cores={cores}")).arg(format!("--rxq={cores}")).arg(format!("--txq={cores}"));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args.testpmd.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let want = (args.warmup.ceil() as usize) + (args.seconds.ceil() as usize).max(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut port0 = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("statistics for port 0") {
                port0 = true;
            } else if line.contains("statistics for port") {
                port0 = false;
            }
            if port0 && let Some(v) = line.trim().strip_prefix("Rx-pps:") {
                let pps: f64 = v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
                if tx.send(pps).is_err() {
                    break;
                }
            }
        }
        text
    });
    let mut rates = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(args.warmup + args.seconds + 20.0);
    let skip = args.warmup.ceil() as usize;
    let mut steal_from = None;
    while rates.len() < want && Instant::now() < deadline {
        if rates.len() == skip {
            steal_from = StealClock::read(forwarding_cpus(cores));
        }
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(r) => rates.push(r),
            Err(_) => break,
        }
    }
    let steal = steal_from.zip(StealClock::read(forwarding_cpus(cores))).map(|(a, b)| a.share_until(&b));
    stop(&mut child);
    drop(rx);
    let text = reader.join().unwrap_or_default();
    let _ = std::fs::write(log, &text);
    let measured: Vec<f64> = rates.into_iter().skip(skip).filter(|&r| r > 0.0).collect();
    if measured.is_empty() {
        return Err(format!("testpmd reported no rates (log: {})", log.display()));
    }
    Ok((median_min_max(&measured).0, steal))
}

fn stop(child: &mut Child) {
    // SIGINT: testpmd and the dataplane stop their ports and release the vdevs cleanly.
    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What one run of the dataplane measured.
#[derive(Clone, Debug, Serialize)]
struct GwRun {
    pps: f64,
    /// Packets in and out, and dropped, over the measured interval (all cores).
    rx: u64,
    tx: u64,
    dropped: u64,
    /// Encrypted (outbound) or decrypted (inbound).
    processed: u64,
    /// Time to install the case's SA pairs and policies through the control socket.
    install_secs: f64,
    program: Option<Program>,
    /// The share of the forwarding CPUs' time the hypervisor took while the rate was measured
    /// (`steal` in /proc/stat): on a VM, what a slow run lost to other guests or the host.
    steal: Option<f64>,
}

impl GwRun {
    /// An error unless the gateway dropped nothing and processed every packet it received,
    /// less up to `in_flight` still in the pipeline when the counters were read.
    fn complete(&self, tag: &str, in_flight: u64, log: &Path) -> Result<(), String> {
        if self.dropped > 0 || self.processed + in_flight < self.rx {
            return Err(format!(
                "{tag}: the gateway dropped {} and processed {} of {} packets (log: {})",
                self.dropped,
                self.processed,
                self.rx,
                log.display()
            ));
        }
        Ok(())
    }
}

/// What the dataplane did while `--program` SA pairs were installed under traffic.
#[derive(Clone, Debug, Serialize)]
struct Program {
    pairs: usize,
    seconds: f64,
    /// SAs the dataplane listed afterwards (two per pair, with the established pair).
    sas_listed: usize,
    rx: u64,
    tx: u64,
    processed: u64,
    dropped: u64,
}

/// Received, sent, encrypted or decrypted, dropped: summed over the cores.
type Totals = (u64, u64, u64, u64);

fn totals(s: &ctlproto::Snapshot, dir: Dir) -> Totals {
    let rx = s.cores.iter().map(|c| c.rx).sum();
    let tx = s.cores.iter().map(|c| c.tx).sum();
    let processed = s.cores.iter().map(|c| if dir == Dir::Out { c.encrypted } else { c.decrypted }).sum();
    let dropped = s.drops.iter().map(|d| d.count).sum();
    (rx, tx, processed, dropped)
}

/// A program beside this one (or as given).
fn sibling(given: Option<&PathBuf>, name: &str) -> Result<PathBuf, String> {
    match given {
        Some(p) => Ok(p.clone()),
        None => Ok(std::env::current_exe().map_err(|e| e.to_string())?.with_file_name(name)),
    }
}

/// Starts the dataplane with `config` and EAL arguments `eal`, waits for its control socket
/// and installs the case's SA pairs and policies through it. Returns the process and the
/// seconds the installation took.
fn start_gateway(
    args: &Args,
    topo: &Topo,
    config: &Path,
    socket: &Path,
    eal: Vec<String>,
    case: &Case,
    log: &Path,
) -> Result<(Child, f64), String> {
    let bin = sibling(args.dataplane.as_ref(), "dataplane")?;
    let _ = std::fs::remove_file(socket);
    let logf = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(config)
        .arg("--")
        .args(eal)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let started = (|| {
        let start = Instant::now();
        while !socket.exists() {
            if start.elapsed() > Duration::from_secs(30) || matches!(child.try_wait(), Ok(Some(_))) {
                return Err(format!("the dataplane did not start (log: {})", log.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
        install(socket, (0..case.sas).flat_map(|k| sa_pair(args, topo, k, case.sas == 1)))?;
        Ok(t.elapsed().as_secs_f64())
    })();
    match started {
        Ok(secs) => Ok((child, secs)),
        Err(e) => {
            stop(&mut child);
            Err(e)
        }
    }
}

fn gateway(
    args: &Args,
    topo: &Topo,
    config: &Path,
    socket: &Path,
    pcap: &Path,
    case: &Case,
    log: &Path,
) -> Result<GwRun, String> {
    let eal = eal_args(pcap, case.cores, mbufs(case), "gwbench-gw", false);
    let (mut child, install_secs) = start_gateway(args, topo, config, socket, eal, case, log)?;
    let result = (|| {
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
        let read = || -> Result<(Instant, Totals), String> {
            let r = ctlproto::request(socket, ctlproto::Command::Totals).map_err(|e| e.to_string())?;
            Ok((Instant::now(), totals(&r.stats.ok_or("no counters in the answer")?, case.dir)))
        };
        let program = match args.program {
            Some(n) => {
                let (t0, a) = read()?;
                install(socket, (1..=n).flat_map(|k| sa_pair(args, topo, k, false)))?;
                let (t1, b) = read()?;
                let listed = ctlproto::request(socket, ctlproto::Command::ListSas)
                    .map_err(|e| e.to_string())?
                    .sas
                    .map_or(0, |l| l.len());
                Some(Program {
                    pairs: n,
                    seconds: (t1 - t0).as_secs_f64(),
                    sas_listed: listed,
                    rx: b.0 - a.0,
                    tx: b.1 - a.1,
                    processed: b.2 - a.2,
                    dropped: b.3 - a.3,
                })
            }
            None => None,
        };
        let cpus = forwarding_cpus(case.cores);
        let steal_from = StealClock::read(cpus);
        let (t0, a) = read()?;
        std::thread::sleep(Duration::from_secs_f64(args.seconds));
        let (t1, b) = read()?;
        let steal = steal_from.zip(StealClock::read(cpus)).map(|(s0, s1)| s0.share_until(&s1));
        let dt = (t1 - t0).as_secs_f64();
        let rx = b.0 - a.0;
        Ok(GwRun {
            pps: rx as f64 / dt,
            rx,
            tx: b.1 - a.1,
            processed: b.2 - a.2,
            dropped: b.3 - a.3,
            install_secs,
            program,
            steal,
        })
    })();
    stop(&mut child);
    result
}

#[derive(Clone, Debug, Serialize)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(v: &[f64]) -> Stat {
    let (median, min, max) = median_min_max(v);
    Stat { median, min, max }
}

#[derive(Clone, Debug, Serialize)]
struct Row {
    dir: Dir,
    size: String,
    backend: String,
    cores: usize,
    /// Mean inner IP packet length.
    mean_len: f64,
    mpps: Stat,
    gbps: Stat,
    cycles_per_pkt: Option<f64>,
    ceiling_mpps: Option<Stat>,
    ratio_to_ceiling: Option<Stat>,
    aead_mpps: f64,
    ratio_to_aead: f64,
    /// With --vs-one-pair: one SA pair on the same frames, run between the N-pair runs.
    one_pair_mpps: Option<Stat>,
    /// Each N-pair run over its one-pair run.
    ratio_to_one_pair: Option<Stat>,
    /// Per testpmd run, the share of the forwarding CPUs' time stolen (see `GwRun::steal`).
    ceiling_steal: Vec<Option<f64>>,
    runs: Vec<GwRun>,
    latency: Option<LatencyPair>,
}

/// Latency at one offered load through the gateway and through testpmd.
#[derive(Clone, Debug, Serialize)]
struct LatencyPair {
    offered_mpps: f64,
    gateway: LatencyRun,
    testpmd: LatencyRun,
}

/// What trafgen measured in one fixed-rate trial (microseconds).
#[derive(Clone, Debug, Serialize)]
struct LatencyRun {
    sent: u64,
    lost: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// One fixed-rate trafgen trial over the two memif sockets (trafgen is the client: the
/// device under test serves them).
fn trafgen_trial(
    args: &Args,
    t: &Topo,
    case: &Case,
    rate: f64,
    memif: [&Path; 2],
    json: &Path,
    log: &Path,
) -> Result<LatencyRun, String> {
    let bin = sibling(args.trafgen.as_ref(), "trafgen")?;
    let remote = t.remote_addr(case.sas, 0, 1);
    let salt = "0a0b0c0d";
    let mut cmd = Command::new(&bin);
    match case.dir {
        Dir::Out => cmd
            .args(["--tx-port", "net_memif0", "--rx-port", "net_memif1", "--dst-mac", "02:00:00:00:00:01"])
            .args(["--src", &t.host.to_string(), "--dst", &remote.to_string()])
            .arg(format!("--rx-esp=spi={SPI_OUT},key={},salt={salt}", key_hex(args, KEY_OUT))),
        // The ESP is decrypted by the gateway; through testpmd it comes back as sent, and
        // trafgen opens it with its own SA.
        Dir::In => cmd
            .args(["--tx-port", "net_memif1", "--rx-port", "net_memif0", "--dst-mac", "02:00:00:00:00:02"])
            .args(["--src", &remote.to_string(), "--dst", &t.host.to_string()])
            .arg(format!(
                "--tx-esp=spi={SPI_IN},key={},salt={salt},local={},remote={}",
                key_hex(args, KEY_IN),
                t.peer,
                t.gw
            ))
            .arg(format!("--rx-esp=spi={SPI_IN},key={},salt={salt}", key_hex(args, KEY_IN))),
    };
    cmd.args(["--size", case.size, "--flows", "16", "--rate-mpps", &rate.to_string(), "--link-timeout", "5"])
        .args(["--duration", &args.seconds.to_string(), "--json"])
        .arg(json)
        .args([
            "--",
            "-l",
            "0",
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--file-prefix=gwbench-tg",
            "--log-level=lib.eal:error",
        ])
        .arg(format!("--vdev=net_memif0,role=client,id=0,socket-abstract=no,socket={}", memif[0].display()))
        .arg(format!("--vdev=net_memif1,role=client,id=1,socket-abstract=no,socket={}", memif[1].display()));
    // A memif client that connects while the server's port is still starting is refused and
    // never retries; a new trafgen connects again.
    for _attempt in 0..3 {
        let _ = std::fs::remove_file(json);
        let logf = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        await_exit_unreaped(&child, Duration::from_secs_f64(args.seconds + 60.0));
        if !std::fs::read_to_string(log).unwrap_or_default().contains("links did not come up") {
            break;
        }
    }
    let doc: serde_json::Value = std::fs::read_to_string(json)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .ok_or_else(|| format!("trafgen wrote no result (log: {})", log.display()))?;
    let trial = &doc["trials"][0];
    let lat = &trial["latency_us"];
    let f = |k: &str| lat[k].as_f64().unwrap_or(f64::NAN);
    Ok(LatencyRun {
        sent: trial["sent"].as_u64().unwrap_or(0),
        lost: trial["lost"].as_u64().unwrap_or(0),
        p50: f("p50"),
        p90: f("p90"),
        p99: f("p99"),
        p999: f("p999"),
        max: f("max"),
    })
}

/// Waits until `child` has exited (or `limit` passed) without reaping it. On this machine's
/// kernel (a Firecracker guest), reaping a trafgen that used memif sometimes spent minutes in
/// the kernel (wait4 -> release_task -> proc_invalidate_siblings_dcache -> d_walk, with
/// "stalled CPU-bound worker pools" in dmesg) while both CPUs were busy polling; the zombie is
/// left to init when gwbench exits instead.
fn await_exit_unreaped(child: &Child, limit: Duration) {
    let stat = format!("/proc/{}/stat", child.id());
    let start = Instant::now();
    while start.elapsed() < limit {
        match std::fs::read_to_string(&stat) {
            // The state follows the parenthesised command name.
            Ok(s) if s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) => return,
            Err(_) => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Still running: stuck; it must not disturb what is measured next.
    let _ = Command::new("kill").arg("-KILL").arg(child.id().to_string()).status();
}

/// Latency at `rate` Mpps offered: the case's traffic from trafgen through the dataplane
/// (one worker, ports on net_memif), then through testpmd io forwarding on the same sockets.
fn latency(args: &Args, t: &Topo, case: &Case, work: &Path, tag: &str, rate: f64) -> Result<LatencyPair, String> {
    let (mp, mu) = (work.join("memif-prot.sock"), work.join("memif-unprot.sock"));
    let vdevs = [
        format!("--vdev=net_memif0,role=server,id=0,socket-abstract=no,socket={}", mp.display()),
        format!("--vdev=net_memif1,role=server,id=1,socket-abstract=no,socket={}", mu.display()),
    ];
    let wait_sockets = |child: &mut Child| -> Result<(), String> {
        let start = Instant::now();
        while !(mp.exists() && mu.exists()) {
            if start.elapsed() > Duration::from_secs(30) || matches!(child.try_wait(), Ok(Some(_))) {
                return Err("the memif sockets did not appear".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket exists from the port's probe on; a client that connects before the
        // port is started is refused and does not retry.
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    };
    // One trial through the program serving the sockets, which is stopped after.
    let measure_through = |dut: &mut Child, name: &str| -> Result<LatencyRun, String> {
        let r = wait_sockets(dut).and_then(|()| {
            let json = work.join(format!("{tag}-latency-{name}.json"));
            trafgen_trial(args, t, case, rate, [&mp, &mu], &json, &work.join(format!("{tag}-trafgen-{name}.log")))
        });
        stop(dut);
        r
    };
    let _ = (std::fs::remove_file(&mp), std::fs::remove_file(&mu));
    let socket = work.join("gw.sock");
    let config = work.join(format!("{tag}-memif.toml"));
    std::fs::write(&config, gateway_config(args, t, case, &socket, ("net_memif0", "net_memif1")))
        .map_err(|e| e.to_string())?;
    let mut eal: Vec<String> =
        ["-l", "1", "--no-huge", "-m", "1024", "--no-pci", "--file-prefix=gwbench-gw", "--log-level=lib.eal:error"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    eal.extend(vdevs.iter().cloned());
    let (mut gw, _) = start_gateway(args, t, &config, &socket, eal, case, &work.join(format!("{tag}-latency-gw.log")))?;
    let ours = measure_through(&mut gw, "gw")?;

    let _ = (std::fs::remove_file(&mp), std::fs::remove_file(&mu));
    let tp_log = std::fs::File::create(work.join(format!("{tag}-latency-testpmd.log"))).map_err(|e| e.to_string())?;
    let mut tp = Command::new(&args.testpmd)
        .args([
            "-l",
            "0,1",
            "--no-huge",
            "-m",
            "1024",
            "--no-pci",
            "--file-prefix=gwbench-tp",
            "--log-level=lib.eal:error",
        ])
        .args(&vdevs)
        .args(["--", "--forward-mode=io", "--no-lsc-interrupt", "--total-num-mbufs=32767"])
        .stdin(Stdio::piped())
        .stdout(tp_log.try_clone().map_err(|e| e.to_string())?)
        .stderr(tp_log)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args.testpmd.display()))?;
    let base = measure_through(&mut tp, "tp")?;
    Ok(LatencyPair { offered_mpps: rate, gateway: ours, testpmd: base })
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("gwbench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let work = match &args.workdir {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("gwbench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let topo = Topo::new(args.family);
    let hz = perf::tsc_per_ns(50).map(|t| t * 1e9);
    // The backend names as the dataplane resolves them (auto: the fastest here).
    let mut backends = Vec::new();
    for b in &args.backends {
        let (backend, _) = dataplane::crypto::choose(b)?;
        if !backends.iter().any(|(x, _): &(Backend, String)| *x == backend) {
            backends.push((backend, b.clone()));
        }
    }
    let total = args.dirs.len() * args.sizes.len() * backends.len() * args.cores.len();
    println!(
        "gwbench: {} cases x {} runs, {:.1} s each (+{:.1} s warm-up), {} flows, {} SA pair(s), AES-{}-GCM, {:?}; work dir {}",
        total,
        args.runs,
        args.seconds,
        args.warmup,
        args.flows,
        args.sas,
        args.aes,
        args.family,
        work.display()
    );
    let mut rows = Vec::new();
    let mut n = 0;
    for &dir in &args.dirs {
        for size in &args.sizes {
            for (backend, _) in &backends {
                for &cores in &args.cores {
                    n += 1;
                    let sas = if args.program.is_some() { 1 } else { args.sas.max(1) };
                    let frames = args.packets.max(sas);
                    let case = Case { dir, size, backend: backend.name(), cores, sas, frames };
                    rows.push(measure(args, &topo, &case, &work, hz, (n, total))?);
                }
            }
        }
    }
    print_table(&rows);
    if let Some(p) = &args.json {
        let doc = serde_json::json!({
            "tool": "gwbench",
            "args": format!("{:?}", std::env::args().skip(1).collect::<Vec<_>>()),
            "family": args.family,
            "aes_bits": args.aes,
            "flows": args.flows,
            "sas": args.sas,
            "seconds": args.seconds,
            "rows": rows,
        });
        std::fs::write(p, serde_json::to_string_pretty(&doc).expect("json")).map_err(|e| e.to_string())?;
        println!("JSON: {}", p.display());
    }
    if let Some(p) = &args.svg {
        std::fs::write(p, svg(&rows, args)).map_err(|e| e.to_string())?;
        println!("SVG: {}", p.display());
    }
    if args.workdir.is_none() {
        // Our own scratch directory: pcaps, configurations and logs go with it.
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn measure(
    args: &Args,
    t: &Topo,
    case: &Case,
    work: &Path,
    hz: Option<f64>,
    (n, total): (usize, usize),
) -> Result<Row, String> {
    let tag = format!("{:?}-{}-{}-{}c", case.dir, case.size, case.backend, case.cores).to_lowercase();
    let (frames, inner_bytes) = traffic(args, t, case)?;
    let pcap = work.join(format!("{tag}.pcap"));
    write_pcap(&pcap, &frames).map_err(|e| e.to_string())?;
    let socket = work.join("gw.sock");
    let config = work.join(format!("{tag}.toml"));
    let ports = if case.dir == Dir::Out { ("net_pcap0", "net_null0") } else { ("net_null0", "net_pcap0") };
    std::fs::write(&config, gateway_config(args, t, case, &socket, ports)).map_err(|e| e.to_string())?;
    let mean_len = inner_bytes as f64 / frames.len() as f64;
    // The one-pair baseline: the same frames, all on one SA pair.
    let one_pair = (args.vs_one_pair && case.sas > 1)
        .then(|| -> Result<_, String> {
            let one = Case { sas: 1, ..*case };
            let tag = format!("{tag}-one-pair");
            let pcap = work.join(format!("{tag}.pcap"));
            write_pcap(&pcap, &traffic(args, t, &one)?.0).map_err(|e| e.to_string())?;
            let config = work.join(format!("{tag}.toml"));
            std::fs::write(&config, gateway_config(args, t, &one, &socket, ports)).map_err(|e| e.to_string())?;
            Ok((one, tag, pcap, config))
        })
        .transpose()?;
    // Packets still in the pipeline when the counters were read: a burst per port and core
    // (the one-pair baseline has as many cores).
    let in_flight = 64 * case.cores as u64 * u64::from(args.burst);
    let mut ours = Vec::new();
    let mut ceil = Vec::new();
    let mut ceil_steal = Vec::new();
    let mut base = Vec::new();
    // Before the N-pair run every other time, so that neither always runs first.
    let run_one_pair = |r: usize| -> Result<Option<f64>, String> {
        let Some((one, one_tag, pcap, config)) = &one_pair else { return Ok(None) };
        let log = work.join(format!("{one_tag}-gw-{r}.log"));
        let b = gateway(args, t, config, &socket, pcap, one, &log)?;
        b.complete(one_tag, in_flight, &log)?;
        Ok(Some(b.pps))
    };
    for r in 0..args.runs {
        print!("[{n}/{total}] {tag} run {}/{}: ", r + 1, args.runs);
        let _ = std::io::stdout().flush();
        if r % 2 == 1
            && let Some(b) = run_one_pair(r)?
        {
            print!("one SA pair on the same frames {:.2} Mpps, ", b / 1e6);
            base.push(b);
        }
        // Interleaved, so that slow drifts of the machine touch both alike.
        if !args.no_ceiling {
            let (c, steal) = ceiling(args, case, &pcap, &work.join(format!("{tag}-testpmd-{r}.log")))?;
            print!("testpmd {:.2} Mpps{}, ", c / 1e6, stolen(steal));
            ceil.push(c);
            ceil_steal.push(steal);
        }
        let log = work.join(format!("{tag}-gw-{r}.log"));
        let g = gateway(args, t, &config, &socket, &pcap, case, &log)?;
        println!(
            "gateway {:.2} Mpps{} ({} in, {} out, {} dropped; {} SA pair(s) installed in {:.2} s)",
            g.pps / 1e6,
            stolen(g.steal),
            g.rx,
            g.tx,
            g.dropped,
            case.sas,
            g.install_secs
        );
        g.complete(&tag, in_flight, &log)?;
        if let Some(p) = &g.program {
            println!(
                "  programmed {} SA pairs with their policies in {:.2} s ({:.0} pairs/s) while forwarding {:.2} Mpps \
                 on the established pair: {} in, {} out, {} dropped; {} SAs listed afterwards",
                p.pairs,
                p.seconds,
                p.pairs as f64 / p.seconds,
                p.rx as f64 / p.seconds / 1e6,
                p.rx,
                p.tx,
                p.dropped,
                p.sas_listed
            );
            if p.dropped > 0 || p.processed + in_flight < p.rx || p.sas_listed != 2 * (p.pairs + 1) {
                return Err(format!("{tag}: programming lost traffic or SAs: {p:?} (log: {})", log.display()));
            }
        }
        ours.push(g);
        if r % 2 == 0
            && let Some(b) = run_one_pair(r)?
        {
            println!("  one SA pair on the same frames: {:.2} Mpps", b / 1e6);
            base.push(b);
        }
    }
    let mpps: Vec<f64> = ours.iter().map(|g| g.pps / 1e6).collect();
    let gbps: Vec<f64> = ours.iter().map(|g| g.pps * mean_len * 8.0 / 1e9).collect();
    let ceiling_mpps = (!ceil.is_empty()).then(|| stat(&ceil.iter().map(|c| c / 1e6).collect::<Vec<_>>()));
    let ratio = (!ceil.is_empty()).then(|| stat(&ours.iter().zip(&ceil).map(|(g, c)| g.pps / c).collect::<Vec<_>>()));
    let one_pair_mpps = (!base.is_empty()).then(|| stat(&base.iter().map(|b| b / 1e6).collect::<Vec<_>>()));
    let ratio_to_one_pair =
        (!base.is_empty()).then(|| stat(&ours.iter().zip(&base).map(|(g, b)| g.pps / b).collect::<Vec<_>>()));
    let m = stat(&mpps);
    let backend = dataplane::crypto::choose(case.backend)?.0;
    let aead = aead_mpps(backend, aes(args), case.size)?;
    // Latency wants a core of its own for trafgen: one-worker cases only on this machine.
    let latency = match args.latency_mpps {
        Some(rate) if case.cores == 1 => {
            let l = latency(args, t, case, work, &tag, rate)?;
            println!(
                "[{n}/{total}] {tag} latency at {rate} Mpps offered: gateway p50 {:.1} us, p99 {:.1} us, max {:.1} us ({} of {} lost); testpmd p50 {:.1} us, p99 {:.1} us",
                l.gateway.p50,
                l.gateway.p99,
                l.gateway.max,
                l.gateway.lost,
                l.gateway.sent,
                l.testpmd.p50,
                l.testpmd.p99
            );
            Some(l)
        }
        _ => None,
    };
    Ok(Row {
        dir: case.dir,
        size: case.size.to_string(),
        backend: case.backend.to_string(),
        cores: case.cores,
        mean_len,
        cycles_per_pkt: hz.map(|h| h * case.cores as f64 / (m.median * 1e6)),
        ratio_to_aead: m.median / aead,
        mpps: m,
        gbps: stat(&gbps),
        ceiling_mpps,
        ratio_to_ceiling: ratio,
        aead_mpps: aead,
        one_pair_mpps,
        ratio_to_one_pair,
        ceiling_steal: ceil_steal,
        runs: ours,
        latency,
    })
}

/// " (3.1% stolen)" when the hypervisor took a noticeable share of a run's time.
fn stolen(steal: Option<f64>) -> String {
    match steal {
        Some(s) if s >= 0.005 => format!(" ({:.1}% stolen)", s * 100.0),
        _ => String::new(),
    }
}

/// The backend's bare AES-GCM seal rate on the payload sizes of a case, one core.
fn aead_mpps(backend: Backend, len: GcmKeyLen, size: &str) -> Result<f64, String> {
    let lens = lengths(size, 12)?;
    let km = KeyMaterial::new(len, &vec![7u8; len.key_len()], &SALT).expect("key");
    let c = esp::aead::Cipher::new(backend, &km);
    let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&l| vec![0x5a; l]).collect();
    let (mut n, start) = (0u64, Instant::now());
    let mut nonce = [0u8; 12];
    while start.elapsed() < Duration::from_millis(300) {
        for b in bufs.iter_mut() {
            nonce[4..].copy_from_slice(&n.to_be_bytes());
            std::hint::black_box(esp::aead::Aead::seal(&c, &nonce, &[0u8; 8], b));
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64() / 1e6)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<4} {:<6} {:<9} {:>2} | {:>7} {:>15} {:>7} {:>7} | {:>8} {:>17} | {:>8} {:>7}",
        "dir",
        "size",
        "backend",
        "c",
        "Mpps",
        "[min-max]",
        "Gbps",
        "cyc/pkt",
        "ceil",
        "ratio [min-max]",
        "AEAD",
        "r-AEAD"
    );
    for r in rows {
        let ceil = r.ceiling_mpps.as_ref().map_or("-".to_string(), |c| format!("{:.2}", c.median));
        let ratio = r
            .ratio_to_ceiling
            .as_ref()
            .map_or("-".to_string(), |c| format!("{:.3} [{:.3}-{:.3}]", c.median, c.min, c.max));
        println!(
            "{:<4} {:<6} {:<9} {:>2} | {:>7.2} {:>15} {:>7.2} {:>7} | {:>8} {:>17} | {:>8.2} {:>7.3}",
            format!("{:?}", r.dir).to_lowercase(),
            r.size,
            r.backend,
            r.cores,
            r.mpps.median,
            format!("[{:.2}-{:.2}]", r.mpps.min, r.mpps.max),
            r.gbps.median,
            r.cycles_per_pkt.map_or("-".into(), |c| format!("{c:.0}")),
            ceil,
            ratio,
            r.aead_mpps,
            r.ratio_to_aead
        );
    }
    println!(
        "  Mpps/Gbps: packets forwarded by the dataplane (Gbps on inner IP bytes); ceil: dpdk-testpmd io forwarding over \
         the same vdevs and lcores (Mpps); ratio = gateway / ceiling per interleaved run; AEAD: the backend's bare \
         seal on the same payload sizes, one core (Mpps); r-AEAD = gateway Mpps / AEAD Mpps."
    );
    let with_baseline: Vec<(&Row, &Stat, &Stat)> =
        rows.iter().filter_map(|r| Some((r, r.one_pair_mpps.as_ref()?, r.ratio_to_one_pair.as_ref()?))).collect();
    if !with_baseline.is_empty() {
        println!();
        println!("against one SA pair on the same frames (--vs-one-pair; runs interleaved):");
        println!(
            "{:<4} {:<6} {:<9} {:>2} | {:>7} {:>8} | {:>17}",
            "dir", "size", "backend", "c", "Mpps", "one pair", "ratio [min-max]"
        );
        for (r, one, ratio) in with_baseline {
            println!(
                "{:<4} {:<6} {:<9} {:>2} | {:>7.2} {:>8.2} | {:>17}",
                format!("{:?}", r.dir).to_lowercase(),
                r.size,
                r.backend,
                r.cores,
                r.mpps.median,
                one.median,
                format!("{:.3} [{:.3}-{:.3}]", ratio.median, ratio.min, ratio.max)
            );
        }
        println!(
            "  ratio = Mpps of each run with all the SA pairs / Mpps of the one-pair run next to it (median of the runs)."
        );
    }
    let with_latency: Vec<(&Row, &LatencyPair)> = rows.iter().filter_map(|r| Some((r, r.latency.as_ref()?))).collect();
    if let Some((_, first)) = with_latency.first() {
        println!();
        println!("latency at {} Mpps offered (trafgen over net_memif, one worker; microseconds):", first.offered_mpps);
        println!(
            "{:<4} {:<6} {:<9} | {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} | {:>7} {:>7} {:>7} {:>8}",
            "dir",
            "size",
            "backend",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "lost",
            "tp p50",
            "tp p99",
            "tp p99.9",
            "tp max"
        );
        for (r, l) in with_latency {
            let (g, b) = (&l.gateway, &l.testpmd);
            println!(
                "{:<4} {:<6} {:<9} | {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>9} | {:>7.1} {:>7.1} {:>7.1} {:>8.1}",
                format!("{:?}", r.dir).to_lowercase(),
                r.size,
                r.backend,
                g.p50,
                g.p90,
                g.p99,
                g.p999,
                g.max,
                format!("{}/{}", g.lost, g.sent),
                b.p50,
                b.p99,
                b.p999,
                b.max
            );
        }
        println!("  tp: the same traffic through dpdk-testpmd io forwarding (the I/O path alone).");
    }
}

/// Throughput against packet size: one line per direction, backend and core count, and the
/// testpmd ceiling of each direction dashed, on a shared Gbit/s axis.
fn svg(rows: &[Row], args: &Args) -> String {
    let sizes: Vec<&str> = args.sizes.iter().map(String::as_str).collect();
    let (w, h, left, right, top, bottom) = (760.0, 440.0, 70.0, 200.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let gbps_of = |r: &Row, mpps: f64| mpps * r.mean_len * 8.0 / 1e3;
    let max = rows
        .iter()
        .flat_map(|r| [gbps_of(r, r.mpps.max), r.ceiling_mpps.as_ref().map_or(0.0, |c| gbps_of(r, c.median))])
        .fold(1.0f64, f64::max)
        * 1.1;
    let x = |i: usize| left + if sizes.len() > 1 { pw * i as f64 / (sizes.len() - 1) as f64 } else { pw / 2.0 };
    let y = |v: f64| top + ph - ph * v / max;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="22" font-size="14">Gateway throughput vs inner packet size (AES-{}-GCM, {:?}, {} SA, {} flows)</text>
"#,
        args.aes, args.family, args.sas, args.flows
    );
    for k in 0..=5 {
        let v = max * k as f64 / 5.0;
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    for (i, sz) in sizes.iter().enumerate() {
        s += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{sz}</text>\n", x(i), top + ph + 18.0);
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">inner IP packet size (bytes)</text>\n<text x=\"18\" y=\"{:.1}\" transform=\"rotate(-90 18 {:.1})\" text-anchor=\"middle\">Gbit/s</text>\n",
        left + pw / 2.0,
        h - 10.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
    // (legend, dashed (a ceiling), points as (size index, Gbit/s))
    type Series = (String, bool, Vec<(usize, f64)>);
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let idx = sizes.iter().position(|z| *z == r.size).unwrap_or(0);
        let name = format!("{:?} {} {}c", r.dir, r.backend, r.cores).to_lowercase();
        match series.iter_mut().find(|s| s.0 == name) {
            Some(s) => s.2.push((idx, r.gbps.median)),
            None => series.push((name, false, vec![(idx, r.gbps.median)])),
        }
        if let Some(c) = &r.ceiling_mpps {
            let name = format!("testpmd {:?} {}c", r.dir, r.cores).to_lowercase();
            let v = gbps_of(r, c.median);
            match series.iter_mut().find(|s| s.0 == name) {
                Some(s) if !s.2.iter().any(|p| p.0 == idx) => s.2.push((idx, v)),
                Some(_) => {}
                None => series.push((name, true, vec![(idx, v)])),
            }
        }
    }
    for (k, (name, dashed, pts)) in series.iter().enumerate() {
        let color = if *dashed { "#555" } else { colors[k % colors.len()] };
        let mut pts = pts.clone();
        pts.sort_by_key(|p| p.0);
        let path: Vec<String> = pts.iter().map(|&(i, v)| format!("{:.1},{:.1}", x(i), y(v))).collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{} points=\"{}\"/>\n",
            if *dashed { " stroke-dasharray=\"6 4\"" } else { "" },
            path.join(" ")
        );
        for &(i, v) in &pts {
            s += &format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>\n", x(i), y(v));
        }
        let ly = top + 14.0 + 18.0 * k as f64;
        s += &format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{}/><text x=\"{}\" y=\"{}\">{name}</text>\n",
            left + pw + 12.0,
            left + pw + 36.0,
            if *dashed { " stroke-dasharray=\"6 4\"" } else { "" },
            left + pw + 42.0,
            ly + 4.0
        );
    }
    s += "</svg>\n";
    s
}
