//! trafgen: a traffic generator for real ports (and DPDK's virtual devices).
//!
//! It sends UDP flows of a fixed size or IMIX at a set rate from one DPDK port, in the clear or
//! as ESP the way a peer gateway would (RFC 4303 tunnel mode, AES-GCM of RFC 4106), receives
//! on another port (in the clear, or ESP that it decrypts), and measures loss and one-way
//! latency from a stamp in each packet. With `--search` it finds the highest rate without loss
//! by binary search (RFC 2544 section 26.1, throughput) and reports the latency at that rate
//! (26.2).
//!
//! Each packet's UDP payload starts with a 16-byte stamp: a magic number, the trial number
//! (packets of an earlier trial that arrive late are not counted), a sequence number and the
//! TSC when it was sent. Sending and receiving run on one lcore, so the stamp's TSC and the
//! receiving TSC come from the same clock.
//!
//! Example, through a gateway between two NIC ports:
//! `trafgen --tx-port 0000:01:00.0 --rx-port 0000:01:00.1 --dst-mac 02:00:00:00:00:01 --size imix
//!  --rx-esp spi=0x1000,key=<hex>,salt=<hex> --search --max-mpps 10 -- -l 2 -a 0000:01:00.0 -a 0000:01:00.1`

use clap::Parser;
use dataplane::config::parse_hex;
use dataplane::dpdk::{self, Eal, Mbuf, Mempool, Port};
use dataplane::net::Mac;
use esp::aead::{Backend, GcmKeyLen, KeyMaterial};
use esp::buf::PacketBuf;
use esp::sa::{InboundSa, OutboundSa, SaConfig, SeqCounter};
use hdrhistogram::Histogram;
use perf::IMIX;
use perf::stamp::{ETH_LEN, STAMP_LEN, Stamp, Tally, stamp_of, stamp_offset};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "trafgen",
    about = "Traffic generator: fixed-size or IMIX flows at a set rate, clear or ESP; loss, latency, RFC 2544 throughput",
    after_help = "EAL arguments follow `--` (for example: -- -l 0 --no-huge -m 512 --vdev=net_ring0)."
)]
struct Args {
    /// DPDK port to send on (its name: a PCI address or a vdev name).
    #[arg(long)]
    tx_port: String,
    /// DPDK port to receive on (may be the same port).
    #[arg(long)]
    rx_port: String,
    /// Inner IP packet size in bytes (64 to 1500), or imix (7:4:1 of 64/576/1500).
    #[arg(long, default_value = "64")]
    size: String,
    /// Flows (UDP source ports) the packets rotate over.
    #[arg(long, default_value_t = 16)]
    flows: u16,
    /// Inner source and destination addresses (both IPv4 or both IPv6).
    #[arg(long, default_value = "10.1.0.10")]
    src: IpAddr,
    #[arg(long, default_value = "10.2.0.10")]
    dst: IpAddr,
    /// Destination MAC of the frames sent (the device under test's port).
    #[arg(long, default_value = "ff:ff:ff:ff:ff:ff")]
    dst_mac: String,
    /// Send ESP instead of clear packets: spi=N,key=HEX,salt=HEX,local=IP,remote=IP (local is
    /// this generator's tunnel address, remote the device's). AES-GCM, key length from the key.
    #[arg(long)]
    tx_esp: Option<String>,
    /// Decrypt received ESP: spi=N,key=HEX,salt=HEX (the device's outbound SA).
    #[arg(long)]
    rx_esp: Option<String>,
    /// Offered rate of one trial, in million packets per second.
    #[arg(long, default_value_t = 0.1)]
    rate_mpps: f64,
    /// Search for the highest rate without loss between 0 and --max-mpps.
    #[arg(long)]
    search: bool,
    /// Upper bound of the search (Mpps); default: 10 Gbit/s line rate for the frame size.
    #[arg(long)]
    max_mpps: Option<f64>,
    /// Stop the search when the bounds are this close, as a fraction of --max-mpps.
    #[arg(long, default_value_t = 0.01)]
    resolution: f64,
    /// Seconds each trial sends (RFC 2544 asks for 60; shorter trials are fine for a look).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seconds to keep receiving after a trial stops sending.
    #[arg(long, default_value_t = 0.2)]
    drain: f64,
    /// Loss a trial may have and still pass, as a fraction of the packets sent.
    #[arg(long, default_value_t = 0.0)]
    loss_tolerance: f64,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seconds to wait for both links to come up.
    #[arg(long, default_value_t = 30.0)]
    link_timeout: f64,
    /// EAL arguments.
    #[arg(last = true)]
    eal: Vec<String>,
}

/// The start of the error when the links stay down (gwbench retries on it).
const LINKS_DOWN: &str = "the links did not come up";
const BURST: usize = 32;

/// An inner UDP packet of `total` bytes with room for the stamp.
fn inner_packet(src: IpAddr, dst: IpAddr, total: usize, sport: u16) -> Result<Vec<u8>, String> {
    let mut p = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            if total < 28 + STAMP_LEN {
                return Err(format!("{total} bytes: IPv4 packets need at least {}", 28 + STAMP_LEN));
            }
            perf::ipv4_udp(s, d, total, usize::from(sport))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if total < 48 + STAMP_LEN {
                return Err(format!("{total} bytes: IPv6 packets need at least {}", 48 + STAMP_LEN));
            }
            perf::ipv6_udp(s, d, total, sport, 9)
        }
        _ => return Err("--src and --dst must be of one family".into()),
    };
    let off = stamp_offset(&p).ok_or("not UDP")?;
    p[off - 8..off - 6].copy_from_slice(&sport.to_be_bytes());
    p[off - 6..off - 4].copy_from_slice(&9u16.to_be_bytes()); // discard
    // UDP checksum: 0 over IPv4 (allowed, RFC 768); over IPv6 the template's, which the stamp
    // written into each packet makes stale. Only the final receiver checks it (RFC 8200 8.1),
    // and that is this generator, which does not: gateways in between forward it as it is.
    Ok(p)
}

/// `spi=..,key=..,salt=..[,local=..,remote=..]` as an SA configuration (anti-replay off: the
/// generator counts duplicates itself).
fn sa_spec(spec: &str, default_local: IpAddr, default_remote: IpAddr) -> Result<SaConfig, String> {
    let (mut spi, mut key, mut salt, mut local, mut remote) = (None, None, None, default_local, default_remote);
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected name=value"))?;
        match k.trim() {
            "spi" => {
                let v = v.trim();
                spi = Some(
                    match v.strip_prefix("0x") {
                        Some(h) => u32::from_str_radix(h, 16),
                        None => v.parse(),
                    }
                    .map_err(|_| format!("bad SPI {v:?}"))?,
                )
            }
            "key" => key = Some(parse_hex(v).ok_or("key= is not hex")?),
            "salt" => salt = Some(parse_hex(v).ok_or("salt= is not hex")?),
            "local" => local = v.trim().parse().map_err(|_| format!("bad address {v:?}"))?,
            "remote" => remote = v.trim().parse().map_err(|_| format!("bad address {v:?}"))?,
            other => return Err(format!("unknown SA field {other:?}")),
        }
    }
    let key = key.ok_or("key= missing")?;
    let len = match key.len() {
        16 => GcmKeyLen::Aes128,
        32 => GcmKeyLen::Aes256,
        n => return Err(format!("an AES-GCM key has 16 or 32 bytes, not {n}")),
    };
    let salt: [u8; 4] = salt.ok_or("salt= missing")?.try_into().map_err(|_| "the salt has 4 bytes")?;
    let key = KeyMaterial::new(len, &key, &salt).map_err(|e| e.to_string())?;
    let backend = dataplane::crypto::choose("auto").map(|(b, _)| b).unwrap_or(Backend::RustCrypto);
    Ok(SaConfig {
        spi: spi.ok_or("spi= missing")?,
        key,
        local,
        remote,
        encap: None,
        esn: false,
        replay_window: 0,
        backend,
    })
}

/// What one trial measured.
#[derive(Clone, Debug, Serialize)]
struct Trial {
    offered_mpps: f64,
    /// What the generator managed to hand to the port (short of `offered_mpps` when the port
    /// or this core cannot keep up: the trial then says nothing about the device).
    sent_mpps: f64,
    sent: u64,
    /// Packets the port would not take (its queue full): not offered.
    refused: u64,
    received: u64,
    lost: u64,
    loss: f64,
    /// Received more than once.
    duplicates: u64,
    /// Received but not of this trial (no stamp, failed decryption, other traffic, late
    /// packets of an earlier trial).
    foreign: u64,
    latency_us: Option<Latency>,
    /// Less than the offered rate went out.
    short: bool,
    pass: bool,
}

#[derive(Clone, Debug, Serialize)]
struct Latency {
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

struct Gen {
    tx: u16,
    rx: u16,
    pool: Mempool,
    /// Frames (clear mode) or inner packets (ESP mode) to send, in rotation.
    templates: Vec<Vec<u8>>,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    tx_sa: Option<OutboundSa>,
    rx_sa: Option<InboundSa>,
    hz: u64,
    trial: u16,
    /// What came back in the current trial.
    tally: Tally,
    /// The last ESP sequence number sent: it runs on across trials, or the device's
    /// anti-replay window would drop every trial after the first.
    esp_seq: u64,
}

impl Gen {
    /// One packet to send, stamped; `None` when the pool is empty.
    fn build(&mut self, seq: u32, now: u64) -> Option<Mbuf> {
        let t = &self.templates[seq as usize % self.templates.len()];
        let stamp = Stamp { trial: self.trial, seq, tsc: now };
        let mut m = Mbuf::from_slice(&self.pool, t)?;
        match &self.tx_sa {
            None => {
                let off = ETH_LEN + stamp_offset(&t[ETH_LEN..])?;
                stamp.write(&mut m.data_mut()[off..]);
            }
            Some(sa) => {
                let off = stamp_offset(t)?;
                stamp.write(&mut m.data_mut()[off..]);
                sa.encapsulate(self.esp_seq + 1, &mut m).ok()?;
                self.esp_seq += 1;
                let et: u16 = if sa.remote.is_ipv4() { 0x0800 } else { 0x86dd };
                let f = m.prepend(ETH_LEN)?;
                f[0..6].copy_from_slice(&self.dst_mac);
                f[6..12].copy_from_slice(&self.src_mac);
                f[12..14].copy_from_slice(&et.to_be_bytes());
            }
        }
        Some(m)
    }

    /// Sends at `mpps` for `duration` seconds, receives until `drain` seconds after, and
    /// counts.
    fn run(&mut self, mpps: f64, duration: f64, drain: f64) -> Trial {
        self.trial = self.trial.wrapping_add(1);
        let rate = mpps * 1e6;
        let total = (rate * duration).round() as u64;
        let total = total.min(u64::from(u32::MAX));
        self.tally.reset(self.trial, total);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        // `next`: sequence numbers offered so far; `sent`: those the port took.
        let (mut next, mut sent, mut refused) = (0u64, 0u64, 0u64);
        let mut out: Vec<Mbuf> = Vec::with_capacity(BURST);
        let mut inb: Vec<Mbuf> = Vec::with_capacity(BURST);
        let hz = self.hz as f64;
        let start = dpdk::tsc();
        let send_end = start + (duration * hz) as u64;
        let end = send_end + (drain * hz) as u64;
        loop {
            let now = dpdk::tsc();
            if now >= end {
                break;
            }
            // Packets due by now at the offered rate, a burst at a time; what a slow generator
            // has not sent when the time is up is never offered.
            let due = if now < send_end { (((now - start) as f64 / hz * rate).ceil() as u64).min(total) } else { next };
            while next < due && out.len() < BURST {
                let Some(m) = self.build(next as u32, now) else { break };
                out.push(m);
                next += 1;
            }
            if !out.is_empty() {
                let n = out.len() as u64;
                let taken = dpdk::tx_burst(self.tx, 0, &mut out) as u64;
                sent += taken;
                // Not offered again: a port that refuses packets shows as a rate not reached.
                refused += n - taken;
                out.clear();
            }
            dpdk::rx_burst(self.rx, 0, &mut inb);
            let now = dpdk::tsc();
            for mut m in inb.drain(..) {
                let stamp = if m.is_contiguous() { stamp_of(self.rx_sa.as_ref(), &mut m) } else { None };
                if let Some(tsc) = self.tally.count(stamp, next) {
                    let ns = (now.saturating_sub(tsc) as f64 / hz * 1e9) as u64;
                    let _ = hist.record(ns.max(1));
                }
            }
        }
        let Tally { received, duplicates, foreign, .. } = self.tally;
        let lost = sent - received.min(sent);
        let loss = if sent == 0 { 0.0 } else { lost as f64 / sent as f64 };
        let latency_us = (!hist.is_empty()).then(|| Latency {
            min: hist.min() as f64 / 1e3,
            p50: hist.value_at_quantile(0.5) as f64 / 1e3,
            p90: hist.value_at_quantile(0.9) as f64 / 1e3,
            p99: hist.value_at_quantile(0.99) as f64 / 1e3,
            p999: hist.value_at_quantile(0.999) as f64 / 1e3,
            max: hist.max() as f64 / 1e3,
            mean: hist.mean() / 1e3,
        });
        Trial {
            offered_mpps: mpps,
            sent_mpps: sent as f64 / duration / 1e6,
            sent,
            refused,
            received,
            lost,
            loss,
            duplicates,
            foreign,
            latency_us,
            short: false,
            pass: false,
        }
    }
}

fn print_trial(n: usize, t: &Trial) {
    let lat = match &t.latency_us {
        Some(l) => format!(
            "latency us: p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        ),
        None => "no latency samples".into(),
    };
    println!(
        "trial {n}: offered {:.3} Mpps, sent {:.3} Mpps ({} sent, {} refused by the port), received {}, lost {} ({:.4}%), {} duplicates, {} foreign; {lat} -> {}",
        t.offered_mpps,
        t.sent_mpps,
        t.sent,
        t.refused,
        t.received,
        t.lost,
        t.loss * 100.0,
        t.duplicates,
        t.foreign,
        match (t.pass, t.short) {
            (true, _) => "pass",
            (false, true) => "fail (the offered rate did not go out)",
            (false, false) => "fail",
        }
    );
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("trafgen: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let case = perf::SizeCase::parse(&args.size)?;
    // One pattern of the mix (or the one size): the templates rotate over it.
    let lens: Vec<usize> = if case.name == "imix" { IMIX.to_vec() } else { vec![case.lens[0]] };
    let tx_sa = match &args.tx_esp {
        Some(spec) => {
            let (local, remote) = match args.src {
                IpAddr::V4(_) => (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                IpAddr::V6(_) => ("2001:db8::2".parse().expect("literal"), "2001:db8::1".parse().expect("literal")),
            };
            let cfg = sa_spec(spec, local, remote).map_err(|e| format!("--tx-esp: {e}"))?;
            Some(OutboundSa::new(&cfg, Arc::new(SeqCounter::default())).map_err(|e| format!("--tx-esp: {e}"))?)
        }
        None => None,
    };
    let rx_sa = match &args.rx_esp {
        Some(spec) => {
            let cfg = sa_spec(spec, args.src, args.dst).map_err(|e| format!("--rx-esp: {e}"))?;
            Some(InboundSa::new(&cfg).map_err(|e| format!("--rx-esp: {e}"))?)
        }
        None => None,
    };
    let dst_mac = args.dst_mac.parse::<Mac>().map_err(|e| format!("--dst-mac: {e}"))?.0;

    let mut eal_args = vec!["trafgen".to_string()];
    eal_args.extend(args.eal.iter().cloned());
    let eal = Eal::init(&eal_args).map_err(|e| e.to_string())?;
    let id = |name: &str| dpdk::port_by_name(name).ok_or_else(|| format!("no DPDK port named {name:?}"));
    let (tx, rx) = (id(&args.tx_port)?, id(&args.rx_port)?);
    let pool = Mempool::new("trafgen", 16383, 256, 2048 + 128, dpdk::socket_id()).map_err(|e| e.to_string())?;
    let mut ports = vec![Port::configure(tx, 1, 1, 1024, &pool).map_err(|e| e.to_string())?];
    if rx != tx {
        ports.push(Port::configure(rx, 1, 1, 1024, &pool).map_err(|e| e.to_string())?);
    }
    let src_mac = dpdk::port_mac(tx).map_err(|e| e.to_string())?;

    // One template per (flow, size of the mix) pair, in rotation.
    let mut templates = Vec::new();
    for (i, &len) in lens.iter().cycle().take(lens.len() * usize::from(args.flows.max(1))).enumerate() {
        let sport = 10000 + (i % usize::from(args.flows.max(1))) as u16;
        let ip = inner_packet(args.src, args.dst, len, sport)?;
        templates.push(match tx_sa {
            Some(_) => ip,
            None => {
                let mut f = Vec::with_capacity(ETH_LEN + ip.len());
                f.extend_from_slice(&dst_mac);
                f.extend_from_slice(&src_mac);
                f.extend_from_slice(&(if args.src.is_ipv4() { 0x0800u16 } else { 0x86dd }).to_be_bytes());
                f.extend_from_slice(&ip);
                f
            }
        });
    }
    let mean_len = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    let mut g = Gen {
        tx,
        rx,
        pool,
        templates,
        dst_mac,
        src_mac,
        tx_sa,
        rx_sa,
        hz: dpdk::tsc_hz(),
        trial: 0,
        tally: Tally::default(),
        esp_seq: 0,
    };
    // Links come up a moment after the ports start (a memif peer has to connect, a NIC to
    // negotiate); trials start when both are up.
    let t0 = std::time::Instant::now();
    while !(dpdk::link_is_up(tx) && dpdk::link_is_up(rx)) {
        if t0.elapsed().as_secs_f64() > args.link_timeout {
            return Err(format!("{LINKS_DOWN} within {} s", args.link_timeout));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));

    // A trial counts only if the offered rate really went out (within 1%): short of it, the
    // port's queue was full or this core too slow, and the trial says nothing of the device.
    let pass = |t: &mut Trial| {
        t.short = t.sent_mpps < 0.99 * t.offered_mpps;
        t.pass = t.received > 0 && t.loss <= args.loss_tolerance && !t.short;
        t.pass
    };
    let mut trials = Vec::new();
    let result = if args.search {
        // 10 Gbit/s line rate: frame = inner + 14 Ethernet + 4 FCS (+ ESP overhead when sending
        // ESP, about 50), + 20 of preamble and gap.
        let wire = mean_len + 18.0 + 20.0 + if g.tx_sa.is_some() { 50.0 } else { 0.0 };
        let max = args.max_mpps.unwrap_or(10e9 / (wire * 8.0) / 1e6);
        let (mut lo, mut hi) = (0.0f64, max);
        let mut best: Option<Trial> = None;
        let mut rate = max;
        loop {
            let mut t = g.run(rate, args.duration, args.drain);
            let ok = pass(&mut t);
            print_trial(trials.len() + 1, &t);
            trials.push(t.clone());
            if ok {
                lo = rate;
                best = Some(t);
            } else {
                hi = rate;
            }
            if hi - lo <= args.resolution * max {
                break;
            }
            rate = (lo + hi) / 2.0;
        }
        match &best {
            Some(b) => println!(
                "throughput (RFC 2544 26.1): {:.3} Mpps, {:.3} Gbit/s of inner packets ({} {}), loss 0 within {:.1}% of {:.3} Mpps; latency at that rate (26.2): {}",
                b.offered_mpps,
                b.offered_mpps * mean_len * 8.0 / 1e3,
                if lens.len() > 1 { "IMIX".to_string() } else { format!("{} B", lens[0]) },
                if g.tx_sa.is_some() { "sent as ESP" } else { "sent clear" },
                args.resolution * 100.0,
                max,
                b.latency_us.as_ref().map_or("none".into(), |l| format!(
                    "p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                    l.p50, l.p99, l.max
                ))
            ),
            None => println!("throughput: no rate passed (the lowest tried was {:.4} Mpps)", rate),
        }
        if let Some(t) =
            trials.iter().filter(|t| t.short && t.lost == 0).min_by(|a, b| a.sent_mpps.total_cmp(&b.sent_mpps))
        {
            println!(
                "note: at {:.3} Mpps offered only {:.3} Mpps went out, without loss: the generator or its port set \
                 the upper bound, and the device may carry more",
                t.offered_mpps, t.sent_mpps
            );
        }
        best
    } else {
        let mut t = g.run(args.rate_mpps, args.duration, args.drain);
        pass(&mut t);
        print_trial(1, &t);
        trials.push(t.clone());
        Some(t).filter(|t| t.pass)
    };
    if let Some(p) = &args.json {
        let doc = serde_json::json!({
            "tool": "trafgen",
            "args": std::env::args().skip(1).collect::<Vec<_>>(),
            "size": args.size,
            "mean_len": mean_len,
            "flows": args.flows,
            "throughput_mpps": result.as_ref().map(|t| t.offered_mpps),
            "latency_us_at_throughput": result.as_ref().and_then(|t| t.latency_us.clone()),
            "trials": trials,
        });
        std::fs::write(p, serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    drop(g);
    for p in &ports {
        let _ = dpdk::port_stop(p.id);
        let _ = dpdk::port_close(p.id);
    }
    drop(eal);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use esp::buf::VecBuf;

    fn sa_config() -> SaConfig {
        sa_spec(
            "spi=0x1234,key=00112233445566778899aabbccddeeff,salt=01020304",
            "192.0.2.2".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        )
        .unwrap()
    }

    fn frame(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_LEN];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    /// A stamped packet reads back, in the clear and through ESP sealed by the peer's SA.
    #[test]
    fn stamps_read_back_clear_and_through_esp() {
        let stamp = Stamp { trial: 7, seq: 123_456, tsc: 0x1122_3344_5566_7788 };
        let mut ip = inner_packet("10.1.0.10".parse().unwrap(), "10.2.0.10".parse().unwrap(), 64, 10001).unwrap();
        let off = stamp_offset(&ip).unwrap();
        stamp.write(&mut ip[off..]);
        let mut clear = VecBuf::new(&frame(&ip), 128, 64);
        assert_eq!(stamp_of(None, &mut clear), Some(stamp));

        let out = OutboundSa::new(&sa_config(), Arc::new(SeqCounter::default())).unwrap();
        let inb = InboundSa::new(&sa_config()).unwrap();
        let mut b = VecBuf::new(&ip, 128, 64);
        out.encapsulate(1, &mut b).unwrap();
        let sealed = frame(b.data());
        assert_eq!(stamp_of(Some(&inb), &mut VecBuf::new(&sealed, 128, 64)), Some(stamp));
        // Without the SA, or with a flipped bit, it is not ours.
        assert_eq!(stamp_of(None, &mut VecBuf::new(&sealed, 128, 64)), None);
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(stamp_of(Some(&inb), &mut VecBuf::new(&bad, 128, 64)), None);
    }

    /// What arrives from the wire never panics the receive path: every truncation of a valid
    /// ESP frame and random frames.
    #[test]
    fn garbage_is_not_a_stamp_and_never_panics() {
        let inb = InboundSa::new(&sa_config()).unwrap();
        let out = OutboundSa::new(&sa_config(), Arc::new(SeqCounter::default())).unwrap();
        let ip = inner_packet("10.1.0.10".parse().unwrap(), "10.2.0.10".parse().unwrap(), 100, 1).unwrap();
        let mut b = VecBuf::new(&ip, 128, 64);
        out.encapsulate(1, &mut b).unwrap();
        let sealed = frame(b.data());
        for n in 0..sealed.len() {
            let _ = stamp_of(Some(&inb), &mut VecBuf::new(&sealed[..n], 128, 64));
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 200) as usize;
            let mut f: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            if len > 14 {
                // Often a plausible IPv4 or IPv6 header start, ESP or UDP.
                f[14] = [0x45, 0x60, 0x45][(x % 3) as usize];
                if len > 23 {
                    f[23] = [50, 17, 6][(x >> 3) as usize % 3];
                }
            }
            let _ = stamp_of(Some(&inb), &mut VecBuf::new(&f, 128, 64));
            let _ = stamp_of(None, &mut VecBuf::new(&f, 128, 64));
        }
    }
}
