//! The provisioned identity record: the device id and credential a device is given at the
//! factory, in its layout's `identity` region, read at every boot. One definition for the
//! device (`read`) and for the tools that provision it (`encode`).
//!
//! Record, little-endian, at the region's start:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `FID1` |
//! | 1 | device id length, 1..=64 |
//! | 1 | credential length, 1..=128 |
//! | 2 | zero |
//! | n | device id, then credential: printable ASCII without spaces |
//! | 8 | the first 8 bytes of SHA-256 over everything before |
//!
//! The agent never writes the region, so a power cut cannot damage the record; a record that
//! is missing or damaged is an error the firmware reports, never a guess.

use embedded_storage::nor_flash::ReadNorFlash;
use layout::Region;
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8; 4] = b"FID1";
const HEAD: usize = 8;
const CHECK: usize = 8;
pub const MAX_DEVICE_ID: usize = 64;
pub const MAX_CREDENTIAL: usize = 128;
/// Bytes of the longest record.
pub const MAX_RECORD: usize = HEAD + MAX_DEVICE_ID + MAX_CREDENTIAL + CHECK;

/// Why there is no usable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningError {
    /// The region is erased: the device was never provisioned.
    Blank,
    /// Something else than a record is there.
    BadMagic,
    /// A length is zero or beyond its bound, or the record does not fit its region.
    BadLength,
    /// An id or credential with a byte that is not printable ASCII (or a space).
    NotText,
    /// The record's check digest does not match: it is damaged.
    BadCheck,
    /// The flash could not be read.
    Flash,
}

impl ProvisioningError {
    /// For a console line.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningError::Blank => "not provisioned (identity region erased)",
            ProvisioningError::BadMagic => "identity region holds no identity record",
            ProvisioningError::BadLength => "identity record has a bad length",
            ProvisioningError::NotText => "identity record is not printable text",
            ProvisioningError::BadCheck => "identity record is damaged (check digest)",
            ProvisioningError::Flash => "identity region unreadable",
        }
    }
}

/// A device's identity, borrowed from the buffer it was read into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provisioned<'a> {
    pub device_id: &'a str,
    pub credential: &'a str,
}

fn text(bytes: &[u8], max: usize) -> Result<&str, ProvisioningError> {
    if bytes.is_empty() || bytes.len() > max {
        return Err(ProvisioningError::BadLength);
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ProvisioningError::NotText);
    }
    core::str::from_utf8(bytes).map_err(|_| ProvisioningError::NotText)
}

fn check(bytes: &[u8]) -> [u8; CHECK] {
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; CHECK];
    out.copy_from_slice(&digest[..CHECK]);
    out
}

/// The record for an identity, in `out`; returns its length. `out` should be filled with 0xFF
/// beyond it up to the flash's write size (the record's bytes are what `parse` reads).
pub fn encode(
    identity: Provisioned<'_>,
    out: &mut [u8; MAX_RECORD],
) -> Result<usize, ProvisioningError> {
    let id = text(identity.device_id.as_bytes(), MAX_DEVICE_ID)?.as_bytes();
    let cred = text(identity.credential.as_bytes(), MAX_CREDENTIAL)?.as_bytes();
    let body = HEAD + id.len() + cred.len();
    out[..4].copy_from_slice(MAGIC);
    out[4] = id.len() as u8;
    out[5] = cred.len() as u8;
    out[6..HEAD].fill(0);
    out[HEAD..HEAD + id.len()].copy_from_slice(id);
    out[HEAD + id.len()..body].copy_from_slice(cred);
    let c = check(&out[..body]);
    out[body..body + CHECK].copy_from_slice(&c);
    Ok(body + CHECK)
}

/// Parses a record from the start of `bytes` (bytes after it are ignored).
pub fn parse(bytes: &[u8]) -> Result<Provisioned<'_>, ProvisioningError> {
    let head = bytes.get(..HEAD).ok_or(ProvisioningError::BadLength)?;
    if head[..4] != *MAGIC {
        return Err(if head[..4] == [0xFF; 4] {
            ProvisioningError::Blank
        } else {
            ProvisioningError::BadMagic
        });
    }
    let (id_len, cred_len) = (usize::from(head[4]), usize::from(head[5]));
    if head[6..] != [0, 0] || id_len > MAX_DEVICE_ID || cred_len > MAX_CREDENTIAL {
        return Err(ProvisioningError::BadLength);
    }
    let body = HEAD + id_len + cred_len;
    let stored = bytes
        .get(body..body + CHECK)
        .ok_or(ProvisioningError::BadLength)?;
    if check(&bytes[..body]) != *stored {
        return Err(ProvisioningError::BadCheck);
    }
    Ok(Provisioned {
        device_id: text(&bytes[HEAD..HEAD + id_len], MAX_DEVICE_ID)?,
        credential: text(&bytes[HEAD + id_len..body], MAX_CREDENTIAL)?,
    })
}

/// Reads the record from the start of `region` into `buf` and parses it.
pub fn read<'b, F: ReadNorFlash>(
    flash: &mut F,
    region: Region,
    buf: &'b mut [u8; MAX_RECORD],
) -> Result<Provisioned<'b>, ProvisioningError> {
    let len = (region.size as usize).min(MAX_RECORD);
    flash
        .read(region.offset, &mut buf[..len])
        .map_err(|_| ProvisioningError::Flash)?;
    parse(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Provisioned<'static> = Provisioned {
        device_id: "line-3.node-07",
        credential: "c2VjcmV0LWNyZWRlbnRpYWw",
    };

    fn record() -> ([u8; MAX_RECORD], usize) {
        let mut out = [0xFF; MAX_RECORD];
        let n = encode(ID, &mut out).unwrap();
        (out, n)
    }

    #[test]
    fn a_record_reads_back_exactly() {
        let (out, n) = record();
        assert_eq!(n, HEAD + 14 + 23 + CHECK);
        assert_eq!(&out[..4], b"FID1");
        assert_eq!(parse(&out), Ok(ID));
        assert_eq!(parse(&out[..n]), Ok(ID));
    }

    #[test]
    fn damage_is_named() {
        assert_eq!(parse(&[0xFF; MAX_RECORD]), Err(ProvisioningError::Blank));
        assert_eq!(parse(&[0; MAX_RECORD]), Err(ProvisioningError::BadMagic));
        assert_eq!(parse(b"FID1"), Err(ProvisioningError::BadLength));
        let (out, n) = record();
        assert_eq!(parse(&out[..n - 1]), Err(ProvisioningError::BadLength));
        // Every single flipped bit of the record is caught.
        for at in 4..n {
            for bit in 0..8 {
                let mut bad = out;
                bad[at] ^= 1 << bit;
                assert!(parse(&bad).is_err(), "bit {bit} of byte {at}");
            }
        }
        let mut long = out;
        long[4] = 65;
        assert_eq!(parse(&long), Err(ProvisioningError::BadLength));
    }

    #[test]
    fn only_printable_identities_are_encoded() {
        let mut out = [0xFF; MAX_RECORD];
        let spaced = Provisioned {
            device_id: "a b",
            ..ID
        };
        assert_eq!(encode(spaced, &mut out), Err(ProvisioningError::NotText));
        let empty = Provisioned {
            credential: "",
            ..ID
        };
        assert_eq!(encode(empty, &mut out), Err(ProvisioningError::BadLength));
        let long = [b'x'; MAX_CREDENTIAL + 1];
        let long = Provisioned {
            credential: core::str::from_utf8(&long).unwrap(),
            ..ID
        };
        assert_eq!(encode(long, &mut out), Err(ProvisioningError::BadLength));
    }
}
