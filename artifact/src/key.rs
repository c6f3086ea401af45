//! Ed25519 public keys as the format names them: 32 raw bytes and an 8-byte key id.

use crate::{Error, sha256};
use core::fmt;

/// First 8 bytes of the SHA-256 of the raw public key. Ids only select which key to try:
/// a colliding id still needs a valid signature by the listed key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A validated Ed25519 public key (a canonical point that is not of small order).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    id: KeyId,
}

impl PublicKey {
    /// Checks that the bytes are a usable Ed25519 key and computes its id.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, Error> {
        if !crate::ed25519::valid_key(&bytes) {
            return Err(Error::InvalidPublicKey);
        }
        let digest = sha256(&bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(digest.get(..8).ok_or(Error::InvalidPublicKey)?);
        Ok(PublicKey {
            bytes,
            id: KeyId(id),
        })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Strict verification (RFC 8032 with canonical encodings, no small-order components), so a
    /// signature cannot be mutated into another valid one: the rule of `ed25519.rs`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), Error> {
        if crate::ed25519::verify(&self.bytes, message, signature) {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}
