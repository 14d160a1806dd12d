//! IKEv2 (RFC 7296) as a sans-IO state machine: no sockets, no clock reads.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod ike;
pub mod pki;
pub mod proposal;
pub mod wire;
