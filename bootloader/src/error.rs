//! Why the bootloader could not boot an image, or refused one.

use core::fmt;
use embedded_storage::nor_flash::NorFlashErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The flash failed (on the host simulator: the power went).
    Flash(NorFlashErrorKind),
    /// The slot holds no image header.
    NoImage,
    /// The header is malformed.
    BadHeader,
    /// The signed manifest does not verify, or is not a firmware release for this board.
    Manifest(artifact::Error),
    /// The image is larger than the slot.
    TooLarge,
    /// The image's SHA-256 differs from the signed manifest.
    Digest,
    /// The image's security counter is below the stored one.
    Downgrade,
    /// The work buffer is unusable (size not dividing a page, or smaller than a header).
    Buffer,
    /// Neither slot holds a valid image.
    NoValidImage,
    /// The boot state forbids the request (a trial or a swap in progress) or its log is full.
    State,
}

/// A flash driver's error as ours.
pub fn flash<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> Error {
    Error::Flash(e.kind())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Flash(kind) => write!(f, "flash error: {kind:?}"),
            Error::NoImage => f.write_str("no image header"),
            Error::BadHeader => f.write_str("malformed image header"),
            Error::Manifest(e) => write!(f, "manifest refused: {e}"),
            Error::TooLarge => f.write_str("image larger than its slot"),
            Error::Digest => f.write_str("image digest mismatch"),
            Error::Downgrade => f.write_str("security counter below the stored one"),
            Error::Buffer => f.write_str("unusable work buffer"),
            Error::NoValidImage => f.write_str("no valid image in either slot"),
            Error::State => f.write_str("boot state refuses the request"),
        }
    }
}
