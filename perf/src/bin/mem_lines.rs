//! What this machine's memory gives one core, for reading the many-tunnel figures (point 4 of
//! perf/RESULTS.md): each packet of a tunnel that is not in cache needs several cache lines
//! of that tunnel's state, from places no prefetcher can guess.
//!
//! For buffers of several sizes, on transparent huge pages as the gateway's heap is (run it
//! with `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` for 4 KiB pages; it prints what it got):
//! - latency: one dependent load after another, through a random cycle of the buffer's lines
//!   (each line visited once per cycle), in ns per load;
//! - throughput: batches of random lines, all prefetched and then read, in ns per line, as a
//!   worker asks for a burst's SA state; latency divided by it is how many line fills the core
//!   keeps in flight.

use clap::Parser;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "mem-lines", about = "Random cache-line latency and throughput of one core")]
struct Args {
    /// Buffer sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    sizes_mib: Vec<u64>,
    /// Lines asked for at once in the throughput test (a burst of 32 packets with 9 lines each
    /// is 288).
    #[arg(long, default_value_t = 288, value_parser = clap::value_parser!(u64).range(1..=1 << 16))]
    batch: u64,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 0.5, value_parser = seconds)]
    seconds: f64,
    /// Pin to this CPU.
    #[arg(long)]
    core: Option<usize>,
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 3600]")),
    }
}

const LINE: usize = 64;
/// u64 words per line.
const WORDS: usize = LINE / 8;

/// xorshift64: random enough for picking lines, and cheap next to a cache miss.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// How much of the mapping that holds `p` is on huge pages, in percent (/proc/self/smaps).
fn huge_share(p: *const u64) -> Option<f64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let addr = p as usize;
    let mut inside = false;
    let (mut rss, mut huge) = (None, None);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            if inside {
                break;
            }
            inside = (lo..hi).contains(&addr);
        } else if inside {
            let kb = words.next().and_then(|w| w.parse::<f64>().ok());
            match first {
                "Rss:" => rss = kb,
                "AnonHugePages:" => huge = kb,
                _ => {}
            }
        }
    }
    Some(100.0 * huge? / rss?.max(1.0))
}

fn latency(buf: &mut [u64], seconds: f64) -> f64 {
    let lines = buf.len() / WORDS;
    // Sattolo's algorithm: a random permutation that is one single cycle.
    let mut order: Vec<usize> = (0..lines).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15;
    for i in (1..lines).rev() {
        let j = (next(&mut x) % i as u64) as usize;
        order.swap(i, j);
    }
    for i in 0..lines {
        buf[order[i] * WORDS] = (order[(i + 1) % lines] * WORDS) as u64;
    }
    let (mut at, mut loads) = (order[0] * WORDS, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..10_000 {
            at = buf[at] as usize;
        }
        loads += 10_000;
    }
    black_box(at);
    t.elapsed().as_nanos() as f64 / loads as f64
}

fn throughput(buf: &[u64], batch: usize, seconds: f64) -> f64 {
    let lines = (buf.len() / WORDS) as u64;
    // Every line once, in random order (Fisher-Yates), drawn before the clock starts: drawing
    // them inside the timed loop (a division each) would be counted as memory time, and a
    // shorter list would bring the same lines again, from cache.
    let mut x = 0x2545_f491_4f6c_dd1d;
    let mut picks: Vec<usize> = (0..lines as usize).map(|l| l * WORDS).collect();
    for i in (1..picks.len()).rev() {
        let j = (next(&mut x) % (i as u64 + 1)) as usize;
        picks.swap(i, j);
    }
    // No more at once than the buffer has lines.
    let batch = batch.min(picks.len());
    let (mut sum, mut read, mut at) = (0u64, 0u64, 0);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..100 {
            if at + batch > picks.len() {
                at = 0;
            }
            let picked = &picks[at..at + batch];
            at += batch;
            for &p in picked {
                dataplane::dpdk::prefetch(&buf[p]);
            }
            for &p in picked {
                sum = sum.wrapping_add(buf[p]);
            }
            read += batch as u64;
        }
    }
    black_box(sum);
    t.elapsed().as_nanos() as f64 / read as f64
}

fn main() {
    // Huge pages for large allocations, as the gateway has them, unless told otherwise.
    dataplane::heap::reexec_with_huge_pages();
    let args = Args::parse();
    if let Some(c) = args.core
        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
    {
        eprintln!("mem-lines: could not pin to CPU {c}");
    }
    println!(
        "mem-lines: one core, random cache lines; throughput in batches of {} lines; GLIBC_TUNABLES={}",
        args.batch,
        std::env::var("GLIBC_TUNABLES").unwrap_or_default()
    );
    println!(
        "{:>6} | {:>10} | {:>15} | {:>15} | {:>12}",
        "MiB", "latency ns", "throughput ns", "lines in flight", "huge pages %"
    );
    for &mib in &args.sizes_mib {
        let mut buf = vec![0u64; (mib as usize) << 17];
        let lat = latency(&mut buf, args.seconds);
        let thr = throughput(&buf, args.batch as usize, args.seconds);
        let huge = huge_share(buf.as_ptr()).map_or("?".into(), |p| format!("{p:.0}"));
        println!("{mib:>6} | {lat:>10.1} | {thr:>15.1} | {:>15.1} | {huge:>12}", lat / thr);
    }
}
