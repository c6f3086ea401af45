//! On-device inference: a no_std, allocation-free int8 TensorFlow Lite interpreter and the
//! validation-set runner that gates every model update.
//!
//! # Invariants
//!
//! - `Model::parse` reads the flatbuffer in place (zero copy) and checks every offset, length,
//!   type, shape and quantization parameter before anything runs; a malformed model is an
//!   `Error`, never a panic or an out-of-bounds read.
//! - Arithmetic follows TensorFlow Lite's reference kernels (integer requantization with
//!   gemmlowp rounding, int8 softmax in fixed point), so outputs match TFLite's within one
//!   quantization step and the predicted class matches exactly.
//! - All memory is the caller's arena, sized by `Model::arena_size`: activations placed by a
//!   greedy planner over tensor lifetimes, then per-channel requantization parameters.
//! - No clock, allocator or I/O: the runner takes time from the caller.
#![no_std]
// The device builds this crate for size (firmware/Cargo.toml) and the DSP kernels' hot
// functions for speed with `#[optimize(speed)]`, an unstable attribute the firmware's
// RUSTC_BOOTSTRAP allows; host builds leave it out.
#![cfg_attr(target_os = "none", feature(optimize_attribute))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(test)]
extern crate std;

mod error;
mod fixedpoint;
mod flatbuf;
pub mod graph;
pub mod interpreter;
pub mod kernels;
pub mod ops;
mod quant;
mod schema;
pub mod validation;

pub use error::Error;
pub use graph::{Model, RUNTIME_ABI, Refusal};
pub use interpreter::Interpreter;
pub use validation::{Report, ValidationSet, Verdict, judge};
