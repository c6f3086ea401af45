//! The streaming decoder: stream bytes in as they arrive, one whole block of target out at a
//! time, the base read through [`Base`]. Sans-IO: no flash, clock or allocator of its own.

use crate::coding::{Models, Op, OpKind, unzigzag};
use crate::error::{Error, FormatError};
use crate::format::{BLOCK_HEADER_LEN, BLOCK_SIZE, BlockHeader, HEADER_LEN, Header, Kind};
use crate::range::{MAX_SYMBOL_BYTES, RangeDecoder};

/// The bytes a delta is applied to (the device's active image or model, in flash).
pub trait Base {
    type Error;
    /// Fills `buf` with the base's bytes from `offset` (always within the header's `base_len`).
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// A base in memory (host tools and tests).
impl Base for &[u8] {
    type Error = FormatError;
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FormatError> {
        let start = offset as usize;
        let src = self
            .get(start..start + buf.len())
            .ok_or(FormatError::OutOfBounds)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Where to resume after a reset: the next block to decode and where it starts in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub block: u32,
    pub stream_offset: u32,
}

/// What [`Decoder::feed`] got to.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    /// All the input given was taken; more is needed.
    NeedInput,
    /// The header is read: check it (target digest, base) before writing anything.
    Header(Header),
    /// Block `index` is whole: `data` goes to target offset `index * BLOCK_SIZE`; after it is
    /// written, `next` is where a reset resumes.
    Block {
        index: u32,
        data: &'a [u8],
        next: Checkpoint,
    },
    /// The last block was given out; any further input is an error.
    Done,
}

/// The operation being carried out.
#[derive(Debug, Clone, Copy)]
enum Active {
    None,
    Literal { left: u32 },
    Copy { left: u32, at: u32 },
    Match { left: u32, dist: u32 },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header {
        have: usize,
    },
    BlockHeader {
        have: usize,
        bytes: [u8; BLOCK_HEADER_LEN],
    },
    Stored,
    Coded {
        started: bool,
        active: Active,
        prev: OpKind,
        expected: i64,
        after_zero: bool,
    },
    /// The block is whole; the rest of its coded bytes (the coder's flush) are skipped.
    Skip,
    Done,
}

/// The decoder's whole state: `size_of::<Decoder>()` is its RAM.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    header: Option<Header>,
    /// The block being built (before the first block: the header's bytes).
    out: [u8; BLOCK_SIZE],
    out_len: usize,
    block: u32,
    /// Stream offset of the current block's header, and its bytes not yet taken.
    block_offset: u32,
    block_left: u32,
    /// Stream bytes taken so far.
    offset: u32,
    models: Models,
    rc: RangeDecoder,
    /// Base bytes read ahead for a copy.
    piece: [u8; 64],
    piece_at: usize,
    piece_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub const fn new() -> Self {
        Self {
            state: State::Header { have: 0 },
            header: None,
            out: [0; BLOCK_SIZE],
            out_len: 0,
            block: 0,
            block_offset: 0,
            block_left: 0,
            offset: 0,
            models: Models::new(),
            rc: RangeDecoder::new(),
            piece: [0; 64],
            piece_at: 0,
            piece_len: 0,
        }
    }

    /// A decoder resuming at `at` of a stream whose header was read before the reset; feed it
    /// the stream from `at.stream_offset`.
    pub fn resume(header: Header, at: Checkpoint) -> Self {
        let mut d = Self::new();
        d.header = Some(header);
        d.block = at.block;
        d.offset = at.stream_offset;
        d.state = if at.block >= header.blocks() {
            State::Done
        } else {
            State::BlockHeader {
                have: 0,
                bytes: [0; BLOCK_HEADER_LEN],
            }
        };
        d
    }

    /// The stream's header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Stream bytes taken so far (from the start, resumed ones included).
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Takes bytes of the stream from `input`; returns how many it took and what it got to.
    /// After `Header` or `Block`, call again with the rest of the input.
    pub fn feed<B: Base>(
        &mut self,
        input: &[u8],
        base: &mut B,
    ) -> Result<(usize, Progress<'_>), Error<B::Error>> {
        let mut taken = 0;
        loop {
            let rest = input.get(taken..).unwrap_or_default();
            match self.state {
                State::Done => {
                    return match rest.is_empty() {
                        true => Ok((taken, Progress::Done)),
                        false => Err(FormatError::TrailingInput.into()),
                    };
                }
                State::Header { have } => {
                    let n = rest.len().min(HEADER_LEN - have);
                    copy(&mut self.out, have, rest, n);
                    taken += n;
                    self.offset += n as u32;
                    if have + n < HEADER_LEN {
                        self.state = State::Header { have: have + n };
                        return Ok((taken, Progress::NeedInput));
                    }
                    let header = Header::parse(&self.out)?;
                    self.header = Some(header);
                    self.state = match header.blocks() {
                        0 => State::Done,
                        _ => State::BlockHeader {
                            have: 0,
                            bytes: [0; BLOCK_HEADER_LEN],
                        },
                    };
                    return Ok((taken, Progress::Header(header)));
                }
                State::BlockHeader { have, mut bytes } => {
                    let n = rest.len().min(BLOCK_HEADER_LEN - have);
                    copy(&mut bytes, have, rest, n);
                    taken += n;
                    if have + n < BLOCK_HEADER_LEN {
                        self.state = State::BlockHeader {
                            have: have + n,
                            bytes,
                        };
                        self.offset += n as u32;
                        return Ok((taken, Progress::NeedInput));
                    }
                    self.block_offset = self.offset - have as u32;
                    self.offset += n as u32;
                    self.begin_block(bytes)?;
                }
                State::Stored => {
                    let n = rest.len().min(self.block_left as usize);
                    copy(&mut self.out, self.out_len, rest, n);
                    taken += n;
                    self.take(n);
                    self.out_len += n;
                    if self.block_left > 0 {
                        return Ok((taken, Progress::NeedInput));
                    }
                    return Ok((taken, self.block_done()));
                }
                State::Skip => {
                    self.rc.discard(usize::MAX);
                    let n = rest.len().min(self.block_left as usize);
                    taken += n;
                    self.take(n);
                    if self.block_left > 0 {
                        return Ok((taken, Progress::NeedInput));
                    }
                    return Ok((taken, self.block_done()));
                }
                State::Coded { .. } => {
                    let n = self
                        .rc
                        .push(rest.get(..self.block_left as usize).unwrap_or(rest));
                    taken += n;
                    self.take(n);
                    if !self.decode_symbols(base)? {
                        if taken < input.len() {
                            continue;
                        }
                        return Ok((taken, Progress::NeedInput));
                    }
                    if self.rc.overrun {
                        return Err(FormatError::Truncated.into());
                    }
                    self.state = State::Skip;
                }
            }
        }
    }

    fn take(&mut self, n: usize) {
        self.block_left -= n as u32;
        self.offset += n as u32;
    }

    fn block_len(&self) -> usize {
        self.header.map_or(0, |h| h.block_len(self.block))
    }

    fn begin_block(&mut self, bytes: [u8; BLOCK_HEADER_LEN]) -> Result<(), FormatError> {
        self.out_len = 0;
        match BlockHeader::parse(bytes, self.block_len())? {
            BlockHeader::Stored(n) => {
                self.block_left = n;
                self.state = State::Stored;
            }
            BlockHeader::Coded(n) => {
                self.block_left = n;
                self.models = Models::new();
                self.rc = RangeDecoder::new();
                self.piece_len = 0;
                self.state = State::Coded {
                    started: false,
                    active: Active::None,
                    prev: OpKind::Literal,
                    expected: i64::from(self.block) * BLOCK_SIZE as i64,
                    after_zero: true,
                };
            }
        }
        Ok(())
    }

    fn block_done(&mut self) -> Progress<'_> {
        let index = self.block;
        self.block += 1;
        let next = Checkpoint {
            block: self.block,
            stream_offset: self.offset,
        };
        let last = self.header.is_none_or(|h| self.block >= h.blocks());
        self.state = match last {
            true => State::Done,
            false => State::BlockHeader {
                have: 0,
                bytes: [0; BLOCK_HEADER_LEN],
            },
        };
        Progress::Block {
            index,
            data: self.out.get(..self.out_len).unwrap_or_default(),
            next,
        }
    }

    /// Decodes symbols while enough coded bytes are at hand; true once the block is whole.
    fn decode_symbols<B: Base>(&mut self, base: &mut B) -> Result<bool, Error<B::Error>> {
        let block_len = self.block_len();
        let (base_len, delta) = self
            .header
            .map_or((0, false), |h| (h.base_len, h.kind == Kind::Delta));
        let State::Coded {
            mut started,
            mut active,
            mut prev,
            mut expected,
            mut after_zero,
        } = self.state
        else {
            return Ok(false);
        };
        let result = loop {
            if self.out_len >= block_len && matches!(active, Active::None) {
                break Ok(true);
            }
            if self.rc.available() < MAX_SYMBOL_BYTES && self.block_left > 0 {
                break Ok(false);
            }
            if self.rc.overrun {
                break Err(FormatError::Truncated.into());
            }
            if !started {
                self.rc.begin();
                started = true;
                continue;
            }
            let room = (block_len - self.out_len) as u32;
            active = match active {
                Active::None => {
                    let op = self.models.op(&mut self.rc, prev, Op::default());
                    prev = op.kind;
                    self.piece_at = 0;
                    self.piece_len = 0;
                    match op_checked(op, room, self.out_len, expected, base_len, delta) {
                        Ok(a) => a,
                        Err(e) => break Err(e.into()),
                    }
                }
                Active::Literal { left } => {
                    let b = self.models.literal(&mut self.rc, self.out_len, 0);
                    self.push_out(b);
                    next_left(Active::Literal { left: left - 1 }, left)
                }
                Active::Copy { left, at } => {
                    if self.piece_at >= self.piece_len {
                        let n = (left as usize).min(self.piece.len());
                        let buf = self.piece.get_mut(..n).unwrap_or_default();
                        if let Err(e) = base.read(at, buf) {
                            break Err(Error::Base(e));
                        }
                        self.piece_at = 0;
                        self.piece_len = n;
                    }
                    let d = self.models.difference(&mut self.rc, after_zero, 0);
                    after_zero = d == 0;
                    let b = self.piece.get(self.piece_at).copied().unwrap_or(0);
                    self.piece_at += 1;
                    self.push_out(b.wrapping_add(d));
                    expected = i64::from(at) + 1;
                    next_left(
                        Active::Copy {
                            left: left - 1,
                            at: at + 1,
                        },
                        left,
                    )
                }
                Active::Match { left, dist } => {
                    let from = self.out_len - dist as usize;
                    let b = self.out.get(from).copied().unwrap_or(0);
                    self.push_out(b);
                    next_left(
                        Active::Match {
                            left: left - 1,
                            dist,
                        },
                        left,
                    )
                }
            };
        };
        self.state = State::Coded {
            started,
            active,
            prev,
            expected,
            after_zero,
        };
        result
    }

    fn push_out(&mut self, b: u8) {
        if let Some(slot) = self.out.get_mut(self.out_len) {
            *slot = b;
        }
        self.out_len += 1;
    }
}

/// The operation `op` checked against the block's room, the bytes before it and the base.
fn op_checked(
    op: Op,
    room: u32,
    produced: usize,
    expected: i64,
    base_len: u32,
    delta: bool,
) -> Result<Active, FormatError> {
    if op.len == 0 || op.len > room {
        return Err(FormatError::OutOfBounds);
    }
    Ok(match op.kind {
        OpKind::Literal => Active::Literal { left: op.len },
        OpKind::Match if op.arg as usize <= produced && op.arg > 0 => Active::Match {
            left: op.len,
            dist: op.arg,
        },
        OpKind::Copy if delta => {
            let at = expected + unzigzag(op.arg);
            let end = at + i64::from(op.len);
            if at < 0 || end > i64::from(base_len) {
                return Err(FormatError::OutOfBounds);
            }
            Active::Copy {
                left: op.len,
                at: at as u32,
            }
        }
        _ => return Err(FormatError::OutOfBounds),
    })
}

/// `next` unless that was the operation's last byte.
fn next_left(next: Active, left: u32) -> Active {
    if left <= 1 { Active::None } else { next }
}

/// Copies `n` bytes of `src` into `dst` at `at` (both already bounded by the caller).
fn copy(dst: &mut [u8], at: usize, src: &[u8], n: usize) {
    if let (Some(d), Some(s)) = (dst.get_mut(at..at + n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

/// Applies a whole stream to a base in memory (host tools, tests).
#[cfg(feature = "std")]
pub fn apply(base: &[u8], stream: &[u8]) -> Result<std::vec::Vec<u8>, FormatError> {
    let mut d = std::boxed::Box::new(Decoder::new());
    let mut out = std::vec::Vec::new();
    let mut at = 0;
    let mut base = base;
    loop {
        let rest = stream.get(at..).unwrap_or_default();
        let (n, progress) = d.feed(rest, &mut base).map_err(|e| match e {
            Error::Format(f) | Error::Base(f) => f,
        })?;
        at += n;
        match progress {
            Progress::NeedInput if at >= stream.len() => return Err(FormatError::Truncated),
            Progress::NeedInput | Progress::Header(_) => {}
            Progress::Block { data, .. } => out.extend_from_slice(data),
            Progress::Done => return Ok(out),
        }
    }
}
