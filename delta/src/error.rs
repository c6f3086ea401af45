//! The decoder's errors: what is wrong with a stream, and a base read that failed (its cause kept).

/// What is wrong with a stream's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Not a delta stream (magic).
    BadMagic,
    /// A stream version or block size this decoder does not know.
    Unsupported,
    /// A header field out of its bounds (kind, lengths, a compressed stream with a base).
    BadHeader,
    /// A block header whose length does not fit the block (a stored block not its output
    /// length, a coded one longer than `format::MAX_CODED`).
    BadBlock,
    /// An operation reaching past its block, before the block's start (a match distance) or
    /// outside the base (a copy).
    OutOfBounds,
    /// The coded bytes ran out before the block was whole.
    Truncated,
    /// Input after the last block.
    TrailingInput,
}

/// A decoding failure: the stream's fault, or the base's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    Format(FormatError),
    /// Reading the base failed (a flash error), kept as it came.
    Base(E),
}

impl<E> From<FormatError> for Error<E> {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadMagic => "not a delta stream",
            Self::Unsupported => "unsupported delta stream version or block size",
            Self::BadHeader => "delta header out of bounds",
            Self::BadBlock => "delta block length does not fit its block",
            Self::OutOfBounds => "delta operation outside its block or base",
            Self::Truncated => "delta block ends before its output",
            Self::TrailingInput => "bytes after the last delta block",
        })
    }
}
