//! Transparent huge pages for the process heap.
//!
//! SAs, their key schedules, the SPD and SAD tables and the counters live on the Rust heap, not
//! in DPDK's hugepage memory. With many tunnels each packet touches several of them, each on a
//! different 4 KiB page, and every such access then also misses the TLB (a two-level page walk
//! in a virtual machine). glibc backs its heap with transparent huge pages when the tunable
//! `glibc.malloc.hugetlb=1` is set (glibc 2.35 on; it asks with `madvise`, so it works under
//! the default THP mode `madvise`). glibc reads tunables only when a process starts, so the
//! gateway sets it by running itself again, once, before anything else.
//!
//! What it covers (glibc 2.36, read from `/proc/PID/smaps` with 100,000 SA pairs): the main
//! heap and every large allocation, which is where the SPD and SAD tables and the counters
//! are. Small allocations made by other threads are not covered: glibc keeps them in per-thread
//! arenas that it does not advise, and the SAs, key schedules and anti-replay windows are built
//! by the control thread (about 350 MB on 4 KiB pages, against 110 MB on huge pages).
//! `glibc.malloc.arena_max=1` would put them on the main heap too; that measured no difference.
//!
//! Measured with 100,000 SA pairs, 64-byte packets through DPDK, against `hugetlb=0`: 1.15x
//! outbound and 1.22x inbound over 3 alternated rounds (perf/RESULTS.md section 17), but 1.01x
//! and 0.95x over 12 (section 18), within the noise of the virtual machine measured on. The
//! fewer TLB misses are certain; what they are worth on a given machine is not.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

const VAR: &str = "GLIBC_TUNABLES";
const TUNABLE: &str = "glibc.malloc.hugetlb";

/// What `GLIBC_TUNABLES` should be to ask for huge pages, given its current value; `None` if
/// it says something about them already (the operator's choice, or this process was started
/// by [`reexec_with_huge_pages`]).
pub fn tunables_with_huge_pages(current: Option<&str>) -> Option<String> {
    match current {
        Some(t) if t.split(':').any(|kv| kv.split('=').next() == Some(TUNABLE)) => None,
        Some(t) if !t.is_empty() => Some(format!("{t}:{TUNABLE}=1")),
        _ => Some(format!("{TUNABLE}=1")),
    }
}

/// Runs this program again with the same arguments and `glibc.malloc.hugetlb=1` added to
/// `GLIBC_TUNABLES`, unless that tunable is set already (then, or if the program cannot be
/// run again, it returns and the process goes on with ordinary pages). Call first thing in
/// `main`, before any thread exists. Opt out with `GLIBC_TUNABLES=glibc.malloc.hugetlb=0`.
pub fn reexec_with_huge_pages() {
    let current = std::env::var_os(VAR);
    let Some(current) = current.as_ref().map(|v| v.to_str()).unwrap_or(Some("")) else {
        // Not UTF-8: not ours to rewrite.
        return;
    };
    let Some(tunables) = tunables_with_huge_pages(Some(current)) else { return };
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("dataplane"));
    // `exec` returns only if it failed.
    let err = Command::new(exe).arg0(arg0).args(args).env(VAR, tunables).exec();
    eprintln!("huge pages for the heap not enabled (could not run again: {err})");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_tunable_once_and_keeps_the_operators() {
        assert_eq!(tunables_with_huge_pages(None).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(tunables_with_huge_pages(Some("")).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(
            tunables_with_huge_pages(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
        );
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.hugetlb=1")), None);
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.hugetlb=0")), None);
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2")), None);
        // A longer name that merely starts like it is not the tunable.
        assert_eq!(
            tunables_with_huge_pages(Some("glibc.malloc.hugetlbx=1")).as_deref(),
            Some("glibc.malloc.hugetlbx=1:glibc.malloc.hugetlb=1")
        );
    }
}
