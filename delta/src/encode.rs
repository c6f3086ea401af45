//! The host encoder: a compressed stream of a payload, or a delta from a base (bsdiff's matching
//! for what moved, then LZ77 within each block for the new bytes), coded block by block.
// Host code over its own inputs: every index below is bounded by lengths computed here.
#![allow(clippy::indexing_slicing)]

use std::vec;
use std::vec::Vec;

use sha2::{Digest, Sha256};

use crate::coding::{MIN_MATCH, Models, Op, OpKind, zigzag};
use crate::format::{BLOCK_SIZE, BlockHeader, Header, Kind, MAX_CODED, MAX_LEN};
use crate::range::RangeEncoder;

/// Why a stream cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A target or base over `format::MAX_LEN`.
    TooLarge,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "payload over the delta format's {MAX_LEN} bytes")
    }
}

impl std::error::Error for EncodeError {}

/// Where a run of target bytes comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// New bytes (matched within their block, or literal).
    New,
    /// The base from this offset, plus differences.
    Base(usize),
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    len: usize,
    source: Source,
}

/// `target` compressed (no base).
pub fn compress(target: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let runs = [Run {
        start: 0,
        len: target.len(),
        source: Source::New,
    }];
    encode(&[], target, &runs, Kind::Compressed)
}

/// A delta that rebuilds `target` from `base`.
pub fn delta(base: &[u8], target: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let runs = bsdiff_runs(base, target);
    encode(base, target, &runs, Kind::Delta)
}

fn encode(base: &[u8], target: &[u8], runs: &[Run], kind: Kind) -> Result<Vec<u8>, EncodeError> {
    let len = |b: &[u8]| u32::try_from(b.len()).ok().filter(|&n| n <= MAX_LEN);
    let (Some(target_len), Some(base_len)) = (len(target), len(base)) else {
        return Err(EncodeError::TooLarge);
    };
    let digest = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
    let header = Header {
        kind,
        target_len,
        target_sha256: digest(target),
        base_len,
        base_sha256: match kind {
            Kind::Compressed => [0; 32],
            Kind::Delta => digest(base),
        },
    };
    let mut out = header.to_bytes().to_vec();
    for index in 0..header.blocks() {
        let start = index as usize * BLOCK_SIZE;
        let end = start + header.block_len(index);
        let coded = code_block(base, target, runs, start, end);
        match coded {
            Some(c) if c.len() < end - start && c.len() <= MAX_CODED as usize => {
                out.extend_from_slice(&BlockHeader::Coded(c.len() as u32).to_bytes());
                out.extend_from_slice(&c);
            }
            _ => {
                out.extend_from_slice(&BlockHeader::Stored((end - start) as u32).to_bytes());
                out.extend_from_slice(&target[start..end]);
            }
        }
    }
    Ok(out)
}

/// bsdiff's patch (its control triples, differences and extra bytes) read back as runs.
fn bsdiff_runs(base: &[u8], target: &[u8]) -> Vec<Run> {
    let mut patch = Vec::new();
    if bsdiff::diff(base, target, &mut patch).is_err() {
        return vec![Run {
            start: 0,
            len: target.len(),
            source: Source::New,
        }];
    }
    let word = |at: usize| -> i64 {
        let b: [u8; 8] = patch[at..at + 8].try_into().unwrap_or_default();
        let y = i64::from_le_bytes(b);
        if y & (1 << 63) == 0 {
            y
        } else {
            -(y & !(1 << 63))
        }
    };
    let (mut runs, mut at, mut new_pos, mut old_pos) = (Vec::new(), 0, 0usize, 0i64);
    while at + 24 <= patch.len() {
        let (mix, extra, seek) = (word(at) as usize, word(at + 8) as usize, word(at + 16));
        at += 24 + mix + extra;
        if mix > 0 {
            runs.push(Run {
                start: new_pos,
                len: mix,
                source: Source::Base(old_pos as usize),
            });
        }
        if extra > 0 {
            runs.push(Run {
                start: new_pos + mix,
                len: extra,
                source: Source::New,
            });
        }
        new_pos += mix + extra;
        old_pos += mix as i64 + seek;
    }
    runs
}

/// The operations of block `[start, end)` of `target`, coded; `None` if they cannot be.
fn code_block(
    base: &[u8],
    target: &[u8],
    runs: &[Run],
    start: usize,
    end: usize,
) -> Option<Vec<u8>> {
    let mut rc = RangeEncoder::new();
    let mut m = Models::new();
    let mut matcher = Matcher::new(&target[start..end]);
    let (mut prev, mut expected, mut after_zero) = (OpKind::Literal, start as i64, true);
    let mut pos = start;
    for run in runs {
        let (s, e) = (run.start.max(start), (run.start + run.len).min(end));
        if s >= e {
            continue;
        }
        debug_assert_eq!(s, pos);
        match run.source {
            Source::Base(from) => {
                let at = from + (s - run.start);
                let len = e - s;
                let op = Op {
                    kind: OpKind::Copy,
                    len: len as u32,
                    arg: zigzag(at as i64 - expected),
                };
                m.op(&mut rc, prev, op);
                prev = OpKind::Copy;
                for i in 0..len {
                    let d = target[s + i].wrapping_sub(*base.get(at + i)?);
                    m.difference(&mut rc, after_zero, d);
                    after_zero = d == 0;
                }
                expected = (at + len) as i64;
                matcher.skip_to(e - start);
            }
            Source::New => {
                let mut p = s;
                while p < e {
                    let (op, len) = match matcher.longest(p - start, e - start) {
                        Some((len, dist)) => (
                            Op {
                                kind: OpKind::Match,
                                len,
                                arg: dist,
                            },
                            len,
                        ),
                        None => {
                            let mut n = 1;
                            while p + n < e && matcher.longest(p + n - start, e - start).is_none() {
                                n += 1;
                            }
                            (
                                Op {
                                    kind: OpKind::Literal,
                                    len: n as u32,
                                    arg: 0,
                                },
                                n as u32,
                            )
                        }
                    };
                    m.op(&mut rc, prev, op);
                    prev = op.kind;
                    if op.kind == OpKind::Literal {
                        for (i, &b) in target.iter().enumerate().skip(p).take(len as usize) {
                            m.literal(&mut rc, i - start, b);
                        }
                    }
                    p += len as usize;
                    matcher.skip_to(p - start);
                }
            }
        }
        pos = e;
    }
    (pos == end).then(|| rc.finish())
}

/// LZ77 matches within one block: hash chains over 3-byte prefixes.
struct Matcher<'a> {
    block: &'a [u8],
    head: Vec<Option<usize>>,
    prev: Vec<Option<usize>>,
    /// Positions before this are in the chains.
    indexed: usize,
}

const HASH_BITS: u32 = 12;
const CHAIN: usize = 128;

impl<'a> Matcher<'a> {
    fn new(block: &'a [u8]) -> Self {
        Self {
            block,
            head: vec![None; 1 << HASH_BITS],
            prev: vec![None; block.len()],
            indexed: 0,
        }
    }

    fn hash(&self, p: usize) -> Option<usize> {
        let b = self.block.get(p..p + 3)?;
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        Some((v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize)
    }

    /// Adds every position before `p` to the chains.
    fn skip_to(&mut self, p: usize) {
        while self.indexed < p {
            if let Some(h) = self.hash(self.indexed) {
                self.prev[self.indexed] = self.head[h];
                self.head[h] = Some(self.indexed);
            }
            self.indexed += 1;
        }
    }

    /// The longest earlier match for position `p` ending by `end`, worth coding: (len, dist).
    fn longest(&mut self, p: usize, end: usize) -> Option<(u32, u32)> {
        self.skip_to(p);
        let mut candidate = self.head[self.hash(p)?];
        let (mut best_len, mut best_dist) = (0usize, 0usize);
        for _ in 0..CHAIN {
            let Some(c) = candidate else { break };
            let len = self.block[c..]
                .iter()
                .zip(&self.block[p..end])
                .take_while(|(a, b)| a == b)
                .count();
            if len > best_len {
                (best_len, best_dist) = (len, p - c);
            }
            candidate = self.prev[c];
        }
        // A short match far back costs more than its literals.
        let worth = best_len >= MIN_MATCH as usize + usize::from(best_dist > 512);
        worth.then_some((best_len as u32, best_dist as u32))
    }
}
