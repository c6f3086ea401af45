//! The bundle file: a 16-byte header, the signed envelope, then each payload (docs/bundle-format.md).

use crate::root::{TrustRoot, VerifiedManifest};
use crate::{Error, MAX_COMPONENTS, MAX_ENVELOPE_LEN, sha256};
use heapless::Vec;

/// First 8 bytes of every bundle. The high first byte and CR LF ... SUB catch text-mode
/// transfers that mangle binary files, as PNG's signature does.
pub const MAGIC: [u8; 8] = *b"\x89FOTA\r\n\x1a";

/// Bundle format version this code writes and reads.
pub const BUNDLE_FORMAT: u16 = 1;

/// Header length: magic, format (u16 LE), flags (u16 LE), envelope length (u32 LE).
pub const HEADER_LEN: usize = 16;

/// A bundle split into its parts, nothing verified yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub envelope: &'a [u8],
    /// The payloads, concatenated in manifest order; their boundaries come from the signed
    /// manifest, so the bundle carries no unsigned length but the envelope's.
    pub payloads: &'a [u8],
}

/// A bundle whose signatures and payload digests all check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle<'a> {
    pub verified: VerifiedManifest<'a>,
    /// One slice per manifest component, in the same order.
    pub payloads: Vec<&'a [u8], MAX_COMPONENTS>,
}

impl<'a> Bundle<'a> {
    /// Splits the header off; checks magic, format, flags and the envelope length bound.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let header: [u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::Truncated)?;
        let [
            m0,
            m1,
            m2,
            m3,
            m4,
            m5,
            m6,
            m7,
            v0,
            v1,
            f0,
            f1,
            l0,
            l1,
            l2,
            l3,
        ] = header;
        if [m0, m1, m2, m3, m4, m5, m6, m7] != MAGIC {
            return Err(Error::BadMagic);
        }
        if u16::from_le_bytes([v0, v1]) != BUNDLE_FORMAT {
            return Err(Error::UnsupportedVersion);
        }
        if u16::from_le_bytes([f0, f1]) != 0 {
            return Err(Error::UnsupportedFlags);
        }
        let envelope_len =
            usize::try_from(u32::from_le_bytes([l0, l1, l2, l3])).map_err(|_| Error::TooLarge)?;
        if envelope_len > MAX_ENVELOPE_LEN {
            return Err(Error::TooLarge);
        }
        let rest = bytes.get(HEADER_LEN..).ok_or(Error::Truncated)?;
        if rest.len() < envelope_len {
            return Err(Error::Truncated);
        }
        let (envelope, payloads) = rest.split_at(envelope_len);
        Ok(Bundle { envelope, payloads })
    }

    /// Verifies the envelope against `root`, then cuts and hashes every payload.
    pub fn verify(&self, root: &TrustRoot) -> Result<VerifiedBundle<'a>, Error> {
        let verified = root.verify_manifest(self.envelope)?;
        let declared = verified.manifest.payload_len();
        let actual = self.payloads.len() as u64;
        if actual < declared {
            return Err(Error::Truncated);
        }
        if actual > declared {
            return Err(Error::TrailingBytes);
        }
        let mut payloads = Vec::new();
        let mut rest = self.payloads;
        for c in &verified.manifest.components {
            let size = usize::try_from(c.size).map_err(|_| Error::TooLarge)?;
            let (payload, tail) = rest.split_at_checked(size).ok_or(Error::SizeMismatch)?;
            if sha256(payload) != c.digest {
                return Err(Error::DigestMismatch);
            }
            payloads.push(payload).map_err(|_| Error::TooMany)?;
            rest = tail;
        }
        Ok(VerifiedBundle { verified, payloads })
    }
}

/// Parses and verifies in one step: what the fleet server does on upload.
pub fn open<'a>(bytes: &'a [u8], root: &TrustRoot) -> Result<VerifiedBundle<'a>, Error> {
    Bundle::parse(bytes)?.verify(root)
}

/// Writes a bundle from an envelope and the payloads in manifest order.
#[cfg(feature = "alloc")]
pub fn write(envelope: &[u8], payloads: &[&[u8]]) -> Result<alloc::vec::Vec<u8>, Error> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(Error::TooLarge);
    }
    let total = payloads.iter().map(|p| p.len()).sum::<usize>();
    let mut out = alloc::vec::Vec::with_capacity(HEADER_LEN + envelope.len() + total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&BUNDLE_FORMAT.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    out.extend_from_slice(envelope);
    for p in payloads {
        out.extend_from_slice(p);
    }
    Ok(out)
}
