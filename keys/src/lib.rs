//! Signing keys on the host: generation, and the key files operators keep.
//!
//! Devices and the server only ever verify; secret keys are only read from files here, on the
//! operator's machine, and handed to `artifact::Envelope::sign`. Invariants:
//! - a secret key file is created with mode 0600 before any byte is written to it, is never
//!   overwritten, and appears under its final name only once complete (hard link of a synced
//!   temporary file);
//! - key files are standard PKCS#8 / SPKI PEM, interchangeable with `openssl genpkey -algorithm
//!   ed25519` and `openssl pkey -pubout`.

mod file;

pub use ed25519_dalek::SigningKey;
pub use file::{KeyError, generate, read_public, read_secret, write_keypair};

/// The format's view of a signing key's public half.
pub fn public_of(key: &SigningKey) -> artifact::PublicKey {
    // A key derived from a secret is always a valid point; `from_bytes` only re-checks it.
    artifact::PublicKey::from_bytes(key.verifying_key().to_bytes())
        .unwrap_or_else(|_| unreachable!("a derived Ed25519 public key is valid"))
}
