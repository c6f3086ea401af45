//! Fewer bytes over the air: firmware and model deltas and compressed payloads, decoded on the
//! device while downloading (no_std, no allocator), encoded by host tools.
//!
//! # Format
//!
//! A stream ([`format`], `docs/delta-format.md`) is an 80-byte header (kind, the target's length
//! and SHA-256, the base's length and SHA-256) and then one block per 4 KiB of target: a block is
//! either stored or coded by an adaptive binary range coder, and decodes to exactly its share of
//! the target with nothing carried over from the block before it. So a device that resets during
//! a download resumes at the next block boundary from two numbers (block index, stream offset);
//! no coder state is ever persisted.
//!
//! A coded block is a sequence of operations: literal bytes, a copy from the base with a byte
//! added to each (bsdiff's "diff" bytes, nearly all zero when code moved), and a match earlier in
//! the same block (LZ77). A compressed payload is the same stream without a base.
//!
//! # Invariants
//!
//! - The decoder never panics or reads outside its buffers; every length, offset and distance is
//!   checked against the block, the base and the output before it is used.
//! - The decoder's RAM is `size_of::<Decoder>()` (the block being built, the coder's
//!   probabilities and a small input window): nothing else, nothing allocated.
//! - How a symbol is coded is written once ([`coding`]), for the encoder and the decoder both.
//! - The stream is not trusted: the device checks the target's signed size and SHA-256 (from the
//!   release manifest) on what it wrote, exactly as for a full download.
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod coding;
pub mod decode;
#[cfg(feature = "std")]
pub mod encode;
mod error;
pub mod format;
mod range;

pub use decode::{Base, Checkpoint, Decoder, Progress};
pub use error::{Error, FormatError};
pub use format::{BLOCK_SIZE, HEADER_LEN, Header, Kind};
