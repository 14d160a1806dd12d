//! EAL start-up and shutdown, lcores, launching work on lcores, and the TSC clock.

use std::ffi::{CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};

use dpdk_sys as sys;

use super::error::{DpdkError, RteErrno};

/// `lcore_id()` on a thread that is not an EAL lcore.
pub const LCORE_ID_ANY: u32 = sys::LCORE_ID_ANY;
/// "Any / unknown NUMA socket".
pub const SOCKET_ID_ANY: i32 = sys::SOCKET_ID_ANY;

const EAL_NEVER: u8 = 0;
const EAL_STARTING: u8 = 1;
const EAL_RUNNING: u8 = 2;
const EAL_DONE: u8 = 3;
/// rte_eal_init may run once per process, even after rte_eal_cleanup.
static EAL_STATE: AtomicU8 = AtomicU8::new(EAL_NEVER);

pub(crate) fn eal_running() -> bool {
    EAL_STATE.load(Ordering::Acquire) == EAL_RUNNING
}

/// The initialised EAL. Not `Send`: it is dropped on the thread that created it (the main lcore).
///
/// Drop waits for every worker lcore to return and then calls `rte_eal_cleanup`; every
/// [`Mbuf`](super::Mbuf) must be gone by then and ports should be stopped.
#[derive(Debug)]
pub struct Eal {
    consumed: usize,
    _main_thread_only: PhantomData<*const ()>,
}

impl Eal {
    /// `rte_eal_init` with `args` (`args[0]` is the program name). Only one call per process can
    /// succeed.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let cargs = args
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| DpdkError::NulInArgument(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if EAL_STATE.compare_exchange(EAL_NEVER, EAL_STARTING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        // EAL permutes argv and may keep pointers into it (device arguments, prefixes), so argv
        // and its strings are leaked on purpose: a few bytes, once per process.
        let mut argv: Vec<*mut c_char> = cargs.into_iter().map(CString::into_raw).collect();
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = argv.leak();
        let argc = c_int::try_from(args.len()).unwrap_or(c_int::MAX);
        // Safety: argv holds argc valid NUL-terminated strings plus a NULL terminator, all leaked
        // so they outlive the EAL; EAL_STATE guarantees this runs at most once.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = RteErrno::last();
            // A failed rte_eal_init cannot be retried either.
            EAL_STATE.store(EAL_DONE, Ordering::Release);
            return Err(DpdkError::EalInit(errno));
        }
        EAL_STATE.store(EAL_RUNNING, Ordering::Release);
        Ok(Eal { consumed: ret as usize, _main_thread_only: PhantomData })
    }

    /// How many arguments after the program name the EAL parsed (`rte_eal_init`'s return, a
    /// `--` included); the application's own arguments are `args[consumed_args() + 1..]`.
    pub fn consumed_args(&self) -> usize {
        self.consumed
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // Safety: the EAL is initialised and we are on the main lcore (Eal is !Send). Workers
        // must have returned before cleanup frees the memory they use.
        unsafe {
            sys::rte_eal_mp_wait_lcore();
        }
        EAL_STATE.store(EAL_DONE, Ordering::Release);
        // Safety: as above; nothing in this crate calls into DPDK after EAL_DONE is set except
        // through objects the caller has been told to drop first.
        unsafe {
            sys::rte_eal_cleanup();
        }
    }
}

/// The calling thread's lcore id, [`LCORE_ID_ANY`] on a non-EAL thread.
#[inline]
pub fn lcore_id() -> u32 {
    // Safety: reads a TLS variable; valid on any thread.
    unsafe { sys::rte_lcore_id() }
}

// rte_lcore.h declares this only under RTE_HAS_CPUSET, which needs _GNU_SOURCE, so the bindings
// of dpdk-sys lack it; librte_eal exports it (DPDK_23 ABI, DPDK 22.11). rte_cpuset_t is glibc's
// cpu_set_t. (`rte_lcore_to_cpu_id` is no substitute: it gives the lcore's physical core number
// within its socket, from sysfs, not the CPU it runs on.)
unsafe extern "C" {
    fn rte_lcore_cpuset(lcore_id: std::os::raw::c_uint) -> libc::cpu_set_t;
}

/// The CPUs lcore `lcore` runs on (one with `-l`, possibly several with `--lcores`); empty for
/// an lcore id out of range.
pub fn lcore_cpus(lcore: u32) -> Vec<usize> {
    if lcore >= sys::RTE_MAX_LCORE {
        return Vec::new();
    }
    // Safety: reads the static lcore config at an index below RTE_MAX_LCORE.
    let set = unsafe { rte_lcore_cpuset(lcore) };
    super::affinity::cpus_of(&set)
}

/// The main lcore's id (0 before the EAL is initialised).
pub fn main_lcore() -> u32 {
    // Safety: reads the EAL config, which is static and zeroed before init.
    unsafe { sys::rte_get_main_lcore() }
}

/// The enabled worker lcores (all lcores but the main one), in order; empty without an EAL.
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    // Before rte_eal_init every lcore's role reads as ROLE_RTE (0), i.e. "enabled".
    if !eal_running() {
        return out;
    }
    // Safety: rte_get_next_lcore only reads the static lcore config; starting from -1 (u32::MAX)
    // yields the first enabled lcore, and RTE_MAX_LCORE or more means "no more".
    let mut i = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while i < sys::RTE_MAX_LCORE {
        out.push(i);
        // Safety: as above.
        i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
    }
    out
}

/// The NUMA socket of the calling thread ([`SOCKET_ID_ANY`] if unknown).
pub fn socket_id() -> i32 {
    // Safety: reads a TLS variable; valid on any thread.
    (unsafe { sys::rte_socket_id() }) as i32
}

type Job = Box<dyn FnOnce() + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // Safety: `arg` is the Box<Job> that `launch` leaked for exactly this call; EAL calls the
    // function once, so ownership comes back here exactly once.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C; the lcore reports failure instead (see `wait_all`).
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Runs `f` on worker lcore `lcore` (`rte_eal_remote_launch`). Call from the main lcore; the
/// worker must be idle (launched work has returned and been waited for).
pub fn launch<F>(lcore: u32, f: F) -> Result<(), DpdkError>
where
    F: FnOnce() + Send + 'static,
{
    if !eal_running() {
        return Err(DpdkError::EalNotInitialised);
    }
    if lcore_id() != main_lcore() {
        return Err(DpdkError::Lcore { lcore, reason: "launch must be called on the main lcore" });
    }
    let is_worker = lcore < sys::RTE_MAX_LCORE && lcore != main_lcore() && {
        // Safety: lcore < RTE_MAX_LCORE, checked just before; the function reads the lcore table.
        unsafe { sys::rte_lcore_is_enabled(lcore) != 0 }
    };
    if !is_worker {
        return Err(DpdkError::Lcore { lcore, reason: "not an enabled worker lcore" });
    }
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job).cast::<c_void>();
    // Safety: the EAL runs, we are on the main lcore and `lcore` is a worker; `trampoline` takes
    // `arg` back as a Box<Job> and the job is Send + 'static, so it may run on that thread.
    let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if ret != 0 {
        // Safety: the launch failed, so trampoline will never see `arg`; take it back to free it.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::Launch { lcore, errno: RteErrno::from_ret(ret) });
    }
    Ok(())
}

/// Waits until every worker lcore has returned (what `rte_eal_mp_wait_lcore` does), and
/// reports the lcores whose work failed (a launched closure panicked).
pub fn wait_all() -> Result<(), DpdkError> {
    if !eal_running() {
        return Err(DpdkError::EalNotInitialised);
    }
    if lcore_id() != main_lcore() {
        return Err(DpdkError::Lcore { lcore: lcore_id(), reason: "wait_all must be called on the main lcore" });
    }
    let mut failed = Vec::new();
    for lcore in worker_lcores() {
        // Safety: `lcore` is an enabled worker and we are on the main lcore.
        if unsafe { sys::rte_eal_wait_lcore(lcore) } < 0 {
            failed.push(lcore);
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(DpdkError::WorkersFailed(failed)) }
}

/// The time stamp counter (`rte_rdtsc`).
#[inline]
pub fn tsc() -> u64 {
    // rte_rdtsc is static inline in C: through bindgen's wrapper it would be a call per burst.
    #[cfg(target_arch = "x86_64")]
    // Safety: RDTSC reads the CPU's time-stamp counter; no memory is touched.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // Safety: reads the CPU's cycle counter; no memory is touched.
    return unsafe { sys::rte_rdtsc() };
}

/// TSC ticks per second, as measured by the EAL (0 before `Eal::init`).
pub fn tsc_hz() -> u64 {
    // Safety: reads a static set by rte_eal_init.
    unsafe { sys::rte_get_tsc_hz() }
}
