//! The image header at the start of a firmware slot: the signed manifest that binds the image.
//!
//! ```text
//! 0   8  magic "FOTAIMG1"
//! 8   4  envelope length E, u32 LE
//! 12  4  reserved, 0
//! 16  E  the signed manifest envelope (docs/bundle-format.md, section 2)
//! ..     0xFF up to the layout's image_header_size; the image follows
//! ```
//!
//! Everything the bootloader trusts (size, SHA-256, version, security counter, boards) is in the
//! signed manifest; the header adds no unsigned field but the envelope's length.

use crate::Error;

pub const MAGIC: [u8; 8] = *b"FOTAIMG1";
/// Bytes before the envelope.
pub const PREFIX_LEN: usize = 16;

/// The envelope inside a header.
pub fn envelope(header: &[u8]) -> Result<&[u8], Error> {
    let prefix: &[u8; PREFIX_LEN] = header
        .get(..PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(Error::NoImage)?;
    let [
        m0,
        m1,
        m2,
        m3,
        m4,
        m5,
        m6,
        m7,
        l0,
        l1,
        l2,
        l3,
        r0,
        r1,
        r2,
        r3,
    ] = *prefix;
    if [m0, m1, m2, m3, m4, m5, m6, m7] != MAGIC {
        return Err(Error::NoImage);
    }
    if [r0, r1, r2, r3] != [0; 4] {
        return Err(Error::BadHeader);
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    header
        .get(PREFIX_LEN..PREFIX_LEN.saturating_add(len))
        .ok_or(Error::BadHeader)
}

/// Writes a header holding `envelope` into `out` (the whole header: `image_header_size` bytes).
pub fn write(envelope: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let end = PREFIX_LEN
        .checked_add(envelope.len())
        .ok_or(Error::BadHeader)?;
    if end > out.len() {
        return Err(Error::BadHeader);
    }
    out.fill(0xFF);
    let (prefix, rest) = out.split_at_mut(PREFIX_LEN);
    prefix[..8].copy_from_slice(&MAGIC);
    prefix[8..12].copy_from_slice(&(envelope.len() as u32).to_le_bytes());
    prefix[12..].fill(0);
    rest[..envelope.len()].copy_from_slice(envelope);
    Ok(())
}
