//! Which CPUs the control thread runs on.
//!
//! DPDK pins each lcore's thread to its CPUs, and a thread spawned from the main lcore
//! inherits the main lcore's: the control thread would share a worker's core and take its
//! time whenever it works (answering the control socket, programming SAs, checking lifetimes;
//! before it slept while idle, it used about 8% of a core with 100,000 SA pairs,
//! perf/RESULTS.md section 24). DPDK's own control threads (interrupts, multi-process,
//! telemetry) run on the CPUs the process was allowed before `rte_eal_init` that are no
//! lcore's; so does ours. Only when every allowed CPU is an lcore's does it stay on the main
//! lcore's CPUs, as DPDK's do.

use std::io;

/// The CPUs the calling thread may run on.
pub fn current() -> io::Result<Vec<usize>> {
    // Safety: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // Safety: the kernel writes at most the size given, which is the set's own.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cpus_of(&set))
}

/// The CPUs in `set`, in order.
pub fn cpus_of(set: &libc::cpu_set_t) -> Vec<usize> {
    // Safety: CPU_ISSET reads the set, at indices below its capacity (CPU_SETSIZE).
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, set) }).collect()
}

/// Restricts the calling thread to `cpus` (not empty).
pub fn set_current(cpus: &[usize]) -> io::Result<()> {
    // Safety: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // Safety: CPU_SET writes the set, at an index below its capacity (checked above).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // Safety: the kernel reads at most the size given, which is the set's own.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The control thread's CPUs: those the process was allowed (`allowed`, read before
/// `rte_eal_init`) that no lcore runs on; empty when every one is an lcore's (then the thread
/// keeps the CPU it inherits).
pub fn control_cpus(allowed: &[usize], lcore_cpus: &[usize]) -> Vec<usize> {
    allowed.iter().copied().filter(|c| !lcore_cpus.contains(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_cpus_are_the_allowed_ones_without_an_lcore() {
        assert_eq!(control_cpus(&[0, 1], &[1]), vec![0]);
        assert_eq!(control_cpus(&[0, 1, 2, 3], &[2, 3]), vec![0, 1]);
        assert_eq!(control_cpus(&[0, 1], &[0, 1]), Vec::<usize>::new());
        // A worker on a CPU outside the allowed set leaves the allowed set as it is.
        assert_eq!(control_cpus(&[0], &[5]), vec![0]);
    }

    /// The thread's own set reads back as it was set, in a thread of its own (the test
    /// harness's threads keep theirs).
    #[test]
    fn affinity_reads_back() {
        std::thread::spawn(|| {
            let all = current().unwrap();
            assert!(!all.is_empty());
            set_current(&all[..1]).unwrap();
            assert_eq!(current().unwrap(), all[..1].to_vec());
            set_current(&all).unwrap();
            assert_eq!(current().unwrap(), all);
        })
        .join()
        .unwrap();
    }
}
