//! The IKE daemon around the sans-IO `ikev2` crate: its configuration, the UDP driver
//! (ports 500 and 4500 with the non-ESP marker, RFC 3948) and the dataplane programming.

pub mod config;
pub mod ctl;
pub mod daemon;
