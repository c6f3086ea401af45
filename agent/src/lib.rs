//! The device agent core (no_std, no clock, no network): model updates from the server's
//! command to the switch, proven on the device's own validation set first.
//!
//! The platform (firmware, host simulator) moves bytes: it sends check-ins and reports, fetches
//! the chunks the agent asks for, gives it the inactive slot's bytes, an arena and a clock to
//! validate with. The agent owns every decision and every flash write.
//!
//! # Invariants
//!
//! - A release is verified (signature threshold, board, model security counter, runtime ABI,
//!   arena and slot size) before its first byte is written.
//! - Updates go to the inactive model slot; inference keeps using the active one. The switch is
//!   one key-value record (sequential-storage, CRC-protected): before it the old model is active
//!   and intact, after it the new one, whatever the moment power is cut.
//! - Each payload's SHA-256 is computed while writing (and recomputed from flash after a reset);
//!   a corrupted chunk abandons the update before anything is committed.
//! - A model that fails its validation policy is never switched to.
//! - Progress is persisted at each erase sector: a reset resumes the download there.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod agent;
mod error;
pub mod provisioning;
mod session;
pub mod store;

pub use agent::{Agent, CHUNK, Identity, Next, PendingReport, Transfer};
pub use error::Error;
pub use session::{DEFAULT_POLL_MS, Outgoing, Session, TIMEOUT_MS};
