//! Verifies the image in a slot: signed manifest, board, size, SHA-256.

use crate::error::{Error, flash};
use crate::header;
use artifact::{ComponentKind, TrustRoot, Version};
use embedded_storage::nor_flash::ReadNorFlash;
use layout::Layout;
use sha2::{Digest as _, Sha256};

/// What the bootloader knows of a verified image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub version: Version,
    pub security_counter: u64,
    /// Image bytes after the header.
    pub size: u32,
    pub digest: [u8; 32],
}

/// Reads the header of `slot` into `buf` and checks its signed manifest: a firmware release
/// for this board that fits the slot. Does not hash the image.
pub fn check_header<F: ReadNorFlash>(
    slot: &mut F,
    layout: &Layout,
    root: &TrustRoot,
    buf: &mut [u8],
) -> Result<ImageInfo, Error> {
    let header = buf
        .get_mut(..layout.image_header_size as usize)
        .ok_or(Error::Buffer)?;
    slot.read(0, header).map_err(flash)?;
    let envelope = header::envelope(header)?;
    let verified = root.verify_manifest(envelope).map_err(Error::Manifest)?;
    let m = &verified.manifest;
    if !m.boards.contains(&layout.board) {
        return Err(Error::Manifest(artifact::Error::WrongBoard));
    }
    let fw = m
        .component(ComponentKind::Firmware)
        .ok_or(Error::Manifest(artifact::Error::InconsistentComponents))?;
    if fw.size > layout.max_image_size()
        || fw.size as usize
            > slot
                .capacity()
                .saturating_sub(layout.image_header_size as usize)
    {
        return Err(Error::TooLarge);
    }
    Ok(ImageInfo {
        version: fw.version,
        security_counter: m.security_counter,
        size: fw.size,
        digest: fw.digest,
    })
}

/// `check_header`, then the SHA-256 of the image read from flash, `buf` at a time.
pub fn verify_slot<F: ReadNorFlash>(
    slot: &mut F,
    layout: &Layout,
    root: &TrustRoot,
    buf: &mut [u8],
) -> Result<ImageInfo, Error> {
    let info = check_header(slot, layout, root, buf)?;
    let mut hasher = Sha256::new();
    let mut at = layout.image_header_size;
    let end = at + info.size;
    while at < end {
        let n = (buf.len() as u32).min(end - at) as usize;
        let chunk = buf.get_mut(..n).ok_or(Error::Buffer)?;
        slot.read(at, chunk).map_err(flash)?;
        hasher.update(&chunk[..]);
        at += n as u32;
    }
    if <[u8; 32]>::from(hasher.finalize()) != info.digest {
        return Err(Error::Digest);
    }
    Ok(info)
}

/// Checks an image already copied to RAM against its verified header (RAM-load boards hash
/// what they will run, not what the flash held a moment before).
pub fn verify_loaded(info: &ImageInfo, image: &[u8]) -> Result<(), Error> {
    if image.len() != info.size as usize || artifact::sha256(image) != info.digest {
        return Err(Error::Digest);
    }
    Ok(())
}
