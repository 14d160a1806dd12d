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
    /// Adjacent lines per pick in the throughput test: each random pick is a block of this
    /// many lines, all asked for (as a tunnel's state laid out in one record would be).
    #[arg(long, value_delimiter = ',', default_value = "1",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    adjacent: Vec<u64>,
    /// Prefetch hint of the throughput test: t0 (to all levels, as the gateway asks), t1 or t2
    /// (to the second level and below, on this kind of CPU), nta (non-temporal).
    #[arg(long, default_value = "t0")]
    hint: Hint,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 0.5, value_parser = seconds)]
    seconds: f64,
    /// Pin to this CPU.
    #[arg(long)]
    core: Option<usize>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Hint {
    T0,
    T1,
    T2,
    Nta,
}

#[inline(always)]
fn prefetch_with(hint: Hint, p: *const u64) {
    use std::arch::x86_64::{_MM_HINT_NTA, _MM_HINT_T0, _MM_HINT_T1, _MM_HINT_T2, _mm_prefetch};
    // Safety: a prefetch does not access memory architecturally and cannot fault.
    unsafe {
        match hint {
            Hint::T0 => _mm_prefetch::<_MM_HINT_T0>(p.cast()),
            Hint::T1 => _mm_prefetch::<_MM_HINT_T1>(p.cast()),
            Hint::T2 => _mm_prefetch::<_MM_HINT_T2>(p.cast()),
            Hint::Nta => _mm_prefetch::<_MM_HINT_NTA>(p.cast()),
        }
    }
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

/// ns per line of random blocks of `adjacent` lines, `batch` lines asked for at once.
fn throughput(buf: &[u64], batch: usize, adjacent: usize, hint: Hint, seconds: f64) -> f64 {
    let block = WORDS * adjacent;
    let blocks = (buf.len() / block) as u64;
    // Every line once, in random order (Fisher-Yates), drawn before the clock starts: drawing
    // them inside the timed loop (a division each) would be counted as memory time, and a
    // shorter list would bring the same lines again, from cache.
    let mut x = 0x2545_f491_4f6c_dd1d;
    let mut picks: Vec<usize> = (0..blocks as usize).map(|b| b * block).collect();
    for i in (1..picks.len()).rev() {
        let j = (next(&mut x) % (i as u64 + 1)) as usize;
        picks.swap(i, j);
    }
    // No more at once than the buffer has blocks.
    let batch = batch.div_ceil(adjacent).min(picks.len());
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
                for l in 0..adjacent {
                    prefetch_with(hint, &buf[p + l * WORDS]);
                }
            }
            for &p in picked {
                for l in 0..adjacent {
                    sum = sum.wrapping_add(buf[p + l * WORDS]);
                }
            }
            read += (batch * adjacent) as u64;
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
        "mem-lines: one core, random cache lines; throughput in batches of {} lines, prefetch {:?}; GLIBC_TUNABLES={}",
        args.batch,
        args.hint,
        std::env::var("GLIBC_TUNABLES").unwrap_or_default()
    );
    // One throughput column per block size: ns per line, and per block when blocks are longer.
    let heads: Vec<String> = args
        .adjacent
        .iter()
        .map(|&k| if k == 1 { "ns/line".to_string() } else { format!("{k} adj: ns/line ns/block") })
        .collect();
    println!(
        "{:>6} | {:>10} | {} | {:>15} | {:>12}",
        "MiB",
        "latency ns",
        heads.iter().map(|h| format!("{h:>22}")).collect::<Vec<_>>().join(" | "),
        "lines in flight",
        "huge pages %"
    );
    for &mib in &args.sizes_mib {
        let mut buf = vec![0u64; (mib as usize) << 17];
        let lat = latency(&mut buf, args.seconds);
        let thr: Vec<f64> = args
            .adjacent
            .iter()
            .map(|&k| throughput(&buf, args.batch as usize, k as usize, args.hint, args.seconds))
            .collect();
        let huge = huge_share(buf.as_ptr()).map_or("?".into(), |p| format!("{p:.0}"));
        let cols: Vec<String> =
            args.adjacent
                .iter()
                .zip(&thr)
                .map(|(&k, t)| {
                    if k == 1 { format!("{t:>22.1}") } else { format!("{:>22}", format!("{t:.1} {:.1}", t * k as f64)) }
                })
                .collect();
        // Lines in flight: latency over the time per single line, when that was measured.
        let in_flight =
            args.adjacent.iter().position(|&k| k == 1).map_or("-".into(), |i| format!("{:.1}", lat / thr[i]));
        println!("{mib:>6} | {lat:>10.1} | {} | {in_flight:>15} | {huge:>12}", cols.join(" | "));
    }
}
