//! The agent on a board: what a firmware engineer adds to an application to give it verified
//! model and firmware updates. It drives the sans-IO agent core (`agent::Session`) over the
//! board's flash, a byte transport framed with `protocol::link`, the board's clock, watchdog
//! and reset, the bootloader's word on this boot, and the identity provisioned in flash; and it
//! hands the application's inference the active model, mapped from flash in place.
//!
//! Two ways in: `Device::poll` (a superloop calls it whenever something may have happened) and,
//! with the `embassy` feature, `run` (one async task over `embedded-io-async` and
//! `embassy-time`). Both are the same code: `run` is `poll` and a wait.
//!
//! # Invariants
//!
//! - The application sees the active model only inside `Inference::infer`, never the slot being
//!   written; a switch happens between two calls, so no inference reads a slot the agent erases.
//! - Between two validation samples the line's inference runs when it is due, never inside a
//!   measured sample: an update does not stop the line, and the line does not skew the figures.
//! - Nothing from the transport or the flash panics: a bad frame is dropped (the session asks
//!   again), a missing or damaged identity leaves the device running its model offline, with a
//!   console line saying why.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod board;
mod boot;
mod console;
mod device;
mod models;
#[cfg(feature = "embassy")]
mod run;
mod sample_line;
mod uplink;

pub use board::{Board, Inference};
pub use boot::{BootInfo, boot_info_from_flash};
pub use console::Line;
pub use device::{Device, Parts, StartError, decode_root};
pub use models::{ActiveModel, model_slot_address};
#[cfg(feature = "embassy")]
pub use run::run;
pub use sample_line::SampleLine;
