//! Throughput of the ESP encapsulation and decapsulation stages next to the bare AES-GCM
//! seal/open on the same buffers and lengths, and (optionally) of the whole per-burst pipeline.
//!
//! Every packet of every kind is first restored from a template (`VecBuf::reset`, a copy of the
//! packet into the buffer), inside the timed loop, because the stages work in place. That copy
//! is in both the stage and the AEAD column; it is also timed alone ("reset") so that it can be
//! taken out of the ratio. See perf/README.md for what each column holds.

use clap::{Parser, ValueEnum};
use dataplane::config::{Config, PolicyAction, RouteConf};
use dataplane::counters::DropReason;
use dataplane::net::{self, Mac, Prefix};
use dataplane::pipeline::{Ingress, Neighbor, Pipeline, Verdict};
use esp::EspError;
use esp::aead::{Aead, Backend, Cipher, GcmKeyLen, ICV_LEN, KeyMaterial};
use esp::buf::{PacketBuf, VecBuf};
use esp::codec::{self, ESP_PREFIX_LEN};
use esp::sa::{Authentic, InboundSa, OutboundSa, SaConfig, SeqCounter, UdpEncap};
use esp::wire::{self, Classified};
use perf::{BURST, BURSTS_PER_ROUND, HEADROOM, ROUND, SizeCase, TAILROOM, ipv4_udp, median_min_max};
use serde::Serialize;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Table {
    /// OutboundSa::encapsulate and wire::classify + InboundSa::decapsulate vs bare seal/open.
    Esp,
    /// Pipeline::process_burst on Ethernet frames, outbound (gateway A) and inbound (gateway B).
    Pipeline,
}

#[derive(Parser, Debug)]
#[command(name = "esp-stages", about = "ESP stage throughput next to the bare AEAD, on bursts of 32 packets")]
struct Args {
    /// Inner IP packet sizes in bytes (64 to 1500), or imix (7:4:1 of 64/576/1500).
    #[arg(long, value_delimiter = ',', default_value = "64,512,1420,imix")]
    sizes: Vec<String>,
    /// Timed seconds of each measurement (one kind, one size, one direction, one run).
    /// The reset-only baseline runs a quarter of this.
    #[arg(long, default_value_t = 1.0)]
    seconds_per_case: f64,
    /// Runs of each measurement; the tables show the median and the min-max spread.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write all figures, each run included, as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tables to measure.
    #[arg(long, value_delimiter = ',', default_value = "esp")]
    tables: Vec<Table>,
    /// AES key size of the SA: 128 or 256.
    #[arg(long, default_value_t = 128)]
    aes: u16,
    /// Outer IP version of the ESP table's SA: v4 or v6 (the pipeline table is always v4).
    #[arg(long, default_value = "v4")]
    outer: Outer,
    /// UDP-encapsulate ESP (RFC 3948, port 4500) in the ESP table (the pipeline table never does).
    #[arg(long)]
    udp_encap: bool,
    /// Pin the benchmark thread to this CPU.
    #[arg(long)]
    core: Option<usize>,
    /// AES-GCM implementation: aes-gcm, aws-lc, ipsec-mb, or auto (the fastest here).
    #[arg(long, default_value = "aes-gcm")]
    backend: String,
    /// Directions to measure: out (encap / outbound), in (decap / inbound).
    #[arg(long, value_delimiter = ',', default_value = "out,in")]
    dirs: Vec<Dir>,
    /// Pipeline table: SA pairs (each with its own /32 policy) on both gateways; frame `j`
    /// belongs to pair `j mod N`, so consecutive frames never share an SA (many tunnels).
    #[arg(long, default_value_t = 1)]
    sas: usize,
    /// Pipeline table: frames per timed round (raised to at least --sas and to a whole number
    /// of bursts); the one-SA baseline for --sas N is --frames N. Default one round, 384.
    #[arg(long)]
    frames: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dir {
    Out,
    In,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outer {
    V4,
    V6,
}

const SPI: u32 = 0x1001;
const KEY: [u8; 32] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x0f, 0x1e, 0x2d,
    0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];
const SALT: [u8; 4] = [0x0a, 0x0b, 0x0c, 0x0d];
const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 10);
const GW_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GW_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const GW_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const GW_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// The tunnel of the ESP table.
#[derive(Clone, Copy, Debug)]
struct Tunnel {
    aes: GcmKeyLen,
    backend: Backend,
    outer: Outer,
    udp_encap: bool,
}

/// What one timed round does to each packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// Restore the inner packet, `OutboundSa::encapsulate` (one sequence-number reservation per burst).
    EncapStage,
    /// Restore the inner packet, grow it by the ESP trailer, bare AEAD seal of payload + trailer, store the tag.
    EncapAead,
    /// Restore the inner packet only.
    EncapReset,
    /// Restore the ESP packet, `wire::classify` + `InboundSa::decapsulate`.
    DecapStage,
    /// Restore the ESP packet, bare AEAD open of the same ciphertext.
    DecapAead,
    /// Restore the ESP packet only.
    DecapReset,
    /// Restore the Ethernet frame, `Pipeline::process_burst` on gateway A's protected port.
    PipeOut,
    PipeOutReset,
    /// Restore the ESP frame, `Pipeline::process_burst` on gateway B's unprotected port.
    PipeIn,
    PipeInReset,
    /// With --sas N: PipeOut and PipeIn through gateways with one SA pair and as many frames,
    /// interleaved with the N-pair runs (the many-tunnel ratio).
    PipeOutOneSa,
    PipeInOneSa,
}

fn key_material(aes: GcmKeyLen) -> KeyMaterial {
    KeyMaterial::new(aes, &KEY[..aes.key_len()], &SALT).expect("valid key lengths")
}

/// The SA from gateway A to gateway B (`a_to_b`) or its inbound copy at B.
fn sa_config(t: Tunnel, a_to_b: bool) -> SaConfig {
    let (a, b) = match t.outer {
        Outer::V4 => (IpAddr::V4(GW_A), IpAddr::V4(GW_B)),
        Outer::V6 => (IpAddr::V6(GW_A6), IpAddr::V6(GW_B6)),
    };
    let (local, remote) = if a_to_b { (a, b) } else { (b, a) };
    SaConfig {
        spi: SPI,
        key: key_material(t.aes),
        local,
        remote,
        encap: t.udp_encap.then_some(UdpEncap { sport: 4500, dport: 4500 }),
        esn: false,
        replay_window: 1024,
        backend: t.backend,
    }
}

/// Where the ciphertext and tag of an ESP template lie, with its nonce and AAD, for the bare open.
struct OpenMeta {
    nonce: [u8; 12],
    aad: [u8; 8],
    ct: core::ops::Range<usize>,
}

/// The buffers and templates of one size case for the ESP stages.
struct EspBench {
    cfg_in: SaConfig,
    out_sa: OutboundSa,
    in_sa: InboundSa,
    aead: Cipher,
    lens: Vec<usize>,
    inner: Vec<Vec<u8>>,
    /// ESP packets (outer IPv4 + ESP) of `inner[j]` with sequence number `j + 1`.
    esp: Vec<Vec<u8>>,
    open: Vec<OpenMeta>,
    bufs: Vec<VecBuf>,
    /// Each packet of a burst as classified, and what opening it gave, for finishing it.
    outers: Vec<Option<wire::EspOuter>>,
    opened: Vec<Result<Authentic, EspError>>,
    /// Sequence numbers (nonces) of the bare seal.
    aead_seq: u64,
    errors: u64,
}

impl EspBench {
    fn new(case: &SizeCase, t: Tunnel) -> Self {
        let cfg_out = sa_config(t, true);
        let cfg_in = sa_config(t, false);
        let inner: Vec<Vec<u8>> = case.lens.iter().enumerate().map(|(j, &l)| ipv4_udp(HOST_A, HOST_B, l, j)).collect();
        // ESP templates with sequence numbers 1..=ROUND from an SA of their own.
        let maker = OutboundSa::new(&cfg_out, Arc::new(SeqCounter::default())).expect("valid SA");
        let mut esp = Vec::with_capacity(ROUND);
        let mut open = Vec::with_capacity(ROUND);
        for (j, p) in inner.iter().enumerate() {
            let mut b = VecBuf::new(p, HEADROOM, TAILROOM);
            maker.encapsulate(j as u64 + 1, &mut b).expect("encapsulate a template");
            let d = b.data();
            let Ok(Classified::Esp(o)) = wire::classify(d) else { panic!("template is not ESP") };
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&SALT);
            nonce[4..].copy_from_slice(&d[o.esp_offset() + 8..o.esp_offset() + 16]);
            let mut aad = [0u8; 8];
            aad.copy_from_slice(&d[o.esp_offset()..o.esp_offset() + 8]);
            let ct = o.esp_offset() + ESP_PREFIX_LEN..o.esp_offset() + o.esp_len() - ICV_LEN;
            open.push(OpenMeta { nonce, aad, ct });
            esp.push(d.to_vec());
        }
        let cap = esp.iter().map(Vec::len).max().unwrap_or(0);
        let bufs = (0..BURST).map(|_| VecBuf::new(&vec![0u8; cap], HEADROOM, TAILROOM)).collect();
        let mut b = EspBench {
            out_sa: OutboundSa::new(&cfg_out, Arc::new(SeqCounter::default())).expect("valid SA"),
            in_sa: InboundSa::new(&cfg_in).expect("valid SA"),
            cfg_in,
            aead: Cipher::new(t.backend, &key_material(t.aes)),
            lens: case.lens.clone(),
            inner,
            esp,
            open,
            bufs,
            outers: Vec::with_capacity(BURST),
            opened: Vec::with_capacity(BURST),
            aead_seq: 0,
            errors: 0,
        };
        b.verify();
        b
    }

    /// Outside any timing: the templates decapsulate to the inner packets, a timed-style encap
    /// round decapsulates again, and the bare open accepts every template.
    fn verify(&mut self) {
        let sa = InboundSa::new(&self.cfg_in).expect("valid SA");
        for (j, e) in self.esp.iter().enumerate() {
            let mut b = VecBuf::new(e, HEADROOM, TAILROOM);
            let Ok(Classified::Esp(o)) = wire::classify(b.data()) else { panic!("not ESP") };
            sa.decapsulate(&o, &mut b).expect("template decapsulates");
            assert_eq!(b.data(), &self.inner[j][..], "template {j} round trip");
        }
        let sa = InboundSa::new(&self.cfg_in).expect("valid SA");
        for (j, p) in self.inner.iter().enumerate().take(BURST) {
            let mut b = VecBuf::new(p, HEADROOM, TAILROOM);
            let seq = self.out_sa.seq_counter().reserve(1);
            self.out_sa.encapsulate(seq, &mut b).expect("encapsulate");
            let Ok(Classified::Esp(o)) = wire::classify(b.data()) else { panic!("not ESP") };
            sa.decapsulate(&o, &mut b).expect("decapsulate");
            assert_eq!(b.data(), &self.inner[j][..]);
        }
        for (e, m) in self.esp.iter().zip(&self.open) {
            let mut d = e.clone();
            self.aead.open_appended(&m.nonce, &m.aad, &mut d[m.ct.start..m.ct.end + ICV_LEN]).expect("bare open");
        }
    }

    /// Restores every buffer of burst `b` from its template (the ESP packet or the inner one)
    /// before any of them is processed, as a receive burst arrives whole. Restoring each just
    /// before processing it made the first read of the packet wait for the copy's stores to
    /// complete, at 1420 bytes about 39 ns, charged to the ESP stage (whose `classify` reads
    /// first) but mostly hidden in the bare cipher's start-up.
    fn restore_burst(&mut self, b: usize, esp: bool) {
        let templates = if esp { &self.esp } else { &self.inner };
        for (buf, t) in self.bufs.iter_mut().zip(&templates[b * BURST..]) {
            buf.reset(t, HEADROOM);
        }
    }

    /// One round of `BURSTS_PER_ROUND` bursts; returns the time of the timed part only.
    fn round(&mut self, kind: Kind) -> Duration {
        // Decapsulation needs a fresh anti-replay window every round (the templates carry
        // sequence numbers 1..=ROUND): a new one, untimed, before every decap round of every
        // decap kind, with the SA's key schedule kept (as a running gateway's stays warm).
        if matches!(kind, Kind::DecapStage | Kind::DecapAead | Kind::DecapReset) {
            self.in_sa = self.in_sa.with_new_window().expect("valid SA");
        }
        let t0 = Instant::now();
        match kind {
            Kind::EncapStage => {
                for b in 0..BURSTS_PER_ROUND {
                    // One reservation per burst, as the pipeline does per run of packets.
                    let first = self.out_sa.seq_counter().reserve(BURST as u64);
                    self.restore_burst(b, false);
                    for (i, buf) in self.bufs.iter_mut().enumerate() {
                        if self.out_sa.encapsulate(first + i as u64, buf).is_err() {
                            self.errors += 1;
                        }
                    }
                    black_box(&mut self.bufs);
                }
            }
            Kind::EncapAead => {
                for b in 0..BURSTS_PER_ROUND {
                    self.restore_burst(b, false);
                    for (i, buf) in self.bufs.iter_mut().enumerate() {
                        let j = b * BURST + i;
                        let n = self.lens[j];
                        // What ESP encrypts: payload, padding, pad length, next header.
                        let pt = n + codec::pad_len(n) + 2;
                        let Some(d) = buf.append(pt - n + ICV_LEN) else {
                            self.errors += 1;
                            continue;
                        };
                        self.aead_seq += 1;
                        let nonce = codec::nonce(&SALT, &self.aead_seq.to_be_bytes());
                        let mut aad = [0u8; 8];
                        aad[..4].copy_from_slice(&SPI.to_be_bytes());
                        aad[4..].copy_from_slice(&(self.aead_seq as u32).to_be_bytes());
                        let tag = self.aead.seal(&nonce, &aad, &mut d[..pt]);
                        d[pt..pt + ICV_LEN].copy_from_slice(&tag);
                    }
                    black_box(&mut self.bufs);
                }
            }
            Kind::EncapReset => {
                for b in 0..BURSTS_PER_ROUND {
                    self.restore_burst(b, false);
                    black_box(&mut self.bufs);
                }
            }
            Kind::DecapStage => {
                // As the pipeline decapsulates a burst: every packet opened, then their numbers
                // recorded in the window at once, then each finished (see `InboundSa::open`
                // and `InboundSa::commit_run`).
                for b in 0..BURSTS_PER_ROUND {
                    self.opened.clear();
                    self.outers.clear();
                    self.restore_burst(b, true);
                    for buf in self.bufs.iter_mut() {
                        let (outer, opened) = match wire::classify(buf.data()) {
                            Ok(Classified::Esp(o)) => (Some(o), self.in_sa.open(&o, buf)),
                            _ => (None, Err(EspError::Truncated)),
                        };
                        self.outers.push(outer);
                        self.opened.push(opened);
                    }
                    self.in_sa.commit_run(&mut self.opened);
                    for ((buf, outer), opened) in self.bufs.iter_mut().zip(&self.outers).zip(self.opened.drain(..)) {
                        let ok = match (outer, opened) {
                            (Some(o), Ok(a)) => self.in_sa.finish(o, buf, a).is_ok(),
                            _ => false,
                        };
                        self.errors += u64::from(!ok);
                    }
                    black_box(&mut self.bufs);
                }
            }
            Kind::DecapAead => {
                for b in 0..BURSTS_PER_ROUND {
                    self.restore_burst(b, true);
                    for (i, buf) in self.bufs.iter_mut().enumerate() {
                        let m = &self.open[b * BURST + i];
                        let d = buf.data_mut();
                        // As ESP decapsulation opens it: in place, the ICV right after.
                        let ok =
                            self.aead.open_appended(&m.nonce, &m.aad, &mut d[m.ct.start..m.ct.end + ICV_LEN]).is_ok();
                        self.errors += u64::from(!ok);
                    }
                    black_box(&mut self.bufs);
                }
            }
            Kind::DecapReset => {
                for b in 0..BURSTS_PER_ROUND {
                    self.restore_burst(b, true);
                    black_box(&mut self.bufs);
                }
            }
            _ => unreachable!("not an ESP-stage kind"),
        }
        t0.elapsed()
    }
}

const A_PROT: Mac = Mac([2, 0xa, 0, 0, 0, 1]);
const A_UNPROT: Mac = Mac([2, 0xa, 0, 0, 0, 2]);
const B_PROT: Mac = Mac([2, 0xb, 0, 0, 0, 1]);
const B_UNPROT: Mac = Mac([2, 0xb, 0, 0, 0, 2]);
const HOST1: Mac = Mac([2, 0x11, 0, 0, 0, 1]);
const HOST2: Mac = Mac([2, 0x22, 0, 0, 0, 2]);

/// Gateway A (10.1.0.0/24 behind it, 192.0.2.1) or B (10.2.0.0/24, 192.0.2.2), one SA each
/// way, plain ESP over IPv4. The unprotected port's MTU is raised so that 1500-byte inner
/// packets fit after encapsulation.
fn gw_config(a: bool, algorithm: &str, backend: &str) -> String {
    let (key_ab, key_ba) = ("00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100");
    let (key_ab, key_ba) = if algorithm.starts_with("aes256") {
        (format!("{key_ab}{key_ab}"), format!("{key_ba}{key_ba}"))
    } else {
        (key_ab.to_string(), key_ba.to_string())
    };
    let (prot, local_net, remote_net, local, remote) = if a {
        ("10.1.0.1/24", "10.1.0.0/24", "10.2.0.0/24", GW_A, GW_B)
    } else {
        ("10.2.0.1/24", "10.2.0.0/24", "10.1.0.0/24", GW_B, GW_A)
    };
    let (spi_out, spi_in, key_out, key_in) =
        if a { ("1001", "2001", key_ab, key_ba) } else { ("2001", "1001", key_ba, key_ab) };
    format!(
        r#"
[dataplane]
crypto = "{backend}"
[[port]]
name = "p0"
role = "protected"
addresses = ["{prot}"]
[[port]]
name = "p1"
role = "unprotected"
addresses = ["{local}/24"]
mtu = 9000
[[sa]]
name = "out"
spi = 0x{spi_out}
direction = "out"
algorithm = "{algorithm}"
key = "{key_out}"
salt = "0a0b0c0d"
local = "{local}"
remote = "{remote}"
[[sa]]
name = "in"
spi = 0x{spi_in}
direction = "in"
algorithm = "{algorithm}"
key = "{key_in}"
salt = "0a0b0c0d"
local = "{local}"
remote = "{remote}"
replay_window = 1024
[[policy]]
name = "nets"
src = "{local_net}"
dst = "{remote_net}"
action = "protect"
sa_out = "out"
sa_in = "in"
"#
    )
}

/// A worker pipeline as the gateway builds it (see dataplane/tests/pipeline.rs), with the
/// neighbours already resolved.
fn build_pipeline(cfg: &Config, a: bool) -> Pipeline {
    let macs = if a { [A_PROT, A_UNPROT] } else { [B_PROT, B_UNPROT] };
    let mut p =
        dataplane::gateway::build_pipelines(cfg, &macs, &[1], 1_000_000).expect("valid configuration").0.remove(0);
    let (host, host_mac, peer, peer_mac) =
        if a { (HOST_A, HOST1, GW_B, B_UNPROT) } else { (HOST_B, HOST2, GW_A, A_UNPROT) };
    p.set_neighbor(Neighbor { port: 0, ip: IpAddr::V4(host), mac: host_mac });
    p.set_neighbor(Neighbor { port: 1, ip: IpAddr::V4(peer), mac: peer_mac });
    p
}

fn eth_frame(dst: Mac, src: Mac, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; net::ETH_HDR_LEN];
    net::write_eth(&mut f, dst, src, net::ETHERTYPE_IPV4);
    f.extend_from_slice(ip);
    f
}

/// Gives both gateways `n` SA pairs instead of their one: pair `k` protects the traffic
/// between A's network and host 10.16.0.0 + `k` (a /32 policy of its own, as a hub has one per
/// branch), SPIs 0x10000 + `k` from A to B and 0x200000 + `k` back. B routes those hosts to its
/// protected port. B's inbound SAs have no replay window, as in `gwbench`: every timed round
/// replays the same frames, and rebuilding 100,000 windows per round would dwarf the round.
fn many_sas(cfg: &mut Config, a: bool, n: usize) {
    let (out, inb, pol) = (cfg.sas[0].clone(), cfg.sas[1].clone(), cfg.policies[0].clone());
    cfg.sas.clear();
    cfg.policies.clear();
    cfg.max_sas = 2 * n;
    for k in 0..n {
        let host = Prefix { addr: IpAddr::V4(many_host(k)), len: 32 };
        let (spi_ab, spi_ba) = (0x10000 + k as u32, 0x200000 + k as u32);
        let (mut o, mut i, mut p) = (out.clone(), inb.clone(), pol.clone());
        o.name = format!("out{k}");
        i.name = format!("in{k}");
        (o.sa.spi, i.sa.spi) = if a { (spi_ab, spi_ba) } else { (spi_ba, spi_ab) };
        if !a {
            i.sa.replay_window = 0;
        }
        p.name = format!("pol{k}");
        if a {
            p.selector.dst = host;
        } else {
            p.selector.src = host;
        }
        p.action = PolicyAction::Protect { sa_out: o.name.clone(), sa_in: Some(i.name.clone()) };
        cfg.sas.extend([o, i]);
        cfg.policies.push(p);
    }
    if !a {
        let prefix = Prefix { addr: IpAddr::V4(many_host(0)), len: 12 };
        cfg.routes.push(RouteConf { prefix, via: Some(IpAddr::V4(HOST_B)), port: 0 });
    }
}

/// The protected host behind SA pair `k` of [`many_sas`].
fn many_host(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 16, 0, 0)) + k as u32)
}

/// Two gateways back to back on plain buffers: A encrypts frames from its protected host,
/// B decrypts A's ESP frames.
struct PipeBench {
    cfg_b: Config,
    a: Pipeline,
    b: Pipeline,
    /// SA pairs (1: the configuration's own, rebuilt before each inbound round).
    sas: usize,
    /// Frames from host 1 to A's protected port, a whole number of bursts.
    clear: Vec<Vec<u8>>,
    /// A's ESP frames of `clear`, numbered in order per SA.
    esp: Vec<Vec<u8>>,
    bufs: Vec<VecBuf>,
    verdicts: [Verdict; BURST],
    /// Inner bytes of one round.
    round_bytes: u64,
    errors: u64,
}

impl PipeBench {
    fn new(case: &SizeCase, aes: GcmKeyLen, backend: Backend, sas: usize, frames: usize) -> Self {
        let algorithm = if aes == GcmKeyLen::Aes128 { "aes128gcm16" } else { "aes256gcm16" };
        let mut cfg_a = Config::parse(&gw_config(true, algorithm, backend.name())).expect("config A");
        let mut cfg_b = Config::parse(&gw_config(false, algorithm, backend.name())).expect("config B");
        if sas > 1 {
            many_sas(&mut cfg_a, true, sas);
            many_sas(&mut cfg_b, false, sas);
        }
        let frames = frames.max(sas).max(1).div_ceil(BURST) * BURST;
        let lens: Vec<usize> = (0..frames).map(|j| case.lens[j % case.lens.len()]).collect();
        let clear: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(j, &l)| {
                let dst = if sas > 1 { many_host(j % sas) } else { HOST_B };
                eth_frame(A_PROT, HOST1, &ipv4_udp(HOST_A, dst, l, j))
            })
            .collect();
        // The ESP frames come out of a gateway A of their own, numbered from 1 in order.
        let mut maker = build_pipeline(&cfg_a, true);
        let mut esp = Vec::with_capacity(frames);
        let mut verdicts = [Verdict::Drop(DropReason::NoRoute); BURST];
        for chunk in clear.chunks(BURST) {
            let mut bufs: Vec<VecBuf> = chunk.iter().map(|f| VecBuf::new(f, HEADROOM, TAILROOM)).collect();
            maker.process_burst(Ingress::Port(0), &mut bufs, &mut verdicts, 1);
            for (v, b) in verdicts.iter().zip(&bufs) {
                assert_eq!(*v, Verdict::Port(1), "gateway A must encrypt and send out of port 1");
                esp.push(b.data().to_vec());
            }
        }
        let cap = esp.iter().chain(&clear).map(Vec::len).max().unwrap_or(0);
        let mut p = PipeBench {
            a: build_pipeline(&cfg_a, true),
            b: build_pipeline(&cfg_b, false),
            cfg_b,
            sas,
            clear,
            esp,
            bufs: (0..BURST).map(|_| VecBuf::new(&vec![0u8; cap], HEADROOM, TAILROOM)).collect(),
            verdicts,
            round_bytes: lens.iter().sum::<usize>() as u64,
            errors: 0,
        };
        // Outside timing: one inbound round must deliver everything to host 2.
        p.round(Kind::PipeIn);
        assert_eq!(p.errors, 0, "gateway B must decrypt and forward every frame");
        p
    }

    fn round_packets(&self) -> u64 {
        self.clear.len() as u64
    }

    fn round(&mut self, kind: Kind) -> Duration {
        // Inbound needs a fresh anti-replay window per round: gateway B is rebuilt untimed
        // before every inbound round (of both inbound kinds, for the same cache disturbance).
        if self.sas == 1 && matches!(kind, Kind::PipeIn | Kind::PipeInReset) {
            self.b = build_pipeline(&self.cfg_b, false);
        }
        let (templates, want) = match kind {
            Kind::PipeOut | Kind::PipeOutReset => (&self.clear, Verdict::Port(1)),
            Kind::PipeIn | Kind::PipeInReset => (&self.esp, Verdict::Port(0)),
            _ => unreachable!("not a pipeline kind"),
        };
        let t0 = Instant::now();
        for burst in templates.chunks(BURST) {
            for (buf, t) in self.bufs.iter_mut().zip(burst) {
                buf.reset(t, HEADROOM);
            }
            match kind {
                Kind::PipeOut => self.a.process_burst(Ingress::Port(0), &mut self.bufs, &mut self.verdicts, 1),
                Kind::PipeIn => self.b.process_burst(Ingress::Port(1), &mut self.bufs, &mut self.verdicts, 1),
                _ => {}
            }
            if matches!(kind, Kind::PipeOut | Kind::PipeIn) {
                self.errors += self.verdicts.iter().filter(|v| **v != want).count() as u64;
            }
            black_box(&mut self.bufs);
        }
        t0.elapsed()
    }
}

/// One measurement: packets, inner bytes and timed nanoseconds.
#[derive(Clone, Copy, Debug, Serialize)]
struct Sample {
    packets: u64,
    bytes: u64,
    ns: f64,
}

impl Sample {
    fn mpps(&self) -> f64 {
        self.packets as f64 / self.ns * 1e3
    }
    fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.ns
    }
    fn ns_per_pkt(&self) -> f64 {
        self.ns / self.packets as f64
    }
}

/// Runs rounds until `seconds` of timed work are done (after a short untimed warm-up).
/// `round` returns its timed duration, packets and inner bytes.
fn measure(seconds: f64, mut round: impl FnMut() -> (Duration, u64, u64)) -> Sample {
    let target = Duration::from_secs_f64(seconds);
    let warm = Instant::now();
    while warm.elapsed() < target / 50 {
        round();
    }
    let (mut timed, mut packets, mut bytes) = (Duration::ZERO, 0u64, 0u64);
    let wall = Instant::now();
    // The wall-clock cap bounds the untimed SA/pipeline rebuilds too.
    while timed < target && wall.elapsed() < target * 5 {
        let (t, p, b) = round();
        (timed, packets, bytes) = (timed + t, packets + p, bytes + b);
    }
    Sample { packets, bytes, ns: timed.as_nanos() as f64 }
}

/// The runs of one kind, summarised.
#[derive(Clone, Debug, Serialize)]
struct Summary {
    kind: Kind,
    runs: Vec<Sample>,
    mpps: f64,
    mpps_min: f64,
    mpps_max: f64,
    gbps: f64,
    ns_per_pkt: f64,
    tsc_per_pkt: Option<f64>,
}

fn summarise(kind: Kind, runs: Vec<Sample>, tsc_per_ns: Option<f64>) -> Summary {
    let (mpps, mpps_min, mpps_max) = median_min_max(&runs.iter().map(Sample::mpps).collect::<Vec<_>>());
    let (gbps, _, _) = median_min_max(&runs.iter().map(Sample::gbps).collect::<Vec<_>>());
    let (ns_per_pkt, _, _) = median_min_max(&runs.iter().map(Sample::ns_per_pkt).collect::<Vec<_>>());
    Summary { kind, runs, mpps, mpps_min, mpps_max, gbps, ns_per_pkt, tsc_per_pkt: tsc_per_ns.map(|t| t * ns_per_pkt) }
}

#[derive(Clone, Debug, Serialize)]
struct Row {
    table: Table,
    size: String,
    mean_inner_len: f64,
    direction: &'static str,
    /// The stage (esp table) or process_burst (pipeline table).
    stage: Summary,
    /// Bare AEAD on the same lengths, measured interleaved with this row's stage.
    aead: Option<Summary>,
    /// Restoring the buffers alone.
    reset: Summary,
    /// stage (or pipeline) Mpps / AEAD Mpps.
    ratio: Option<f64>,
    /// The same with the reset time taken out of both: (AEAD ns - reset ns) / (stage ns - reset ns) (esp table).
    ratio_excl_reset: Option<f64>,
    /// Pipeline table with --sas N: one SA pair and as many frames, measured interleaved.
    one_sa: Option<Summary>,
    /// SA pairs of the pipeline table's gateways.
    sas: usize,
}

/// Measures `kinds` interleaved run by run (stage, AEAD, reset, stage, ...), so slow drift of a
/// shared machine spreads over all of them.
fn measure_kinds(
    args: &Args,
    kinds: &[Kind],
    tsc_per_ns: Option<f64>,
    mut round: impl FnMut(Kind) -> (Duration, u64, u64),
) -> Vec<Summary> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
    for _ in 0..args.runs {
        for (k, &kind) in kinds.iter().enumerate() {
            let reset = matches!(kind, Kind::EncapReset | Kind::DecapReset | Kind::PipeOutReset | Kind::PipeInReset);
            let secs = if reset { args.seconds_per_case / 4.0 } else { args.seconds_per_case };
            samples[k].push(measure(secs, || round(kind)));
        }
    }
    kinds.iter().zip(samples).map(|(&k, s)| summarise(k, s, tsc_per_ns)).collect()
}

impl Kind {
    fn is_pipeline(self) -> bool {
        matches!(self, Kind::PipeOut | Kind::PipeOutReset | Kind::PipeIn | Kind::PipeInReset)
    }

    /// The kind a one-SA baseline bench runs for this kind.
    fn one_sa(self) -> Option<Kind> {
        match self {
            Kind::PipeOutOneSa => Some(Kind::PipeOut),
            Kind::PipeInOneSa => Some(Kind::PipeIn),
            _ => None,
        }
    }
}

/// All rows of one size case. Per direction every kind that a requested table needs is measured
/// interleaved run by run, so that each ratio compares figures taken side by side in time (the
/// pipeline is compared with the bare AEAD of the same interleaving).
fn case_rows(args: &Args, case: &SizeCase, t: Tunnel, tsc_per_ns: Option<f64>) -> Vec<Row> {
    let esp_table = args.tables.contains(&Table::Esp);
    let pipe_table = args.tables.contains(&Table::Pipeline);
    let mut esp = EspBench::new(case, t);
    let frames = args.frames.unwrap_or(ROUND);
    let mut pipe = pipe_table.then(|| PipeBench::new(case, t.aes, t.backend, args.sas, frames));
    let mut one_sa =
        (pipe_table && args.sas > 1).then(|| PipeBench::new(case, t.aes, t.backend, 1, frames.max(args.sas)));
    let mut rows = Vec::new();
    for (d, dir, pipe_dir, [stage, aead, reset], [p_stage, p_reset, p_one]) in [
        (
            Dir::Out,
            "encap",
            "outbound",
            [Kind::EncapStage, Kind::EncapAead, Kind::EncapReset],
            [Kind::PipeOut, Kind::PipeOutReset, Kind::PipeOutOneSa],
        ),
        (
            Dir::In,
            "decap",
            "inbound",
            [Kind::DecapStage, Kind::DecapAead, Kind::DecapReset],
            [Kind::PipeIn, Kind::PipeInReset, Kind::PipeInOneSa],
        ),
    ] {
        if !args.dirs.contains(&d) {
            continue;
        }
        let mut kinds = if esp_table { vec![stage, aead, reset] } else { vec![aead] };
        if pipe_table {
            kinds.extend([p_stage, p_reset]);
        }
        if one_sa.is_some() {
            kinds.push(p_one);
        }
        let sums = measure_kinds(args, &kinds, tsc_per_ns, |k| {
            match (k.is_pipeline(), k.one_sa(), pipe.as_mut(), one_sa.as_mut()) {
                (true, _, Some(p), _) => (p.round(k), p.round_packets(), p.round_bytes),
                (_, Some(k1), _, Some(p)) => (p.round(k1), p.round_packets(), p.round_bytes),
                _ => (esp.round(k), ROUND as u64, case.round_bytes()),
            }
        });
        let get = |k: Kind| sums.iter().find(|s| s.kind == k).cloned();
        let aead = get(aead).expect("AEAD always measured");
        if esp_table {
            let (stage, reset) = (get(stage).expect("measured"), get(reset).expect("measured"));
            rows.push(Row {
                table: Table::Esp,
                size: case.name.clone(),
                mean_inner_len: case.mean_len(),
                direction: dir,
                ratio: Some(stage.mpps / aead.mpps),
                ratio_excl_reset: Some((aead.ns_per_pkt - reset.ns_per_pkt) / (stage.ns_per_pkt - reset.ns_per_pkt)),
                one_sa: None,
                sas: 1,
                stage,
                aead: Some(aead.clone()),
                reset,
            });
        }
        if pipe_table {
            let (stage, reset) = (get(p_stage).expect("measured"), get(p_reset).expect("measured"));
            rows.push(Row {
                table: Table::Pipeline,
                size: case.name.clone(),
                mean_inner_len: case.mean_len(),
                direction: pipe_dir,
                ratio: Some(stage.mpps / aead.mpps),
                ratio_excl_reset: None,
                one_sa: get(p_one),
                sas: args.sas,
                stage,
                aead: Some(aead),
                reset,
            });
        }
    }
    assert_eq!(esp.errors, 0, "{}: {} packets failed in the timed loops", case.name, esp.errors);
    for p in pipe.iter().chain(&one_sa) {
        assert_eq!(p.errors, 0, "{}: {} frames got the wrong verdict in the timed loops", case.name, p.errors);
    }
    rows
}

fn spread(s: &Summary) -> String {
    format!("{:.2} [{:.2}-{:.2}]", s.mpps, s.mpps_min, s.mpps_max)
}

fn tsc_col(s: &Summary) -> String {
    s.tsc_per_pkt.map(|t| format!("{t:.0}")).unwrap_or_else(|| "-".into())
}

fn print_esp(rows: &[Row]) {
    println!(
        "{:<6} {:<6} | {:>22} {:>7} {:>8} {:>7} | {:>22} {:>7} {:>8} {:>7} | {:>6} | {:>7} {:>7}",
        "size",
        "dir",
        "stage Mpps [min-max]",
        "Gbps",
        "ns/pkt",
        "tsc/pkt",
        "AEAD Mpps [min-max]",
        "Gbps",
        "ns/pkt",
        "tsc/pkt",
        "ratio",
        "reset",
        "ratio-r"
    );
    for r in rows.iter().filter(|r| r.table == Table::Esp) {
        let a = r.aead.as_ref().expect("esp rows have an AEAD column");
        println!(
            "{:<6} {:<6} | {:>22} {:>7.2} {:>8.1} {:>7} | {:>22} {:>7.2} {:>8.1} {:>7} | {:>6.3} | {:>7.1} {:>7.3}",
            r.size,
            r.direction,
            spread(&r.stage),
            r.stage.gbps,
            r.stage.ns_per_pkt,
            tsc_col(&r.stage),
            spread(a),
            a.gbps,
            a.ns_per_pkt,
            tsc_col(a),
            r.ratio.unwrap_or(f64::NAN),
            r.reset.ns_per_pkt,
            r.ratio_excl_reset.unwrap_or(f64::NAN),
        );
    }
}

fn print_pipeline(rows: &[Row]) {
    println!(
        "{:<6} {:<9} | {:>23} {:>7} {:>8} {:>7} | {:>7} | {:>22} {:>8} | {:>7}",
        "size",
        "dir",
        "pipeline Mpps [min-max]",
        "Gbps",
        "ns/pkt",
        "tsc/pkt",
        "reset",
        "AEAD Mpps [min-max]",
        "ns/pkt",
        "ratio"
    );
    for r in rows.iter().filter(|r| r.table == Table::Pipeline) {
        let a = r.aead.as_ref().expect("pipeline rows have an AEAD column");
        println!(
            "{:<6} {:<9} | {:>23} {:>7.2} {:>8.1} {:>7} | {:>7.1} | {:>22} {:>8.1} | {:>7.3}",
            r.size,
            r.direction,
            spread(&r.stage),
            r.stage.gbps,
            r.stage.ns_per_pkt,
            tsc_col(&r.stage),
            r.reset.ns_per_pkt,
            spread(a),
            a.ns_per_pkt,
            r.ratio.unwrap_or(f64::NAN),
        );
        if let Some(one) = &r.one_sa {
            // Per run: runs of the two were taken side by side.
            let ratios: Vec<f64> = r.stage.runs.iter().zip(&one.runs).map(|(m, o)| m.mpps() / o.mpps()).collect();
            let (med, lo, hi) = median_min_max(&ratios);
            println!(
                "{:<6} {:<9} | one SA pair, same frames: {} Mpps; {} pairs / one: {:.2} [{:.2}-{:.2}]",
                "",
                "",
                spread(one),
                r.sas,
                med,
                lo,
                hi
            );
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    cpu: String,
    target_features: Vec<&'static str>,
    runtime_features: Vec<&'static str>,
    aes_bits: u16,
    outer: Outer,
    udp_encap: bool,
    burst: usize,
    bursts_per_round: usize,
    headroom: usize,
    tailroom: usize,
    seconds_per_case: f64,
    runs: usize,
    tsc_per_ns: Option<f64>,
    rows: &'a [Row],
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// CPU features the build was compiled for (target-cpu) and those found at run time; aes-gcm
/// picks AES-NI/VAES and CLMUL at run time either way.
fn features() -> (Vec<&'static str>, Vec<&'static str>) {
    let mut built = Vec::new();
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! feat {
            ($($f:tt),*) => {$(
                if cfg!(target_feature = $f) { built.push($f); }
                if std::arch::is_x86_feature_detected!($f) { found.push($f); }
            )*};
        }
        feat!("aes", "pclmulqdq", "avx2", "avx512f", "vaes", "vpclmulqdq");
    }
    (built, found)
}

fn main() {
    let args = Args::parse();
    // The gateway's tables on huge pages, as `dataplane run` has them.
    dataplane::heap::reexec_with_huge_pages();
    let aes = match args.aes {
        128 => GcmKeyLen::Aes128,
        256 => GcmKeyLen::Aes256,
        n => {
            eprintln!("esp-stages: --aes must be 128 or 256, not {n}");
            std::process::exit(2);
        }
    };
    if args.runs == 0 || !args.seconds_per_case.is_finite() || args.seconds_per_case <= 0.0 {
        eprintln!("esp-stages: --runs must be at least 1 and --seconds-per-case positive");
        std::process::exit(2);
    }
    let cases: Vec<SizeCase> = match args.sizes.iter().map(|s| SizeCase::parse(s)).collect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("esp-stages: {e}");
            std::process::exit(2);
        }
    };
    if let Some(c) = args.core
        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
    {
        eprintln!("esp-stages: could not pin to CPU {c}");
    }
    let tsc_per_ns = perf::tsc_per_ns(50);
    let (built, found) = features();
    println!("esp-stages: {}", cpu_model());
    println!(
        "  compiled for: [{}]  found at run time: [{}]  TSC {}",
        built.join(" "),
        found.join(" "),
        tsc_per_ns.map(|t| format!("{t:.3} GHz")).unwrap_or_else(|| "n/a".into())
    );
    println!(
        "  AES-{}-GCM, ESP tunnel mode, inner IPv4/UDP; bursts of {BURST} VecBufs (headroom {HEADROOM}, tailroom {TAILROOM}), \
         {BURSTS_PER_ROUND} bursts per timed round; median of {} runs x {} s [min-max]",
        args.aes, args.runs, args.seconds_per_case
    );
    println!(
        "  Gbps = inner IP bytes x 8; every column includes restoring each buffer from its template (\"reset\" = that copy alone, ns/pkt);"
    );
    println!("  ratio = stage Mpps / AEAD Mpps; ratio-r = the same with the reset time taken out of both.");
    if args.tables.contains(&Table::Pipeline) && (args.outer != Outer::V4 || args.udp_encap) {
        eprintln!(
            "esp-stages: --outer v6 and --udp-encap apply to the esp table only; the pipeline table stays IPv4 plain ESP"
        );
    }
    let backend = match dataplane::crypto::choose(&args.backend) {
        Ok((b, _)) => b,
        Err(e) => {
            eprintln!("esp-stages: {e}");
            std::process::exit(2);
        }
    };
    println!("  AES-GCM backend: {}", backend.name());
    let tunnel = Tunnel { aes, backend, outer: args.outer, udp_encap: args.udp_encap };
    let rows: Vec<Row> = cases.iter().flat_map(|case| case_rows(&args, case, tunnel, tsc_per_ns)).collect();
    if args.tables.contains(&Table::Esp) {
        println!(
            "\nESP stages (encap = OutboundSa::encapsulate; decap = wire::classify + InboundSa::open, ::commit_run and ::finish, a burst at a time) vs bare AES-GCM seal/open; outer {}{}",
            if args.outer == Outer::V4 { "IPv4" } else { "IPv6" },
            if args.udp_encap { " + UDP 4500" } else { ", plain ESP" }
        );
        print_esp(&rows);
    }
    if args.tables.contains(&Table::Pipeline) {
        println!(
            "\nPipeline::process_burst on Ethernet frames, outer IPv4 plain ESP (outbound: A's protected port -> ESP out; \
             inbound: B's unprotected port -> clear out); AEAD = bare seal (outbound) / open (inbound) of the ESP tunnel above, \
             measured interleaved with it; ratio = pipeline Mpps / AEAD Mpps"
        );
        print_pipeline(&rows);
    }
    if let Some(path) = &args.json {
        let report = Report {
            cpu: cpu_model(),
            target_features: built,
            runtime_features: found,
            aes_bits: args.aes,
            outer: args.outer,
            udp_encap: args.udp_encap,
            burst: BURST,
            bursts_per_round: BURSTS_PER_ROUND,
            headroom: HEADROOM,
            tailroom: TAILROOM,
            seconds_per_case: args.seconds_per_case,
            runs: args.runs,
            tsc_per_ns,
            rows: &rows,
        };
        let text = serde_json::to_string_pretty(&report).expect("serialisable report");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("esp-stages: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
