//! The stream's byte layout: header and block headers (the one definition; `docs/delta-format.md`).

use crate::error::FormatError;

/// `b"FDL1"`: the stream's magic, and its version.
pub const MAGIC: [u8; 4] = *b"FDL1";
/// Bytes of output per block (log2): a sector on every board in `layout`.
pub const BLOCK_LOG2: u8 = 12;
pub const BLOCK_SIZE: usize = 1 << BLOCK_LOG2;
pub const HEADER_LEN: usize = 80;
/// A block header: `u32` little endian, the low 31 bits the length of what follows, the top
/// bit set for a stored block (the output bytes themselves).
pub const BLOCK_HEADER_LEN: usize = 4;
const STORED: u32 = 1 << 31;
/// The longest coded block accepted; an encoder stores a block whose coding would be longer.
pub const MAX_CODED: u32 = BLOCK_SIZE as u32 + 64;
/// The largest target or base: bounded so that offsets fit `u32` arithmetic with room to spare.
pub const MAX_LEN: u32 = 1 << 30;

/// What the stream rebuilds its target from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The target alone, compressed.
    Compressed,
    /// The target from a base the device holds (copies from it) and new bytes.
    Delta,
}

/// The stream header (80 bytes): magic, kind, block size, the target's and base's lengths and
/// SHA-256 (the base's all zero for a compressed stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub target_len: u32,
    pub target_sha256: [u8; 32],
    pub base_len: u32,
    pub base_sha256: [u8; 32],
}

impl Header {
    /// Reads and checks a header (its first [`HEADER_LEN`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(FormatError::BadHeader)?;
        let [m0, m1, m2, m3, kind, log2, r0, r1, rest @ ..] = *b;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if log2 != BLOCK_LOG2 || r0 != 0 || r1 != 0 {
            return Err(FormatError::Unsupported);
        }
        let kind = match kind {
            0 => Kind::Compressed,
            1 => Kind::Delta,
            _ => return Err(FormatError::Unsupported),
        };
        let [t0, t1, t2, t3, b0, b1, b2, b3, digests @ ..] = rest;
        let target_len = u32::from_le_bytes([t0, t1, t2, t3]);
        let base_len = u32::from_le_bytes([b0, b1, b2, b3]);
        let (base_sha256, target_sha256) = digests.split_at(32);
        let header = Self {
            kind,
            target_len,
            target_sha256: target_sha256
                .try_into()
                .map_err(|_| FormatError::BadHeader)?,
            base_len,
            base_sha256: base_sha256.try_into().map_err(|_| FormatError::BadHeader)?,
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<(), FormatError> {
        let no_base = self.base_len == 0 && self.base_sha256 == [0; 32];
        let fits = self.target_len <= MAX_LEN && self.base_len <= MAX_LEN;
        match (self.kind, no_base, fits) {
            (_, _, false) | (Kind::Compressed, false, _) => Err(FormatError::BadHeader),
            _ => Ok(()),
        }
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let kind = match self.kind {
            Kind::Compressed => 0,
            Kind::Delta => 1,
        };
        let parts: [&[u8]; 7] = [
            &MAGIC,
            &[kind, BLOCK_LOG2, 0, 0],
            &self.target_len.to_le_bytes(),
            &self.base_len.to_le_bytes(),
            &self.base_sha256,
            &self.target_sha256,
            &[],
        ];
        let mut at = 0;
        for part in parts {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    /// How many blocks the target takes.
    pub fn blocks(&self) -> u32 {
        self.target_len.div_ceil(BLOCK_SIZE as u32)
    }

    /// The output length of block `index` (the last one may be short).
    pub fn block_len(&self, index: u32) -> usize {
        let start = index as usize * BLOCK_SIZE;
        (self.target_len as usize)
            .saturating_sub(start)
            .min(BLOCK_SIZE)
    }
}

/// A block header, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockHeader {
    Stored(u32),
    Coded(u32),
}

impl BlockHeader {
    pub(crate) fn parse(b: [u8; BLOCK_HEADER_LEN], out_len: usize) -> Result<Self, FormatError> {
        let v = u32::from_le_bytes(b);
        let len = v & !STORED;
        let header = if v & STORED != 0 {
            Self::Stored(len)
        } else {
            Self::Coded(len)
        };
        match header {
            Self::Stored(n) if n as usize == out_len => Ok(header),
            Self::Coded(n) if (5..=MAX_CODED).contains(&n) => Ok(header),
            _ => Err(FormatError::BadBlock),
        }
    }

    #[cfg(feature = "std")]
    pub(crate) fn to_bytes(self) -> [u8; BLOCK_HEADER_LEN] {
        match self {
            Self::Stored(n) => (n | STORED).to_le_bytes(),
            Self::Coded(n) => n.to_le_bytes(),
        }
    }
}
