//! The error type of the DPDK wrappers.

use std::ffi::CStr;
use std::fmt;

use dpdk_sys as sys;

/// An errno value from DPDK with its `rte_strerror` text (which also names DPDK's own codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RteErrno {
    pub code: i32,
    pub text: String,
}

impl RteErrno {
    /// The errno value `code` (positive).
    pub fn from_code(code: i32) -> Self {
        // Safety: rte_strerror accepts any value and returns a NUL-terminated string, either
        // static or in a per-thread buffer; it is copied out before anything else can reuse it.
        let text = unsafe { CStr::from_ptr(sys::rte_strerror(code)) }.to_string_lossy().into_owned();
        RteErrno { code, text }
    }

    /// The calling thread's current `rte_errno`.
    pub fn last() -> Self {
        // Safety: reads this thread's TLS rte_errno through the wrapper in dpdk-sys/wrapper.h.
        Self::from_code(unsafe { sys::rte_sys_errno() })
    }

    /// From the negative errno that most ethdev functions return.
    pub(crate) fn from_ret(ret: i32) -> Self {
        Self::from_code(ret.saturating_neg())
    }
}

impl fmt::Display for RteErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.text, self.code)
    }
}

/// What went wrong in a DPDK call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    #[error("rte_eal_init failed: {0}")]
    EalInit(RteErrno),
    #[error("the EAL can be initialised only once per process")]
    EalAlreadyInitialised,
    #[error("the EAL is not initialised")]
    EalNotInitialised,
    #[error("argument contains a NUL byte: {0:?}")]
    NulInArgument(String),
    #[error("mempool {name}: {errno}")]
    Mempool { name: String, errno: RteErrno },
    #[error("port {port}: {op}: {errno}")]
    Port { port: u16, op: &'static str, errno: RteErrno },
    #[error("lcore {lcore}: {reason}")]
    Lcore { lcore: u32, reason: &'static str },
    #[error("launch on lcore {lcore}: {errno}")]
    Launch { lcore: u32, errno: RteErrno },
    #[error("worker lcores {0:?} returned an error or panicked")]
    WorkersFailed(Vec<u32>),
}

impl DpdkError {
    pub(crate) fn port(port: u16, op: &'static str, ret: i32) -> Self {
        DpdkError::Port { port, op, errno: RteErrno::from_ret(ret) }
    }
}
