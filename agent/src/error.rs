//! Why the agent could not do what it was asked.

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

/// Errors of the agent core. Update failures that the server must hear about are reported
/// (`protocol::Step::Failed`) as well as returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The flash refused an operation (on the host simulator: the power went), and how.
    Flash(NorFlashErrorKind),
    /// The key-value store failed.
    Storage,
    /// The update was refused before anything was written (signature, board, counter, ABI).
    Refused(artifact::Error),
    /// A chunk for another release or offset than the one expected.
    UnexpectedChunk,
    /// A payload's SHA-256 differs from the manifest: the update was abandoned.
    Digest,
    /// The release does not fit this device (slot or arena too small, not a model release).
    DoesNotFit,
    /// The model or its validation set does not load.
    Model(model::Error),
    /// No update is in progress.
    NoUpdate,
    /// The update's delta or compressed stream did not decode (or did not fit the release):
    /// the update was abandoned with a failure report.
    Stream(delta::FormatError),
}

/// A flash driver's error as ours, keeping its kind.
pub(crate) fn flash<E: NorFlashError>(e: E) -> Error {
    Error::Flash(e.kind())
}
