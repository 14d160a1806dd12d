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
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256")]
    sizes_mib: Vec<usize>,
    /// Lines asked for at once in the throughput test (a burst of 32 packets with 9 lines each
    /// is 288).
    #[arg(long, default_value_t = 288)]
    batch: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Pin to this CPU.
    #[arg(long)]
    core: Option<usize>,
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

/// How much of this process's anonymous memory is on huge pages, in percent (smaps_rollup).
fn huge_share() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let kb = |key: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(100.0 * kb("AnonHugePages:")? / kb("Anonymous:")?.max(1.0))
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
    let mut x = 0x2545_f491_4f6c_dd1d;
    let mut picked = vec![0usize; batch];
    let (mut sum, mut read) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..100 {
            for p in picked.iter_mut() {
                *p = (next(&mut x) % lines) as usize * WORDS;
            }
            for &p in &picked {
                dataplane::dpdk::prefetch(&buf[p]);
            }
            for &p in &picked {
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
        let mut buf = vec![0u64; (mib << 20) / 8];
        let lat = latency(&mut buf, args.seconds);
        let thr = throughput(&buf, args.batch, args.seconds);
        let huge = huge_share().map_or("?".into(), |p| format!("{p:.0}"));
        println!("{mib:>6} | {lat:>10.1} | {thr:>15.1} | {:>15.1} | {huge:>12}", lat / thr);
    }
}
