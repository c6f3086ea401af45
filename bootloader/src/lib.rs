//! A/B bootloader core (no_std): verified boot, image-sized swap and revert, downgrade
//! protection and trial boots, generic over `embedded_storage::NorFlash`.
//!
//! - the boot state is an append-only log of write-once records (`state`) and the swap moves
//!   only the pages the two images occupy (`swap`), so no flash word is programmed twice;
//! - every firmware slot starts with a header holding the signed manifest (`header`), and the
//!   image is checked (signature threshold, board, size, SHA-256) before it runs (`verify`);
//! - the security counter of the confirmed image is stored (`counter`) and nothing below it
//!   boots, after an update or a revert;
//! - a new image boots once on trial (the board arms its watchdog); if it does not confirm it
//!   is reverted at the next reset, and if it fails verification it is reverted at once (`boot`).
//!
//! # Invariants
//!
//! - The boot path never panics: layouts are checked at compile time (`layout::Layout::check`),
//!   buffers at entry, and every parser returns errors.
//! - What runs is decided from the verified header in the slot, never from the boot state
//!   alone (which can lag behind a power cut in `mark_booted`).
//! - Per-board code (flash driver, watchdog, jump) lives in the firmware crates; this crate does
//!   no I/O of its own and runs unchanged in the host power-loss simulator.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod boot;
mod counter;
mod error;
pub mod header;
pub mod state;
mod swap;
mod verify;

pub use boot::{Decision, Outcome, SharedFlash, Slot, boot};
pub use counter::SecurityCounter;
pub use error::{Error, flash as flash_error};
pub use state::{BootState, Phase};
pub use verify::{ImageInfo, check_header, verify_loaded, verify_slot};
