//! The signed envelope: a document's exact bytes plus Ed25519 signatures, and the k-of-n rule.

use crate::cbor::{Decode as _, Reader};
use crate::cbor::{array_exact, array_len, bytes_exact, finish, uint};
use crate::key::{KeyId, PublicKey};
use crate::{Error, MAX_BODY_LEN, MAX_SIGNATURES};
use heapless::Vec;
use sha2::{Digest as _, Sha256};

/// What an envelope carries; part of what is signed, so a signature on one kind of document
/// never verifies as a signature on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DocumentType {
    Manifest = 1,
    Root = 2,
}

impl DocumentType {
    fn from_u8(v: u8) -> Result<Self, Error> {
        match v {
            1 => Ok(DocumentType::Manifest),
            2 => Ok(DocumentType::Root),
            _ => Err(Error::WrongDocument),
        }
    }

    fn domain(self) -> &'static [u8] {
        match self {
            DocumentType::Manifest => b"fleet-ota/v1/manifest\0",
            DocumentType::Root => b"fleet-ota/v1/root\0",
        }
    }
}

/// The 32 bytes an Ed25519 key signs: SHA-256(domain tag || body). Hashing first keeps the
/// device path free of an allocator (no concatenation buffer) whatever the body size.
pub fn signing_message(doc: DocumentType, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(doc.domain());
    h.update(body);
    h.finalize().into()
}

/// One signature: which key, and the 64-byte Ed25519 signature over `signing_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureEntry {
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

/// A decoded envelope; `body` borrows the input, and is exactly the bytes that were signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub doc_type: DocumentType,
    pub body: &'a [u8],
    pub signatures: Vec<SignatureEntry, MAX_SIGNATURES>,
}

impl<'a> Envelope<'a> {
    /// Decodes `[type, body, [[key_id, signature], ...]]`, refusing anything after it.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut d = Reader::new(bytes);
        array_exact(&mut d, 3)?;
        let doc_type = DocumentType::from_u8(uint::<u8>(&mut d)?)?;
        let body = d.byte_string()?;
        if body.len() > MAX_BODY_LEN {
            return Err(Error::TooLarge);
        }
        let n = array_len(&mut d, MAX_SIGNATURES)?;
        let mut signatures = Vec::new();
        for _ in 0..n {
            array_exact(&mut d, 2)?;
            let key_id = KeyId(bytes_exact::<8>(&mut d)?);
            let signature = bytes_exact::<64>(&mut d)?;
            signatures
                .push(SignatureEntry { key_id, signature })
                .map_err(|_| Error::TooMany)?;
        }
        finish(&d)?;
        Ok(Envelope {
            doc_type,
            body,
            signatures,
        })
    }

    /// Decodes and checks that the envelope carries `expected`.
    pub fn decode_as(bytes: &'a [u8], expected: DocumentType) -> Result<Self, Error> {
        let env = Self::decode(bytes)?;
        if env.doc_type != expected {
            return Err(Error::WrongDocument);
        }
        Ok(env)
    }

    /// Checks that at least `threshold` distinct keys of `keys` signed the body.
    ///
    /// Signatures by unknown keys and repeated signatures by one key are ignored when the
    /// threshold is met anyway (as in TUF). When it is not, the error names the most telling
    /// cause: a trusted key's signature that fails, then a duplicate, then an unknown key.
    pub fn check_threshold(&self, keys: &[PublicKey], threshold: u8) -> Result<(), Error> {
        if threshold == 0 {
            return Err(Error::InvalidValue);
        }
        let message = signing_message(self.doc_type, self.body);
        let mut counted: Vec<KeyId, MAX_SIGNATURES> = Vec::new();
        let (mut bad, mut duplicate, mut unknown) = (false, false, false);
        for entry in &self.signatures {
            let Some(key) = keys.iter().find(|k| k.id() == entry.key_id) else {
                unknown = true;
                continue;
            };
            if counted.contains(&entry.key_id) {
                duplicate = true;
            } else if key.verify(&message, &entry.signature).is_err() {
                bad = true;
            } else {
                // Cannot overflow: at most MAX_SIGNATURES entries exist.
                let _ = counted.push(entry.key_id);
            }
        }
        if counted.len() >= usize::from(threshold) {
            Ok(())
        } else if bad {
            Err(Error::BadSignature)
        } else if duplicate {
            Err(Error::DuplicateSignature)
        } else if unknown {
            Err(Error::UnknownKey)
        } else {
            Err(Error::BelowThreshold)
        }
    }

    /// Signs `body` as a document of type `doc` with every key, in the order given, and encodes
    /// the envelope. Host side: secret keys never reach a device.
    #[cfg(feature = "alloc")]
    pub fn sign(
        doc: DocumentType,
        body: &[u8],
        keys: &[ed25519_dalek::SigningKey],
    ) -> Result<alloc::vec::Vec<u8>, Error> {
        use ed25519_dalek::Signer as _;
        if keys.is_empty() {
            return Err(Error::MissingField);
        }
        if body.len() > MAX_BODY_LEN {
            return Err(Error::TooLarge);
        }
        let message = signing_message(doc, body);
        let mut signatures: Vec<SignatureEntry, MAX_SIGNATURES> = Vec::new();
        for key in keys {
            let key_id = PublicKey::from_bytes(key.verifying_key().to_bytes())?.id();
            if signatures.iter().any(|s| s.key_id == key_id) {
                return Err(Error::DuplicateKey);
            }
            let signature = key.sign(&message).to_bytes();
            signatures
                .push(SignatureEntry { key_id, signature })
                .map_err(|_| Error::TooMany)?;
        }
        Ok(Envelope {
            doc_type: doc,
            body,
            signatures,
        }
        .to_vec())
    }

    /// Encodes the envelope as it is.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        crate::cbor::encode_to_vec(|e| {
            e.array(3)?.u8(self.doc_type as u8)?.bytes(self.body)?;
            e.array(self.signatures.len() as u64)?;
            for s in &self.signatures {
                e.array(2)?.bytes(&s.key_id.0)?.bytes(&s.signature)?;
            }
            Ok(())
        })
    }
}
