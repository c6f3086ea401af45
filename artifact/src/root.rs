//! The trust root (TUF-style, simplified): who may sign releases, and who may replace the root.

use crate::cbor::Reader;
use crate::cbor::{MapReader, array_len, bytes_exact, finish, required, skip_value, uint};
use crate::envelope::{DocumentType, Envelope};
use crate::key::PublicKey;
use crate::manifest::Manifest;
use crate::{Error, MAX_KEYS};
use heapless::Vec;

/// Root format version this code writes and reads.
pub const ROOT_FORMAT: u8 = 1;

/// A trusted root document. Owned (about 700 bytes) so a device can keep it in RAM.
///
/// Invariants, checked on decode and encode: thresholds are between 1 and the number of keys;
/// no key is listed twice within a role; every key is a valid Ed25519 point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoot {
    /// Monotonic; a replacement must carry exactly this plus one.
    pub version: u32,
    pub root_keys: Vec<PublicKey, MAX_KEYS>,
    pub root_threshold: u8,
    pub signing_keys: Vec<PublicKey, MAX_KEYS>,
    pub signing_threshold: u8,
}

mod key {
    pub const FORMAT: u64 = 0;
    pub const VERSION: u64 = 1;
    pub const ROOT_KEYS: u64 = 2;
    pub const ROOT_THRESHOLD: u64 = 3;
    pub const SIGNING_KEYS: u64 = 4;
    pub const SIGNING_THRESHOLD: u64 = 5;
}

/// A manifest whose envelope met the signing threshold of a trust root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest<'a> {
    pub manifest: Manifest<'a>,
    pub envelope: Envelope<'a>,
}

impl TrustRoot {
    /// A root where one key is both the root and the signing key (1 of 1): for tests,
    /// simulators and single-operator fleets.
    pub fn single_key(version: u32, key: PublicKey) -> Self {
        let mut keys = Vec::new();
        // Cannot fail: MAX_KEYS >= 1.
        let _ = keys.push(key);
        TrustRoot {
            version,
            root_keys: keys.clone(),
            root_threshold: 1,
            signing_keys: keys,
            signing_threshold: 1,
        }
    }

    /// A root from its fields, checked as a decoded one is (every key a valid Ed25519 key, the
    /// type's invariants): for a root decoded and verified at build time and baked into a
    /// bootloader as constants, which then links no root decoder.
    pub fn from_parts(
        version: u32,
        root_keys: &[[u8; 32]],
        root_threshold: u8,
        signing_keys: &[[u8; 32]],
        signing_threshold: u8,
    ) -> Result<Self, Error> {
        let keys = |raw: &[[u8; 32]]| -> Result<Vec<PublicKey, MAX_KEYS>, Error> {
            let mut keys = Vec::new();
            for k in raw {
                keys.push(PublicKey::from_bytes(*k)?)
                    .map_err(|_| Error::TooMany)?;
            }
            Ok(keys)
        };
        let root = TrustRoot {
            version,
            root_keys: keys(root_keys)?,
            root_threshold,
            signing_keys: keys(signing_keys)?,
            signing_threshold,
        };
        root.validate()?;
        Ok(root)
    }

    /// Decodes a root body (unsigned); use `from_self_signed` or `rotate` to trust one.
    pub fn decode_body(bytes: &[u8]) -> Result<Self, Error> {
        let mut d = Reader::new(bytes);
        let mut map = MapReader::begin(&mut d)?;
        let (mut format, mut version, mut root_keys, mut root_threshold) = (None, None, None, None);
        let (mut signing_keys, mut signing_threshold) = (None, None);
        while let Some(k) = map.next_key(&mut d)? {
            match k {
                key::FORMAT => format = Some(uint::<u8>(&mut d)?),
                key::VERSION => version = Some(uint::<u32>(&mut d)?),
                key::ROOT_KEYS => root_keys = Some(decode_keys(&mut d)?),
                key::ROOT_THRESHOLD => root_threshold = Some(uint::<u8>(&mut d)?),
                key::SIGNING_KEYS => signing_keys = Some(decode_keys(&mut d)?),
                key::SIGNING_THRESHOLD => signing_threshold = Some(uint::<u8>(&mut d)?),
                _ => skip_value(&mut d)?,
            }
        }
        finish(&d)?;
        if required(format)? != ROOT_FORMAT {
            return Err(Error::UnsupportedVersion);
        }
        let root = TrustRoot {
            version: required(version)?,
            root_keys: required(root_keys)?,
            root_threshold: required(root_threshold)?,
            signing_keys: required(signing_keys)?,
            signing_threshold: required(signing_threshold)?,
        };
        root.validate()?;
        Ok(root)
    }

    /// Checks the invariants listed on the type.
    pub fn validate(&self) -> Result<(), Error> {
        for (keys, threshold) in [
            (&self.root_keys, self.root_threshold),
            (&self.signing_keys, self.signing_threshold),
        ] {
            if threshold == 0 || usize::from(threshold) > keys.len() {
                return Err(Error::InvalidValue);
            }
            for (i, k) in keys.iter().enumerate() {
                if keys.iter().skip(i + 1).any(|o| o.id() == k.id()) {
                    return Err(Error::DuplicateKey);
                }
            }
        }
        Ok(())
    }

    /// Accepts an initial root (provisioning, trust on first use): it must meet its own root
    /// threshold.
    pub fn from_self_signed(envelope: &[u8]) -> Result<Self, Error> {
        let env = Envelope::decode_as(envelope, DocumentType::Root)?;
        let root = Self::decode_body(env.body)?;
        env.check_threshold(&root.root_keys, root.root_threshold)?;
        Ok(root)
    }

    /// Accepts the next root: version exactly one more, signed by a threshold of this root's
    /// keys (so a stolen new key alone cannot take over) and of its own (so the new key holders
    /// agreed to it).
    pub fn rotate(&self, envelope: &[u8]) -> Result<TrustRoot, Error> {
        let env = Envelope::decode_as(envelope, DocumentType::Root)?;
        let next = Self::decode_body(env.body)?;
        if self.version.checked_add(1) != Some(next.version) {
            return Err(Error::RootVersion);
        }
        env.check_threshold(&self.root_keys, self.root_threshold)
            .map_err(|_| Error::RotationOldThreshold)?;
        env.check_threshold(&next.root_keys, next.root_threshold)
            .map_err(|_| Error::RotationNewThreshold)?;
        Ok(next)
    }

    /// Verifies a manifest envelope against the signing keys and decodes the manifest.
    /// Signatures are checked before the manifest is parsed, so unsigned bytes never reach the
    /// manifest decoder.
    pub fn verify_manifest<'a>(&self, envelope: &'a [u8]) -> Result<VerifiedManifest<'a>, Error> {
        let env = Envelope::decode_as(envelope, DocumentType::Manifest)?;
        env.check_threshold(&self.signing_keys, self.signing_threshold)?;
        let manifest = Manifest::decode(env.body)?;
        Ok(VerifiedManifest {
            manifest,
            envelope: env,
        })
    }

    /// Deterministic encoding of the root body: the bytes root keys sign.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, Error> {
        self.validate()?;
        Ok(crate::cbor::encode_to_vec(|e| {
            e.map(6)?;
            e.u64(key::FORMAT)?.u8(ROOT_FORMAT)?;
            e.u64(key::VERSION)?.u32(self.version)?;
            e.u64(key::ROOT_KEYS)?.array(self.root_keys.len() as u64)?;
            for k in &self.root_keys {
                e.bytes(k.as_bytes())?;
            }
            e.u64(key::ROOT_THRESHOLD)?.u8(self.root_threshold)?;
            e.u64(key::SIGNING_KEYS)?
                .array(self.signing_keys.len() as u64)?;
            for k in &self.signing_keys {
                e.bytes(k.as_bytes())?;
            }
            e.u64(key::SIGNING_THRESHOLD)?.u8(self.signing_threshold)?;
            Ok(())
        }))
    }
}

fn decode_keys(d: &mut Reader<'_>) -> Result<Vec<PublicKey, MAX_KEYS>, Error> {
    let n = array_len(d, MAX_KEYS)?;
    let mut keys = Vec::new();
    for _ in 0..n {
        let k = PublicKey::from_bytes(bytes_exact::<32>(d)?)?;
        keys.push(k).map_err(|_| Error::TooMany)?;
    }
    Ok(keys)
}
