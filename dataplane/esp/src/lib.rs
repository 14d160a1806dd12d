//! ESP (RFC 4303) in tunnel mode with AES-GCM (RFC 4106): wire views, SAs, the anti-replay
//! window, and in-place encapsulation and decapsulation over any [`buf::PacketBuf`].
//!
//! No DPDK and no `unsafe` here, so all of it is tested with plain buffers.
#![forbid(unsafe_code)]

pub mod aead;
pub mod buf;
pub mod codec;
mod error;
pub mod replay;
pub mod sa;
pub mod wire;

pub use error::EspError;
