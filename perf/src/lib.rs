//! Benchmark helpers shared by the `perf` binaries: test packets, packet-size mixes, run
//! statistics and a time-stamp-counter reading; and trafgen's receive side ([`stamp`]), a
//! module of its own so that a fuzz target can include it.
//!
//! Only [`tsc`] uses `unsafe`, for one CPU instruction.
#![deny(unsafe_code)]

pub mod stamp;

use esp::wire::{checksum_add, checksum_finish};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Packets per burst, as the dataplane's rx/tx bursts.
pub const BURST: usize = 32;
/// Bursts per timed round. 12 bursts = 384 packets = 32 whole IMIX patterns, so every round
/// carries exactly the 7:4:1 mix.
pub const BURSTS_PER_ROUND: usize = 12;
/// Packets per timed round.
pub const ROUND: usize = BURST * BURSTS_PER_ROUND;
/// Buffer layout of the benchmarks, like an mbuf: room in front for the outer headers,
/// behind for the ESP trailer and ICV.
pub const HEADROOM: usize = 128;
pub const TAILROOM: usize = 64;

/// The IMIX pattern: 7 x 64, 4 x 576, 1 x 1500 bytes (inner IP packet sizes).
pub const IMIX: [usize; 12] = [64, 64, 64, 64, 64, 64, 64, 576, 576, 576, 576, 1500];

/// One packet-size case: a name and the inner IP length of each packet of a round.
#[derive(Clone, Debug)]
pub struct SizeCase {
    pub name: String,
    /// `ROUND` lengths; packet `j` of a round (burst `j / BURST`, slot `j % BURST`) has `lens[j]`.
    pub lens: Vec<usize>,
}

impl SizeCase {
    /// `"64"`, `"1420"`, ... (a fixed size from 64 to 1500) or `"imix"`.
    pub fn parse(s: &str) -> Result<SizeCase, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("imix") {
            return Ok(SizeCase { name: "imix".into(), lens: (0..ROUND).map(|j| IMIX[j % IMIX.len()]).collect() });
        }
        let n: usize = s.parse().map_err(|_| format!("size {s:?} is neither a number nor \"imix\""))?;
        if !(64..=1500).contains(&n) {
            return Err(format!("size {n}: inner packets must be 64 to 1500 bytes"));
        }
        Ok(SizeCase { name: n.to_string(), lens: vec![n; ROUND] })
    }

    /// Average inner packet length in bytes.
    pub fn mean_len(&self) -> f64 {
        self.lens.iter().sum::<usize>() as f64 / self.lens.len() as f64
    }

    /// Inner bytes in one round.
    pub fn round_bytes(&self) -> u64 {
        self.lens.iter().sum::<usize>() as u64
    }
}

/// An IPv4/UDP packet of exactly `total` bytes (at least 28) from `src` to `dst`, with a valid
/// header checksum, UDP checksum 0 (allowed over IPv4) and a payload pattern that depends on `seed`.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, total: usize, seed: usize) -> Vec<u8> {
    assert!((28..=usize::from(u16::MAX)).contains(&total));
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&(seed as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum_finish(checksum_add(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&6000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (i + seed) as u8;
    }
    p
}

/// An IPv6/UDP packet of exactly `total` bytes (at least 48) from `src` to `dst`, ports
/// `sport` and `dport`, with the UDP checksum that IPv6 requires (RFC 8200 8.1).
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, total: usize, sport: u16, dport: u16) -> Vec<u8> {
    assert!((48..=usize::from(u16::MAX) + 40).contains(&total));
    let mut p = vec![0u8; total];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..42].copy_from_slice(&sport.to_be_bytes());
    p[42..44].copy_from_slice(&dport.to_be_bytes());
    p[44..46].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    // Pseudo-header (addresses, length, next header) and the UDP header and payload.
    let sum = checksum_add(checksum_add(0, &p[8..40]), &p[40..]) + 17 + (total - 40) as u32;
    let ck = checksum_finish(sum);
    p[46..48].copy_from_slice(&(if ck == 0 { 0xffff } else { ck }).to_be_bytes());
    p
}

/// Median, minimum and maximum of some values (the median of an even count is the mean of the
/// middle two).
pub fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    assert!(!v.is_empty());
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    (med, s[0], s[n - 1])
}

/// Per CPU, the jiffies stolen (the hypervisor ran something else: other guests, its own
/// threads) and in total, from the text of `/proc/stat` (`cpuN user nice system idle iowait
/// irq softirq steal ...`; guest time is already inside user time, so the first eight fields
/// are the total).
pub fn cpu_steal(stat: &str, cpus: &[usize]) -> Option<Vec<(u64, u64)>> {
    cpus.iter()
        .map(|&c| {
            let name = format!("cpu{c}");
            let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
            let f: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
            (f.len() == 8).then(|| (f[7], f.iter().sum()))
        })
        .collect()
}

/// A reading of the steal counters of some CPUs, to tell how much of an interval the
/// hypervisor took from them: on a VM a run that lost much time this way ran slow for reasons
/// not its own.
#[derive(Clone, Debug)]
pub struct StealClock(Vec<(u64, u64)>);

impl StealClock {
    /// Now, for `cpus`; `None` without `/proc/stat` or those CPUs.
    pub fn read(cpus: &[usize]) -> Option<Self> {
        cpu_steal(&std::fs::read_to_string("/proc/stat").ok()?, cpus).map(StealClock)
    }

    /// The share of the CPUs' time from `self` until `later` that was stolen (0.0 when no time
    /// passed).
    pub fn share_until(&self, later: &StealClock) -> f64 {
        let (mut stolen, mut total) = (0, 0);
        for (a, b) in self.0.iter().zip(&later.0) {
            stolen += b.0.saturating_sub(a.0);
            total += b.1.saturating_sub(a.1);
        }
        if total == 0 { 0.0 } else { stolen as f64 / total as f64 }
    }
}

/// The time-stamp counter, or `None` off x86_64. It ticks at a constant nominal rate
/// (`constant_tsc`), not at the current core clock, so "TSC ticks per packet" equal core cycles
/// only when the core runs at that nominal frequency.
#[inline]
pub fn tsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // Safety: RDTSC reads a counter and has no memory effects; every x86_64 CPU has it.
        #[allow(unsafe_code, unused_unsafe)]
        let t = unsafe { core::arch::x86_64::_rdtsc() };
        Some(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// TSC ticks per nanosecond, measured against the monotonic clock over `ms` milliseconds.
pub fn tsc_per_ns(ms: u64) -> Option<f64> {
    let (t0, i0) = (tsc()?, std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let (t1, i1) = (tsc()?, std::time::Instant::now());
    Some((t1 - t0) as f64 / i1.duration_since(i0).as_nanos() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use esp::wire::Ipv4Packet;

    #[test]
    fn sizes_and_imix() {
        let c = SizeCase::parse("imix").unwrap();
        assert_eq!(c.lens.len(), ROUND);
        assert_eq!(c.lens.iter().filter(|&&l| l == 64).count() * 4, c.lens.iter().filter(|&&l| l == 576).count() * 7);
        assert!((c.mean_len() - 4252.0 / 12.0).abs() < 1e-9);
        assert_eq!(SizeCase::parse("512").unwrap().lens[0], 512);
        assert!(SizeCase::parse("63").is_err() && SizeCase::parse("x").is_err());
    }

    #[test]
    fn packets_are_valid() {
        let p = ipv4_udp(Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10), 64, 3);
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert!(v.checksum_ok());
        assert_eq!(v.total_len(), 64);
        // IPv6: the one's-complement sum over pseudo-header and UDP, checksum included, is
        // all ones (RFC 768, RFC 8200 8.1), worked out here word by word.
        for total in [48, 64, 101, 1500] {
            let p = ipv6_udp("fd01::10".parse().unwrap(), "fd02::7".parse().unwrap(), total, 10001, 9);
            assert_eq!((p[0] >> 4, p[6], usize::from(u16::from_be_bytes([p[4], p[5]]))), (6, 17, total - 40));
            let mut words: Vec<u32> = p[8..40].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).collect();
            words.extend(p[40..].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))));
            let mut sum = words.iter().sum::<u32>() + 17 + (total - 40) as u32;
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            assert_eq!(sum, 0xffff, "IPv6 UDP checksum of a {total}-byte packet");
        }
        assert_eq!(median_min_max(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_min_max(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }

    #[test]
    fn steal_from_proc_stat() {
        let a = "cpu  10 0 5 100 0 0 0 3 0 0\ncpu0 4 0 2 50 0 0 0 1 0 0\ncpu1 6 0 3 50 0 0 0 2 7 0\n";
        let b = "cpu  30 0 5 100 0 0 0 13 0 0\ncpu0 4 0 2 50 0 0 0 1 0 0\ncpu1 26 0 3 60 0 0 0 12 7 0\n";
        assert_eq!(cpu_steal(a, &[1]), Some(vec![(2, 61)]));
        assert_eq!(cpu_steal(a, &[0, 1]), Some(vec![(1, 57), (2, 61)]));
        assert_eq!(cpu_steal(a, &[2]), None);
        assert_eq!(cpu_steal("cpu1 1 2 3\n", &[1]), None);
        let (x, y) = (StealClock(cpu_steal(a, &[1]).unwrap()), StealClock(cpu_steal(b, &[1]).unwrap()));
        // cpu1: 10 of 40 jiffies stolen.
        assert!((x.share_until(&y) - 0.25).abs() < 1e-12);
        assert_eq!(x.share_until(&x), 0.0);
        // cpu0 had nothing in the interval: the share is over both CPUs' time.
        let (x, y) = (StealClock(cpu_steal(a, &[0, 1]).unwrap()), StealClock(cpu_steal(b, &[0, 1]).unwrap()));
        assert!((x.share_until(&y) - 0.25).abs() < 1e-12);
    }
}
