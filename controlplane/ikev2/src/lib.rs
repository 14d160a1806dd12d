//! IKEv2 (RFC 7296) as a sans-IO state machine: no sockets, no clock reads.
#![forbid(unsafe_code)]
