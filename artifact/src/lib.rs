//! Signed artifact format of the fleet: manifest, envelope, trust root and bundle (no_std).
//!
//! This crate is the one definition of what a release is and who may sign it. The device
//! (agent, bootloader), the fleet server and `fleetctl` all link it.
//!
//! # Layers
//!
//! - [`Manifest`]: the release (components with size and SHA-256, boards, security counter,
//!   runtime ABI, tensor arena, validation policy), deterministic CBOR; host tools put one
//!   together from its payloads with [`ManifestBuilder`].
//! - [`Envelope`]: the exact manifest (or root) bytes plus Ed25519 signatures with key ids.
//! - [`TrustRoot`]: root keys (k of n) that sign the root, and signing keys (k of n) that sign
//!   manifests; rotation needs both the old and the new root thresholds.
//! - [`Bundle`]: header + envelope + payloads, the file operators push.
//!
//! # Invariants
//!
//! - No decoder panics, allocates or recurses without bound: every length is checked against
//!   a constant of this module before use, every read is bounds-checked.
//! - Signatures are checked before a manifest body is parsed; what is signed is exactly the
//!   transmitted body bytes (never a re-encoding), prefixed by a per-document domain tag.
//! - Encoders are deterministic (definite lengths, ascending integer keys, minimal integers)
//!   and refuse what decoders would refuse (`validate` runs on both sides).
//! - Map keys must be strictly ascending on decode; unknown non-negative keys are optional and
//!   skipped, negative keys are critical and refused.
//! - One digest everywhere for payloads: SHA-256.
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

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod builder;
pub mod bundle;
pub mod cbor;
mod ed25519;
mod envelope;
mod error;
mod key;
pub mod manifest;
mod root;
mod version;

pub use builder::ManifestBuilder;
pub use bundle::{Bundle, VerifiedBundle};
pub use envelope::{DocumentType, Envelope, SignatureEntry, signing_message};
pub use error::Error;
pub use key::{KeyId, PublicKey};
pub use manifest::{Component, ComponentKind, DeviceState, Manifest, Policy};
pub use root::{TrustRoot, VerifiedManifest};
pub use version::Version;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Most components in one manifest (firmware, model, validation set, one spare).
pub const MAX_COMPONENTS: usize = 4;
/// Most board identifiers in one manifest.
pub const MAX_BOARDS: usize = 8;
/// Longest name (component or board), in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Most signatures in one envelope.
pub const MAX_SIGNATURES: usize = 8;
/// Most keys per role in a trust root.
pub const MAX_KEYS: usize = 8;
/// Largest signed body (manifest or root), in bytes.
pub const MAX_BODY_LEN: usize = 2048;
/// Largest envelope: a full body and a full set of signatures, with CBOR framing.
pub const MAX_ENVELOPE_LEN: usize = MAX_BODY_LEN + MAX_SIGNATURES * 80 + 16;
/// Largest declared payload of one component: 16 MiB, far above any MCU's flash.
pub const MAX_COMPONENT_SIZE: u32 = 16 * 1024 * 1024;
/// Largest declared tensor arena: 16 MiB.
pub const MAX_ARENA_SIZE: u32 = 16 * 1024 * 1024;

/// SHA-256 of a byte slice; streaming users take `sha2::Sha256` directly.
pub fn sha256(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

pub use sha2::Sha256;
