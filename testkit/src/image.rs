//! Signed firmware images as they sit in a slot: the image header (magic, length, the signed
//! manifest), then the image.

use crate::release::firmware_envelope;
use artifact::{Version, sha256};
use layout::Layout;

/// A signed firmware image as it sits in a slot: header, then image.
#[derive(Debug, Clone)]
pub struct SlotImage {
    pub bytes: Vec<u8>,
    pub digest: [u8; 32],
    pub version: Version,
}

/// A signed image of `size` bytes (deterministic content from `seed`) for `layout`'s board.
pub fn signed_image(
    layout: &Layout,
    version: Version,
    counter: u64,
    size: usize,
    seed: u8,
) -> SlotImage {
    let image: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    signed_payload(layout, version, counter, &image)
}

/// `image` signed with the test key and put behind its header, for `layout`'s board.
pub fn signed_payload(layout: &Layout, version: Version, counter: u64, image: &[u8]) -> SlotImage {
    let envelope = firmware_envelope(layout.board, version, counter, image);
    let mut bytes = vec![0xFF; layout.image_header_size as usize];
    bootloader::header::write(&envelope, &mut bytes).expect("fits");
    bytes.extend_from_slice(image);
    SlotImage {
        bytes,
        digest: sha256(image),
        version,
    }
}
