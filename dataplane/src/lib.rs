//! The DPDK ESP tunnel gateway (see ARCHITECTURE.md): configuration, the per-burst pipeline,
//! polling workers, the exception path to the host stack, counters and the control socket.
//! Only the `dpdk` module uses `unsafe`.
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod controller;
pub mod counters;
pub mod crypto;
pub mod doorbell;
pub mod dpdk;
pub mod gateway;
pub mod hash;
pub mod heap;
pub mod net;
pub mod pipeline;
pub mod policy;
pub mod route;
pub mod sad;
pub mod worker;
