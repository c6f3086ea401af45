//! The device <-> server protocol of the fleet: check-ins, commands, chunked downloads and step
//! reports (no_std, sans-IO, minicbor). This crate is the one definition of these messages: the
//! agent firmware, the fleet simulator, the gateway and the fleet server all use it.
//!
//! # Wire format
//!
//! Every message is a CBOR map with unsigned integer keys in ascending order (the rules of
//! `artifact::cbor`: unknown non-negative keys are skipped, negative keys are critical and
//! refused). Key 0 of each top-level message is the protocol version. Over HTTP each endpoint
//! carries one message type; on a serial link messages travel in a [`DeviceFrame`] or
//! [`ServerFrame`]: `[kind, message]`, each COBS-framed with a CRC by [`link`].
//!
//! # Invariants
//!
//! - Decoding borrows from the input (names, envelopes, chunk data): no allocator on the device.
//! - Every decode is bounded: lengths are checked against the constants below before use.
//! - Encoding into a caller's buffer never panics: a short buffer is `Error::BufferTooSmall`.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod codec;
pub mod link;
mod messages;

#[cfg(feature = "alloc")]
pub use codec::to_vec;
pub use codec::{Error, Message, decode, encode};
pub use messages::*;

/// Protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Longest device id, in bytes.
pub const MAX_DEVICE_ID: usize = 64;
/// Largest chunk of a download, in bytes (the device picks its size up to this).
pub const MAX_CHUNK: usize = 4096;
/// Longest download location (a path on the server or gateway).
pub const MAX_URL: usize = 256;
